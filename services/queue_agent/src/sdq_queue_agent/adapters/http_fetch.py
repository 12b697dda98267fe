"""Inputs by URL, SSRF-safe: http(s) only, every resolved address vetted, the connection pinned
to the vetted address, redirects followed by hand (each hop re-checked), timeouts, a byte cap
and image content types only.

The check and the connection use the same resolution (a custom aiohttp resolver), so a DNS
answer that changes between them (rebinding) cannot reach a refused address.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from sdq_queue_agent.domain.files import is_image_type
from sdq_queue_agent.domain.ssrf import (
    IpNetwork,
    check_address,
    check_http_url,
    literal_ip,
    redact_url,
)
from sdq_queue_agent.errors import (
    InputRefusedError,
    InputTooLargeError,
    InputUnavailableError,
    TaskFailure,
)

MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class VettingResolver(AbstractResolver):
    """Resolves a host and refuses it unless every address passes the SSRF policy."""

    def __init__(self, allowlist: Sequence[IpNetwork]) -> None:
        self._allowlist = tuple(allowlist)
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            results = await self._inner.resolve(host, port, family)
        except OSError as exc:
            raise InputUnavailableError(f"cannot resolve {host!r}: {exc.strerror or exc}") from None
        if not results:
            raise InputUnavailableError(f"{host!r} has no address")
        for result in results:
            check_address(host, result["host"], self._allowlist)
        return results

    async def close(self) -> None:
        await self._inner.close()


def safe_session(
    allowlist: Sequence[IpNetwork], *, connect_timeout: float
) -> aiohttp.ClientSession:
    """The one outbound session for user-supplied URLs (inputs and webhooks)."""
    connector = aiohttp.TCPConnector(
        resolver=VettingResolver(allowlist), use_dns_cache=False, limit=32
    )
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,  # never route user URLs through an environment proxy
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout),
        auto_decompress=False,
    )


def vet_url(url: str, allowlist: Sequence[IpNetwork]) -> None:
    """Checks that need no DNS: scheme, credentials, and an IP-literal host (aiohttp does not
    call the resolver for IP literals)."""
    _, host, _ = check_http_url(url)
    if literal_ip(host) is not None:
        check_address(host, host.strip("[]"), allowlist)


class UrlFetcher:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        allowlist: Sequence[IpNetwork],
        *,
        max_bytes: int,
        read_timeout: float,
    ) -> None:
        self._session = session
        self._allowlist = tuple(allowlist)
        self.max_bytes = max_bytes
        self._read_timeout = read_timeout

    async def fetch_url(self, url: str) -> tuple[bytes, str]:
        shown = redact_url(url)
        try:
            async with asyncio.timeout(self._read_timeout):
                return await self._fetch(url, shown)
        except TimeoutError:
            raise InputUnavailableError(
                f"{shown}: no answer within {self._read_timeout:g} s"
            ) from None

    async def _fetch(self, url: str, shown: str) -> tuple[bytes, str]:
        for _hop in range(MAX_REDIRECTS + 1):
            vet_url(url, self._allowlist)
            try:
                async with self._session.get(
                    url,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(sock_read=self._read_timeout),
                    headers={"Accept": "image/*"},
                ) as resp:
                    if resp.status in _REDIRECTS:
                        location = resp.headers.get("Location")
                        if not location:
                            raise InputRefusedError(f"{shown}: redirect without a Location")
                        url = urljoin(str(resp.url), location)
                        shown = redact_url(url)
                        continue
                    content_type = self._check_answer(resp, shown)
                    return await self._read_capped(resp, shown), content_type
            except TaskFailure:
                raise
            except aiohttp.ClientConnectorError as exc:
                cause = exc.os_error
                if isinstance(cause, TaskFailure):
                    raise cause from None
                raise InputUnavailableError(f"{shown}: cannot connect") from None
            except aiohttp.InvalidURL:
                raise InputRefusedError(f"{shown}: invalid URL") from None
            except aiohttp.ClientError as exc:
                raise InputUnavailableError(f"{shown}: {type(exc).__name__}") from None
        raise InputRefusedError(f"{shown}: more than {MAX_REDIRECTS} redirects")

    def _check_answer(self, resp: aiohttp.ClientResponse, shown: str) -> str:
        """The answer's media type, or the failure it is: a server error is worth a retry; any
        other status, a non-image or an announced size over the limit is refused."""
        if resp.status >= 500 or resp.status == 429:
            raise InputUnavailableError(f"{shown}: HTTP {resp.status}")
        if resp.status != 200:
            raise InputRefusedError(f"{shown}: HTTP {resp.status}")
        content_type = resp.headers.get("Content-Type", "")
        if not is_image_type(content_type):
            raise InputRefusedError(
                f"{shown}: content type {content_type or '(none)'!r} is not an image"
            )
        if resp.content_length is not None and resp.content_length > self.max_bytes:
            raise InputTooLargeError(
                f"{shown}: {resp.content_length} bytes is over the {self.max_bytes} byte limit"
            )
        return content_type.split(";")[0].strip()

    async def _read_capped(self, resp: aiohttp.ClientResponse, shown: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self.max_bytes:
                raise InputTooLargeError(
                    f"{shown}: download cut off at the {self.max_bytes} byte limit"
                )
            chunks.append(chunk)
        return b"".join(chunks)
