"""The InvokeAI case table: one list of tasks and expected outcomes, run by the agent against the
runtime emulator (test_invokeai_integration) and against the real InvokeAI
(test_invokeai_conformance), so the emulator cannot drift from the real server."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

from PIL import Image

from sdq_contracts.config import DeploymentConfig, parse_config

STATIC_MODEL = "tiny-sd15.safetensors"
MISSING_MODEL = "no-such-model-v9.safetensors"

CONFIG: DeploymentConfig = parse_config(
    {
        "stack_name": "iinvoke",
        "region": "us-west-2",
        "buckets": {"models": "iinvoke-models", "outputs": "iinvoke-outputs"},
        "runtimes": [
            {
                "name": "invokeai",
                "type": "invokeai",
                "dynamic_model": True,
                "task_timeout_seconds": 120,
                "max_receive_count": 3,
            },
            {
                "name": "invokeai-static",
                "type": "invokeai",
                "model": STATIC_MODEL,
                "task_timeout_seconds": 120,
                "max_receive_count": 3,
            },
        ],
    }
)


def png(width: int = 24, height: int = 16, colour: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def weight_free_graph(image: dict[str, str] | None = None) -> dict[str, Any]:
    """blank image (intermediate) → blur (the output); or an input image → resize → blur."""
    if image is None:
        source: dict[str, Any] = {
            "type": "blank_image",
            "width": 40,
            "height": 24,
            "color": {"r": 0, "g": 0, "b": 255, "a": 255},
            "is_intermediate": True,
        }
    else:
        source = {"type": "img_resize", "image": image, "width": 48, "height": 32}
        source["is_intermediate"] = True
    return {
        "graph": {
            "nodes": {
                "source": source,
                "blur": {"type": "img_blur", "radius": 1.5},
            },
            "edges": [
                {
                    "source": {"node_id": "source", "field": "image"},
                    "destination": {"node_id": "blur", "field": "image"},
                }
            ],
        },
        "runs": 1,
    }


INVALID_GRAPH: dict[str, Any] = {
    "graph": {"nodes": {"a": {"type": "sdq_no_such_node"}}, "edges": []},
}


def missing_model_graph() -> dict[str, Any]:
    """A raw graph that names a model by file name only; nothing by that name exists."""
    return {
        "graph": {
            "nodes": {
                "model": {"type": "main_model_loader", "model": {"name": MISSING_MODEL}},
            },
            "edges": [],
        }
    }


async def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.05) -> None:
    """Poll a condition (bounded); a test waits for a state, never for a fixed time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not reached in time")
        await asyncio.sleep(interval)
