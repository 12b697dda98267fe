"""SD WebUI (AUTOMATIC1111) runtime: /sdapi/v1 txt2img, img2img, extra-single-image,
extra-batch-images; start-up model check; per-request model switching (dynamic runtimes)."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Sequence
from typing import Any, NoReturn

import aiohttp
import structlog

from sdq_contracts.messages import TaskMessage
from sdq_queue_agent.adapters.runtime_http import (
    GENERATION,
    SHORT,
    read_json,
    unavailable_on_network_error,
)
from sdq_queue_agent.domain import sdwebui_body
from sdq_queue_agent.domain.inputs import substitute
from sdq_queue_agent.domain.model import FetchedInput, RuntimeRequest, RuntimeResult
from sdq_queue_agent.errors import (
    RuntimeRejectedError,
    RuntimeUnavailableError,
    StartupError,
    TransientTaskError,
    UnknownModelError,
    UnknownScriptError,
)

_log = structlog.get_logger("sdq_queue_agent.sdwebui")
# Loading a checkpoint can take minutes on a cold node.
MODEL_LOAD = aiohttp.ClientTimeout(total=900, sock_connect=10)


class SdWebUiRuntime:
    kind = "sdwebui"
    # v1.10.1 runs every generation route under one FIFOLock (modules/call_queue.py
    # queue_lock; modules/api/api.py text2imgapi/img2imgapi/extras), and encodes the answer's
    # images after releasing it: a request sent ahead starts as soon as the one before ends.
    queues_requests = True

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        static_model: str | None,
        dynamic_model: bool,
    ) -> None:
        self._session = session
        self._api = f"{base_url}/sdapi/v1"
        self._static_model = static_model
        self._dynamic = dynamic_model
        self._models: list[dict[str, Any]] | None = None
        self._scripts: dict[str, Any] | None = None
        self._interrupted: set[str] = set()

    async def ping(self) -> None:
        async with (
            unavailable_on_network_error("GET options"),
            self._session.get(f"{self._api}/options", timeout=SHORT) as resp,
        ):
            if resp.status != 200:
                raise RuntimeUnavailableError(f"GET options: HTTP {resp.status}")

    async def startup_check(self) -> None:
        if not self._static_model:
            return
        try:
            title = await self._resolve_model(self._static_model)
        except UnknownModelError:
            raise StartupError(
                f"SD WebUI does not have the static model {self._static_model!r} (GET sd-models)"
            ) from None
        async with (
            unavailable_on_network_error("GET options"),
            self._session.get(f"{self._api}/options", timeout=SHORT) as resp,
        ):
            options, _ = await read_json(resp)
        loaded = options.get("sd_model_checkpoint") if isinstance(options, dict) else None
        if loaded == title:
            _log.info("static_model_loaded", model=title)
            return
        _log.info("loading_the_static_model", model=title, loaded=loaded)
        async with (
            unavailable_on_network_error("POST options"),
            self._session.post(
                f"{self._api}/options", json={"sd_model_checkpoint": title}, timeout=MODEL_LOAD
            ) as resp,
        ):
            if resp.status != 200:
                raise StartupError(f"SD WebUI could not load {title!r}: HTTP {resp.status}")

    async def _list_models(self, refresh: bool) -> list[dict[str, Any]]:
        if refresh:
            async with (
                unavailable_on_network_error("POST refresh-checkpoints"),
                self._session.post(f"{self._api}/refresh-checkpoints", timeout=MODEL_LOAD),
            ):
                pass
        async with (
            unavailable_on_network_error("GET sd-models"),
            self._session.get(f"{self._api}/sd-models", timeout=SHORT) as resp,
        ):
            models, _ = await read_json(resp)
        self._models = (
            [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []
        )
        return self._models

    async def _resolve_model(self, wanted: str) -> str:
        """The checkpoint title for ``wanted``; refreshes the list once before giving up."""
        for refresh in (False, True):
            models = (
                self._models
                if (self._models is not None and not refresh)
                else await self._list_models(refresh)
            )
            title = sdwebui_body.find_model(models, wanted)
            if title is not None:
                return title
        raise UnknownModelError(f"SD WebUI has no checkpoint {wanted!r}")

    async def _list_scripts(self, refresh: bool) -> dict[str, Any]:
        if self._scripts is None or refresh:
            async with (
                unavailable_on_network_error("GET scripts"),
                self._session.get(f"{self._api}/scripts", timeout=SHORT) as resp,
            ):
                payload, _ = await read_json(resp)
                if resp.status != 200 or not isinstance(payload, dict):
                    raise RuntimeUnavailableError(f"GET scripts: HTTP {resp.status}")
            self._scripts = payload
        return self._scripts

    async def _check_scripts(self, request: RuntimeRequest) -> None:
        """Refuse ``alwayson_scripts`` the runtime lacks before running (listed once, then again
        before refusing, in case an extension came meanwhile)."""
        if not sdwebui_body.script_names(request.body):
            return
        try:
            sdwebui_body.check_scripts(
                request.tasktype, request.body, await self._list_scripts(refresh=False)
            )
        except UnknownScriptError:
            sdwebui_body.check_scripts(
                request.tasktype, request.body, await self._list_scripts(refresh=True)
            )

    def prepare(self, task: TaskMessage, content: dict[str, Any]) -> RuntimeRequest:
        return sdwebui_body.shape(task, content, dynamic_model=self._dynamic)

    async def stage_inputs(
        self, request: RuntimeRequest, inputs: Sequence[FetchedInput]
    ) -> RuntimeRequest:
        values = {i.ref.path: base64.b64encode(i.data).decode("ascii") for i in inputs}
        return dataclasses.replace(request, body=substitute(request.body, values), inputs=())

    async def run(self, request: RuntimeRequest) -> RuntimeResult:
        body = request.body
        if request.model:
            body = sdwebui_body.with_model(body, await self._resolve_model(request.model))
        endpoint = sdwebui_body.ENDPOINTS[request.tasktype]
        if request.tasktype in sdwebui_body.MODEL_TASKS:
            await self._check_scripts(request)
        self._interrupted.discard(request.task_id)
        async with (
            unavailable_on_network_error(f"POST {endpoint}"),
            self._session.post(f"{self._api}/{endpoint}", json=body, timeout=GENERATION) as resp,
        ):
            payload, text = await read_json(resp)
            status = resp.status
        if request.task_id in self._interrupted:
            self._interrupted.discard(request.task_id)
            raise TransientTaskError("generation was interrupted by the agent")
        if 400 <= status < 500:
            script = sdwebui_body.missing_script(payload)
            if script is not None:
                raise UnknownScriptError(
                    f"alwayson_scripts: SD WebUI has no script {script!r} "
                    f"(an extension not installed?); HTTP {status}"
                )
            raise RuntimeRejectedError(sdwebui_body.error_detail(status, payload, text))
        if status != 200:
            await self._raise_server_error(endpoint, status, payload, text)
        if not isinstance(payload, dict):
            raise RuntimeUnavailableError(f"POST {endpoint}: answer is not a JSON object")
        files, elided = sdwebui_body.read_response(request.tasktype, payload)
        return RuntimeResult(files=tuple(files), response=elided)

    async def _raise_server_error(
        self, endpoint: str, status: int, payload: Any, text: str
    ) -> NoReturn:
        """A broken request (permanent) or a sick runtime (transient)?

        SD WebUI answers 500 for request errors that no retry fixes. Such an answer is its own
        error body naming the exception; if the runtime then still answers its health call, the
        request was at fault. Anything else (502/503, another body, a failing health call) is
        the runtime being unavailable.
        """
        detail = sdwebui_body.error_detail(status, payload, text)
        message = sdwebui_body.request_error(status, payload)
        if message is None:
            raise RuntimeUnavailableError(f"POST {endpoint}: {detail}")
        try:
            await self.ping()
        except RuntimeUnavailableError as exc:
            raise RuntimeUnavailableError(
                f"POST {endpoint}: {detail}; then the health call failed ({exc.message})"
            ) from None
        raise RuntimeRejectedError(f"SD WebUI could not run the request: {message}")

    async def interrupt(self, task_id: str) -> None:
        self._interrupted.add(task_id)
        async with (
            unavailable_on_network_error("POST interrupt"),
            self._session.post(f"{self._api}/interrupt", timeout=SHORT),
        ):
            pass
