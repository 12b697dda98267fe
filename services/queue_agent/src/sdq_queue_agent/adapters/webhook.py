"""Signed result webhooks (``callback_url``), under the same SSRF rules as input URLs.

Bounded retries with exponential backoff on network errors, 429 and 5xx; other 4xx answers
are final. Delivery runs after the message is deleted, off the GPU pipeline.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import structlog

from sdq_queue_agent.adapters.http_fetch import vet_url
from sdq_queue_agent.domain.ssrf import IpNetwork, redact_url
from sdq_queue_agent.errors import TaskFailure
from sdq_queue_agent.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

_log = structlog.get_logger("sdq_queue_agent.webhook")


class HttpWebhookSender:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        allowlist: tuple[IpNetwork, ...],
        secret: bytes | None,
        *,
        attempts: int,
        backoff: float,
        timeout: float,
    ) -> None:
        self._session = session
        self._allowlist = allowlist
        self._secret = secret
        self._attempts = attempts
        self._backoff = backoff
        self._timeout = timeout

    async def deliver(self, url: str, body: bytes, task_id: str) -> bool:
        log = _log.bind(task_id=task_id, url=redact_url(url))
        for attempt in range(1, self._attempts + 1):
            try:
                vet_url(url, self._allowlist)
                status = await self._post(url, body)
            except TaskFailure as exc:
                log.warning("webhook_refused", error=exc.message)
                return False
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = None
                log.warning("webhook_attempt_failed", attempt=attempt, error=type(exc).__name__)
            if status is not None:
                if 200 <= status < 300:
                    return True
                if status != 429 and status < 500:
                    log.warning("webhook_rejected", status=status)
                    return False
                log.warning("webhook_attempt_failed", attempt=attempt, status=status)
            if attempt < self._attempts:
                await asyncio.sleep(self._backoff * (2 ** (attempt - 1)))
        return False

    async def _post(self, url: str, body: bytes) -> int:
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: str(timestamp)}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        async with self._session.post(
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=self._timeout),
        ) as resp:
            return resp.status
