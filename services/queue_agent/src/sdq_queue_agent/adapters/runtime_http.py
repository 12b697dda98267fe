"""HTTP plumbing shared by the runtime adapters: one session per runtime, error classification."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from sdq_queue_agent.errors import RuntimeUnavailableError

# Health and small calls; generation calls have no total timeout (the worker owns the deadline).
SHORT = aiohttp.ClientTimeout(total=10, sock_connect=5)
GENERATION = aiohttp.ClientTimeout(total=None, sock_connect=10)


def runtime_session() -> aiohttp.ClientSession:
    """The one session to the runtime beside the agent (no proxy, generous connection pool)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=16), trust_env=False, timeout=SHORT
    )


@asynccontextmanager
async def unavailable_on_network_error(what: str) -> AsyncIterator[None]:
    """Connection refused, reset, or dropped mid-answer: the runtime is down or died."""
    try:
        yield
    except aiohttp.ClientResponseError as exc:
        raise RuntimeUnavailableError(f"{what}: HTTP {exc.status}") from None
    except (aiohttp.ClientError, ConnectionError) as exc:
        raise RuntimeUnavailableError(
            f"{what}: runtime unreachable or died ({type(exc).__name__})"
        ) from None
    except TimeoutError:
        raise RuntimeUnavailableError(f"{what}: runtime did not answer in time") from None


async def read_json(resp: aiohttp.ClientResponse) -> tuple[Any, str]:
    text = await resp.text()
    try:
        return json.loads(text), text
    except json.JSONDecodeError:
        return None, text
