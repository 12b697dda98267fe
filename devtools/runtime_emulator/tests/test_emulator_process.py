"""The emulator as a real subprocess: ready line, graceful stop, and the hard-exit fault."""

from __future__ import annotations

import aiohttp
import pytest

from sdq_runtime_emulator import EmulatorProcess
from sdq_runtime_emulator.state import EXIT_CODE

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=20)


async def test_subprocess_logs_ready_serves_and_stops_gracefully():
    process = EmulatorProcess(generation_latency_s=0.05, default_width=72, default_height=40)
    with process:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            async with http.post(f"{process.url}/sdapi/v1/txt2img", json={"prompt": "p"}) as r:
                assert r.status == 200
                assert len((await r.json())["images"]) == 1
            async with http.get(f"{process.url}/emulator/knobs") as response:
                assert (await response.json())["default_width"] == 72
        assert process.stop() == 0
        output = process.output()
    assert f"ready on {process.url}" in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert all("sdq runtime emulator - placeholder image" in line for line in lines)


async def test_exit_fault_kills_the_process_mid_generation():
    with EmulatorProcess(exit_next=1, generation_latency_s=0.4) as process:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            with pytest.raises(aiohttp.ClientConnectionError):
                await http.post(f"{process.url}/sdapi/v1/txt2img", json={"prompt": "die"})
        assert process.wait_exit(timeout_s=10) == EXIT_CODE
        assert "exiting hard mid-generation" in process.output()
