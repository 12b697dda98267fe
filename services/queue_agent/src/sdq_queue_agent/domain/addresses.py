"""Which IP addresses the agent may contact on a user's behalf: only globally routable ones.

IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible, IPv4-translated, 6to4,
NAT64) are judged by the IPv4 address they carry: ``2002:a9fe:a9fe::1`` is the metadata
address in 6to4 clothing. Forms whose target cannot be known (Teredo, local-use NAT64) are
refused outright."""

from __future__ import annotations

import ipaddress

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_TEREDO = ipaddress.ip_network("2001::/32")


def _low32(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


def unwrap(address: IpAddress) -> IpAddress | None:
    """The IPv4 address an IPv6 form carries (or the address itself); None for forms whose
    destination cannot be judged."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _TEREDO or address in _NAT64_LOCAL:
        return None
    if address in _NAT64 or address in _IPV4_TRANSLATED:
        return _low32(address)
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return _low32(address)
    return address


def not_global_reason(address: IpAddress) -> str | None:
    """Why ``address`` is not a globally routable destination, or None when it is."""
    target = unwrap(address)
    if target is None:
        return "a tunnelled address whose destination cannot be checked"
    checks = (
        ("loopback", target.is_loopback),
        ("unspecified", target.is_unspecified),
        ("link-local", target.is_link_local),
        ("multicast", target.is_multicast),
        ("reserved", target.is_reserved),
        ("private", target.is_private),
        ("not globally routable", not target.is_global),
    )
    for label, hit in checks:
        if hit:
            shown = f" (carries {target})" if target != address else ""
            return f"a {label} address{shown}"
    return None
