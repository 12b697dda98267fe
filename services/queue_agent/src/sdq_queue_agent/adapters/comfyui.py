"""ComfyUI runtime: WebSocket events first, ``/history`` as the authority, ``/view`` for outputs,
``/upload/image`` for inputs given by URL."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import aiohttp
import structlog

from sdq_contracts.messages import TaskMessage
from sdq_queue_agent.adapters.runtime_http import SHORT, read_json, unavailable_on_network_error
from sdq_queue_agent.domain import comfyui_graph
from sdq_queue_agent.domain.files import by_filename, ext_for
from sdq_queue_agent.domain.inputs import substitute
from sdq_queue_agent.domain.model import FetchedInput, OutputFile, RuntimeRequest, RuntimeResult
from sdq_queue_agent.errors import (
    InterruptedByOtherError,
    RuntimeRejectedError,
    RuntimeUnavailableError,
    TransientTaskError,
)

_log = structlog.get_logger("sdq_queue_agent.comfyui")
_TERMINAL = frozenset({"execution_success", "execution_error", "execution_interrupted"})
UPLOAD_SUBFOLDER = "sdq"
VIEW = aiohttp.ClientTimeout(total=300, sock_connect=5)


class ComfyUiRuntime:
    kind = "comfyui"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        client_id: str | None = None,
        event_idle_seconds: float = 10.0,
        history_grace_seconds: float = 5.0,
    ) -> None:
        self._session = session
        self._base = base_url
        self.client_id = client_id or f"sdq-{uuid.uuid4().hex}"
        self._idle = event_idle_seconds
        self._history_grace = history_grace_seconds
        self._prompts: dict[str, str] = {}
        self._interrupted: set[str] = set()

    async def ping(self) -> None:
        async with (
            unavailable_on_network_error("GET system_stats"),
            self._session.get(f"{self._base}/system_stats", timeout=SHORT) as resp,
        ):
            if resp.status != 200:
                raise RuntimeUnavailableError(f"GET system_stats: HTTP {resp.status}")

    async def startup_check(self) -> None:
        """Nothing to load: a ComfyUI workflow names its own checkpoints."""

    def prepare(self, task: TaskMessage, content: dict[str, Any]) -> RuntimeRequest:
        return comfyui_graph.shape(task, content)

    async def stage_inputs(
        self, request: RuntimeRequest, inputs: Sequence[FetchedInput]
    ) -> RuntimeRequest:
        values: dict[Any, Any] = {}
        for n, item in enumerate(inputs, start=1):
            form = aiohttp.FormData()
            filename = f"{request.task_id}-{n}.{ext_for(item.content_type)}"
            form.add_field("image", item.data, filename=filename, content_type=item.content_type)
            form.add_field("overwrite", "true")
            form.add_field("type", "input")
            form.add_field("subfolder", UPLOAD_SUBFOLDER)
            async with (
                unavailable_on_network_error("POST upload/image"),
                self._session.post(f"{self._base}/upload/image", data=form, timeout=VIEW) as resp,
            ):
                payload, text = await read_json(resp)
                if 400 <= resp.status < 500:
                    raise RuntimeRejectedError(
                        f"ComfyUI refused the input image: HTTP {resp.status} {text[:200]}"
                    )
                if resp.status != 200 or not isinstance(payload, dict) or "name" not in payload:
                    raise RuntimeUnavailableError(f"POST upload/image: HTTP {resp.status}")
            sub = payload.get("subfolder") or ""
            values[item.ref.path] = f"{sub}/{payload['name']}" if sub else str(payload["name"])
        return dataclasses.replace(request, body=substitute(request.body, values), inputs=())

    async def run(self, request: RuntimeRequest) -> RuntimeResult:
        prompt_id = str(uuid.uuid4())
        self._prompts[request.task_id] = prompt_id
        self._interrupted.discard(request.task_id)
        try:
            entry = await self._execute(request, prompt_id)
            return await self._result(request, prompt_id, entry)
        finally:
            self._prompts.pop(request.task_id, None)

    async def _execute(self, request: RuntimeRequest, prompt_id: str) -> dict[str, Any]:
        ws_url = f"{self._base}/ws?clientId={self.client_id}"
        async with (
            unavailable_on_network_error("WebSocket"),
            self._session.ws_connect(
                ws_url, timeout=aiohttp.ClientWSTimeout(ws_close=5), heartbeat=30
            ) as ws,
        ):
            await self._submit(request, prompt_id)
            finished = await self._wait_terminal(ws, prompt_id)
        return await self._history(prompt_id, finished=finished)

    async def _submit(self, request: RuntimeRequest, prompt_id: str) -> None:
        body = {"prompt": request.body, "client_id": self.client_id, "prompt_id": prompt_id}
        async with (
            unavailable_on_network_error("POST prompt"),
            self._session.post(f"{self._base}/prompt", json=body, timeout=SHORT) as resp,
        ):
            payload, text = await read_json(resp)
            if 400 <= resp.status < 500:
                raise RuntimeRejectedError(
                    comfyui_graph.prompt_error(payload) if payload else text[:300]
                )
            if resp.status != 200:
                raise RuntimeUnavailableError(f"POST prompt: HTTP {resp.status}")

    async def _wait_terminal(self, ws: aiohttp.ClientWebSocketResponse, prompt_id: str) -> bool:
        """True on a terminal event for our prompt; False when the socket closed first.

        With no event for ``event_idle_seconds`` the history is asked (the socket may have
        missed the end); the worker's deadline bounds the whole wait.
        """
        while True:
            try:
                msg = await ws.receive(timeout=self._idle)
            except TimeoutError:
                if await self._history_entry(prompt_id):
                    return True
                continue
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                return False
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue  # binary frames are previews
            try:
                event = json.loads(msg.data)
            except json.JSONDecodeError:
                continue
            data = event.get("data") if isinstance(event, dict) else None
            if not isinstance(data, dict) or data.get("prompt_id") != prompt_id:
                continue
            kind = event.get("type")
            if kind in _TERMINAL or (kind == "executing" and data.get("node") is None):
                return True

    async def _history_entry(self, prompt_id: str) -> dict[str, Any] | None:
        async with (
            unavailable_on_network_error("GET history"),
            self._session.get(f"{self._base}/history/{prompt_id}", timeout=SHORT) as resp,
        ):
            payload, _ = await read_json(resp)
        if isinstance(payload, dict) and isinstance(payload.get(prompt_id), dict):
            return dict(payload[prompt_id])
        return None

    async def _history(self, prompt_id: str, *, finished: bool) -> dict[str, Any]:
        """The authoritative entry; a short grace for it to appear after the terminal event."""
        deadline = time.monotonic() + (self._history_grace if finished else 0.0)
        while True:
            entry = await self._history_entry(prompt_id)
            if entry is not None:
                return entry
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        if finished:
            raise RuntimeUnavailableError(
                "ComfyUI finished the prompt but has no history for it (restarted?)"
            )
        raise RuntimeUnavailableError("lost the ComfyUI connection before the prompt finished")

    async def _result(
        self, request: RuntimeRequest, prompt_id: str, entry: dict[str, Any]
    ) -> RuntimeResult:
        status, error = comfyui_graph.history_status(entry)
        if error is not None:
            raise comfyui_graph.execution_error(error)
        if request.task_id in self._interrupted:
            raise TransientTaskError("prompt was interrupted by the agent")
        if status != "success":
            messages = [
                m[0]
                for m in (entry.get("status") or {}).get("messages") or []
                if isinstance(m, list) and m
            ]
            if "execution_interrupted" in messages:
                raise InterruptedByOtherError("ComfyUI prompt was interrupted by someone else")
            raise RuntimeRejectedError(f"ComfyUI prompt ended with status {status or 'unknown'!r}")
        refs = comfyui_graph.history_outputs(entry)
        if not refs:
            raise RuntimeRejectedError(
                "workflow finished without saving any output (no SaveImage-like node)"
            )
        files = [await self._view(ref) for ref in refs]
        return RuntimeResult(
            files=tuple(files), response={"prompt_id": prompt_id, "history": entry}
        )

    async def _view(self, ref: comfyui_graph.OutputRef) -> OutputFile:
        params = {"filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type}
        async with (
            unavailable_on_network_error("GET view"),
            self._session.get(f"{self._base}/view", params=params, timeout=VIEW) as resp,
        ):
            if resp.status != 200:
                raise RuntimeUnavailableError(f"GET view {ref.filename}: HTTP {resp.status}")
            data = await resp.read()
            header_type = resp.headers.get("Content-Type")
        content_type, ext = by_filename(ref.filename, header_type)
        return OutputFile(data=data, content_type=content_type, ext=ext)

    async def interrupt(self, task_id: str) -> None:
        self._interrupted.add(task_id)
        prompt_id = self._prompts.get(task_id)
        if prompt_id is None:
            return
        async with (
            unavailable_on_network_error("POST interrupt"),
            self._session.post(
                f"{self._base}/interrupt", json={"prompt_id": prompt_id}, timeout=SHORT
            ),
        ):
            pass
        async with (
            unavailable_on_network_error("POST queue"),
            self._session.post(f"{self._base}/queue", json={"delete": [prompt_id]}, timeout=SHORT),
        ):
            pass
        _log.info("interrupted the ComfyUI prompt", task_id=task_id, prompt_id=prompt_id)
