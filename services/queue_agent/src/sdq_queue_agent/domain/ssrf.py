"""Which URLs and addresses an input or callback may reach (pure policy; the HTTP adapter
applies it to every resolved address and every redirect)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from sdq_queue_agent.domain.addresses import not_global_reason, unwrap
from sdq_queue_agent.errors import InputRefusedError

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata endpoints, refused even if a broader rule would pass them.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
HTTP_SCHEMES = frozenset({"http", "https"})


def address_refusal(address: IpAddress, allowlist: Iterable[IpNetwork] = ()) -> str | None:
    """Why ``address`` may not be contacted, or None when it may: only globally routable
    addresses (:mod:`.addresses`), except the explicit allow-list (tests, local stacks)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in net for net in allowlist):
        return None
    if address in METADATA_ADDRESSES or unwrap(address) in METADATA_ADDRESSES:
        return "a cloud metadata address"
    return not_global_reason(address)


def check_address(host: str, address: str, allowlist: Iterable[IpNetwork] = ()) -> None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        raise InputRefusedError(f"{host!r} resolved to something that is not an IP") from None
    reason = address_refusal(ip, allowlist)
    if reason is not None:
        raise InputRefusedError(f"{host!r} resolves to {ip}, {reason}; refused")


def check_http_url(url: str) -> tuple[str, str, int]:
    """Scheme and host checks of an http(s) URL; returns ``(scheme, host, port)``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InputRefusedError("malformed URL") from None
    scheme = parts.scheme.lower()
    if scheme not in HTTP_SCHEMES:
        raise InputRefusedError(
            f"scheme {scheme or '(none)'!r} is not allowed (http and https only)"
        )
    if not parts.hostname:
        raise InputRefusedError("URL has no host")
    if parts.username or parts.password:
        raise InputRefusedError("URLs with credentials are refused")
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80)


def literal_ip(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def redact_url(url: str) -> str:
    """A URL safe to log: scheme, host and path only (query strings may carry signatures)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<malformed url>"
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}" + ("?<redacted>" if parts.query else "")
