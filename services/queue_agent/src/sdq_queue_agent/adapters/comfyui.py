"""ComfyUI runtime: WebSocket events first, ``/history`` (or ``/api/jobs/{id}``) as the
authority, ``/view`` for outputs (streamed during the upload stage, after ``run`` returned),
``/upload/image`` for inputs given by URL or inline.

Cancel uses ``POST /api/jobs/{id}/cancel`` where the server has it (newer ComfyUI), else
``/interrupt`` plus ``/queue`` delete (v0.8.0); the first cancel finds out which, once.
ComfyUI v0.8.0 has no route that deletes files: with ``data_dir`` (the ComfyUI base directory,
shared with the agent's container) the agent removes a task's input and output folders itself
once the outputs are uploaded (the result's ``after_upload``) or the run failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import shutil
import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from sdq_contracts.messages import TaskMessage
from sdq_queue_agent.adapters.runtime_http import SHORT, read_json, unavailable_on_network_error
from sdq_queue_agent.domain import comfyui_graph, output_media
from sdq_queue_agent.domain.files import ext_for
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
UPLOAD_SUBFOLDER = comfyui_graph.OUTPUT_ROOT
_SAFE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
VIEW = aiohttp.ClientTimeout(total=300, sock_connect=5)
# Outputs stream from /view as long as bytes keep coming (a 1 GB video takes a while to store).
STREAM = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=120)
CHUNK = 256 * 1024


class ComfyUiRuntime:
    kind = "comfyui"
    queues_requests = False  # look-ahead not verified against its queue and interrupt

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        client_id: str | None = None,
        event_idle_seconds: float = 10.0,
        history_grace_seconds: float = 5.0,
        data_dir: Path | None = None,
    ) -> None:
        self._session = session
        self._base = base_url
        self.client_id = client_id or f"sdq-{uuid.uuid4().hex}"
        self._idle = event_idle_seconds
        self._history_grace = history_grace_seconds
        self._prompts: dict[str, str] = {}
        self._interrupted: set[str] = set()
        self._data_dir = data_dir
        # Whether the server has the /api/jobs routes (None: not asked yet).
        self._jobs_api: bool | None = None
        self._jobs_cancel: bool | None = None

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
            filename = f"input-{n}.{ext_for(item.content_type)}"
            form.add_field("image", item.data, filename=filename, content_type=item.content_type)
            form.add_field("overwrite", "true")
            form.add_field("type", "input")
            # One folder per task (sdq/<task id>/), removed with the task's outputs.
            form.add_field("subfolder", f"{UPLOAD_SUBFOLDER}/{request.task_id}")
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
        except BaseException:
            await self.remove_files(request.task_id)
            raise
        finally:
            self._prompts.pop(request.task_id, None)

    async def remove_files(self, task_id: str) -> None:
        """Delete the task's uploaded inputs and saved outputs from ComfyUI's disk.

        Called once the upload stage has streamed the outputs to S3, or the upload or the run
        failed (a task that fails runs its generation again). ComfyUI v0.8.0 has no delete route, so this needs the
        ComfyUI base directory mounted in the agent's container (``data_dir``); without it the
        files stay, as they always did.
        """
        if self._data_dir is None or not _SAFE_ID.match(task_id):
            return
        folders = [
            self._data_dir / kind / UPLOAD_SUBFOLDER / task_id for kind in ("input", "output")
        ]

        def remove() -> int:
            removed = 0
            for folder in folders:
                if folder.is_dir():
                    shutil.rmtree(folder, ignore_errors=True)
                    removed += 1
            return removed

        try:
            removed = await asyncio.to_thread(remove)
        except OSError as exc:
            _log.warning(
                "could_not_remove_the_task_s_comfyui_files", task_id=task_id, error=str(exc)
            )
            return
        _log.debug("removed_the_task_s_comfyui_files", task_id=task_id, folders=removed)

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
        graph = comfyui_graph.for_run(request.body, request.task_id, prompt_id.split("-", 1)[0])
        body = {"prompt": graph, "client_id": self.client_id, "prompt_id": prompt_id}
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
        dropped = comfyui_graph.dropped_outputs(payload)
        if dropped:
            # ComfyUI accepted the prompt but will run only its valid outputs: the task asked
            # for all of them, so it fails (permanently) and the accepted rest is stopped.
            error = RuntimeRejectedError(comfyui_graph.prompt_error(payload, partial=True))
            try:
                await self._cancel_prompt(prompt_id)
            except RuntimeUnavailableError as exc:
                _log.warning("could_not_cancel_a_partly_valid_prompt", error=exc.message)
            raise error

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

    async def _has_jobs_api(self) -> bool:
        """Asked once: ``GET /api/jobs`` answers 200 with ``jobs`` where the server has it."""
        if self._jobs_api is None:
            async with (
                unavailable_on_network_error("GET api/jobs"),
                self._session.get(
                    f"{self._base}/api/jobs", params={"limit": "1"}, timeout=SHORT
                ) as resp,
            ):
                payload, _ = await read_json(resp)
                self._jobs_api = (
                    resp.status == 200 and isinstance(payload, dict) and "jobs" in payload
                )
            _log.info("comfyui_jobs_api", available=self._jobs_api)
        return self._jobs_api

    async def _history_entry(self, prompt_id: str) -> dict[str, Any] | None:
        if await self._has_jobs_api():
            return await self._job_entry(prompt_id)
        async with (
            unavailable_on_network_error("GET history"),
            self._session.get(f"{self._base}/history/{prompt_id}", timeout=SHORT) as resp,
        ):
            payload, _ = await read_json(resp)
        if isinstance(payload, dict) and isinstance(payload.get(prompt_id), dict):
            return dict(payload[prompt_id])
        return None

    async def _job_entry(self, prompt_id: str) -> dict[str, Any] | None:
        """``GET /api/jobs/{id}`` as a history entry (``outputs`` + ``status``) once finished."""
        async with (
            unavailable_on_network_error("GET api/jobs/{id}"),
            self._session.get(f"{self._base}/api/jobs/{prompt_id}", timeout=SHORT) as resp,
        ):
            payload, _ = await read_json(resp)
            status = resp.status
        if status == 404:
            return None
        if status != 200 or not isinstance(payload, dict):
            raise RuntimeUnavailableError(f"GET api/jobs/{{id}}: HTTP {status}")
        return comfyui_graph.job_as_history(payload)

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
        made = comfyui_graph.history_outputs(entry)
        if not made:
            previews = comfyui_graph.history_previews(entry)
            hint = (
                f"; its {previews} preview file(s) (type temp: PreviewImage-like nodes) are not"
                " kept, use a Save node"
                if previews
                else ""
            )
            raise RuntimeRejectedError(
                f"workflow finished without saving any output (no SaveImage-like node){hint}"
            )
        task_id = request.task_id

        async def remove() -> None:
            await self.remove_files(task_id)

        return RuntimeResult(
            files=tuple(self._output(item) for item in made),
            response={"prompt_id": prompt_id, "history": entry},
            after_upload=remove,
        )

    def _output(self, item: comfyui_graph.OutputRef | comfyui_graph.TextOutput) -> OutputFile:
        """A text as a file; a saved file as a source read through ``/view`` while it uploads
        (after ``run`` returned: the next generation is already running)."""
        if isinstance(item, comfyui_graph.TextOutput):
            content_type, ext = output_media.TEXT_PLAIN, "txt"
            with contextlib.suppress(ValueError):
                if isinstance(json.loads(item.text), dict | list):
                    content_type, ext = output_media.JSON, "json"
            return OutputFile(
                item.text.encode("utf-8"), content_type, ext, name=f"node {item.node} text"
            )
        content_type, ext = output_media.by_filename(item.filename)
        params = {"filename": item.filename, "subfolder": item.subfolder, "type": item.type}
        url = f"{self._base}/view"

        async def chunks() -> AsyncGenerator[bytes, None]:
            async with (
                unavailable_on_network_error("GET view"),
                self._session.get(url, params=params, timeout=STREAM) as resp,
            ):
                if resp.status != 200:
                    raise RuntimeUnavailableError(f"GET view {item.filename}: HTTP {resp.status}")
                async for chunk in resp.content.iter_chunked(CHUNK):
                    yield chunk

        name = f"{item.subfolder}/{item.filename}" if item.subfolder else item.filename
        return OutputFile(None, content_type, ext, source=chunks, name=name)

    async def interrupt(self, task_id: str) -> None:
        self._interrupted.add(task_id)
        prompt_id = self._prompts.get(task_id)
        if prompt_id is None:
            return
        await self._cancel_prompt(prompt_id)
        _log.info("interrupted_the_comfyui_prompt", task_id=task_id, prompt_id=prompt_id)

    async def _cancel_prompt(self, prompt_id: str) -> None:
        """Stop one prompt, running or queued: the jobs route where the server has it."""
        if self._jobs_cancel is not False:
            async with (
                unavailable_on_network_error("POST api/jobs/{id}/cancel"),
                self._session.post(
                    f"{self._base}/api/jobs/{prompt_id}/cancel", timeout=SHORT
                ) as resp,
            ):
                payload, _ = await read_json(resp)
                status = resp.status
            # A server without the route answers aiohttp's plain-text 404/405; one that has it
            # answers JSON (also for a job it no longer knows).
            route_missing = status in (404, 405) and not isinstance(payload, dict)
            if self._jobs_cancel is None:
                self._jobs_cancel = not route_missing
                _log.info("comfyui_jobs_cancel_route", available=self._jobs_cancel)
            if not route_missing:
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
