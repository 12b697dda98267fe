"""Fixtures for the runtime emulator's tests: an in-process emulator and an HTTP session."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator

import aiohttp
import pytest
from PIL import Image

from sdq_runtime_emulator import RunningEmulator, running_emulator

CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=20)


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    async with running_emulator() as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as session:
        yield session


def png_image(data: bytes | str) -> Image.Image:
    """Open PNG bytes (or base64 text) and check they really are a PNG."""
    raw = base64.b64decode(data) if isinstance(data, str) else data
    assert raw.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(raw))
    image.load()
    return image


def png_b64(width: int, height: int, colour: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def helpers() -> type[Helpers]:
    return Helpers


class Helpers:
    png_image = staticmethod(png_image)
    png_b64 = staticmethod(png_b64)
