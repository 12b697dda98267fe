"""InvokeAI runtime: its session queue (``/api/v1/queue/default``), image store
(``/api/v1/images``) and model manager (``/api/v2/models``).

One task = one enqueued batch; each queue item of it is followed until ``completed``,
``failed`` or ``canceled`` (the batch's status counts are polled, then each item is read once).
Images of the non-intermediate nodes are fetched, and once they are in S3 deleted from
InvokeAI together with the task's uploaded inputs and queue items. Models are named by file
and installed into InvokeAI's model manager by path from the node's model cache (InvokeAI
never downloads anything here).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import structlog

from sdq_contracts.messages import TaskMessage
from sdq_queue_agent.adapters.runtime_http import SHORT, read_json, unavailable_on_network_error
from sdq_queue_agent.domain import invokeai_graph
from sdq_queue_agent.domain.files import by_filename, ext_for
from sdq_queue_agent.domain.inputs import substitute
from sdq_queue_agent.domain.model import (
    FetchedInput,
    JsonPath,
    OutputFile,
    RuntimeRequest,
    RuntimeResult,
)
from sdq_queue_agent.errors import (
    InterruptedByOtherError,
    RuntimeRejectedError,
    RuntimeUnavailableError,
    StartupError,
    TaskFailure,
    TransientTaskError,
    UnknownModelError,
)

_log = structlog.get_logger("sdq_queue_agent.invokeai")
QUEUE = "default"
FILES = aiohttp.ClientTimeout(total=300, sock_connect=5)
# Hashing and probing a large checkpoint can take minutes on a cold node.
INSTALL_SECONDS = 900.0
CLEANUP = aiohttp.ClientTimeout(total=30, sock_connect=5)


@dataclasses.dataclass
class _Run:
    batch_id: str | None = None
    item_ids: tuple[int, ...] = ()
    images: tuple[str, ...] = ()


class InvokeAiRuntime:
    kind = "invokeai"
    queues_requests = False  # look-ahead not verified against its session queue

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        static_model: str | None,
        models_dir: str = "/models",
        poll_seconds: float = 0.05,
        install_seconds: float = INSTALL_SECONDS,
    ) -> None:
        self._session = session
        self._api = f"{base_url}/api"
        self._static_model = static_model
        self._models_dir = models_dir.rstrip("/") or "/"
        self._poll = poll_seconds
        self._install_seconds = install_seconds
        self._runs: dict[str, _Run] = {}
        self._uploads: dict[str, list[str]] = {}
        self._interrupted: set[str] = set()
        # name → ModelIdentifierField of models already resolved (installs are remembered).
        self._known: dict[tuple[str, str | None], dict[str, Any]] = {}
        self._install_lock = asyncio.Lock()

    # ------------------------------------------------------------------ health and models

    async def ping(self) -> None:
        async with (
            unavailable_on_network_error("GET app/version"),
            self._session.get(f"{self._api}/v1/app/version", timeout=SHORT) as resp,
        ):
            if resp.status != 200:
                raise RuntimeUnavailableError(f"GET app/version: HTTP {resp.status}")

    async def startup_check(self) -> None:
        """Install the static model into InvokeAI's model manager (by path, from the cache)."""
        if not self._static_model:
            return
        try:
            found = await self.resolve_model(self._static_model, "main")
        except UnknownModelError as exc:
            raise StartupError(str(exc)) from None
        except RuntimeRejectedError as exc:
            raise StartupError(f"InvokeAI cannot use the static model: {exc.message}") from None
        _log.info("static_model_ready", model=found.get("name"), key=found.get("key"))

    async def resolve_model(self, name: str, model_type: str | None) -> dict[str, Any]:
        """The ModelIdentifierField InvokeAI knows ``name`` by; installs it from the node's model
        cache when the model manager does not have it yet; UnknownModelError when neither has."""
        cached = self._known.get((name, model_type))
        if cached is not None:
            return cached
        async with self._install_lock:  # two tasks needing one new model install it once
            record = invokeai_graph.find_model(await self._models(), name, model_type)
            if record is None:
                record = await self._install(name, model_type)
        ident = invokeai_graph.identifier(record)
        self._known[(name, model_type)] = ident
        return ident

    async def _models(self) -> list[dict[str, Any]]:
        async with (
            unavailable_on_network_error("GET models"),
            self._session.get(f"{self._api}/v2/models/", timeout=SHORT) as resp,
        ):
            payload, _ = await read_json(resp)
            if resp.status != 200 or not isinstance(payload, dict):
                raise RuntimeUnavailableError(f"GET v2/models: HTTP {resp.status}")
        models = payload.get("models")
        return [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []

    async def _install(self, name: str, model_type: str | None) -> dict[str, Any]:
        async with (
            unavailable_on_network_error("GET models/scan_folder"),
            self._session.get(
                f"{self._api}/v2/models/scan_folder",
                params={"scan_path": self._models_dir},
                timeout=FILES,
            ) as resp,
        ):
            found, text = await read_json(resp)
            if resp.status == 400:  # no such folder: an empty cache
                found = []
            elif resp.status != 200 or not isinstance(found, list):
                raise RuntimeUnavailableError(f"GET scan_folder: HTTP {resp.status} {text[:200]}")
        path = invokeai_graph.find_in_scan([f for f in found if isinstance(f, dict)], name)
        if path is None:
            raise UnknownModelError(
                f"InvokeAI has no model {name!r}, and the node's model cache "
                f"({self._models_dir}) has no file by that name"
            )
        _log.info("installing_a_model_into_invokeai_from_the_node_cache", model=name, path=path)
        async with (
            unavailable_on_network_error("POST models/install"),
            self._session.post(
                f"{self._api}/v2/models/install",
                params={"source": path, "inplace": "true"},
                json={},
                timeout=SHORT,
            ) as resp,
        ):
            job, text = await read_json(resp)
            if 400 <= resp.status < 500:
                raise RuntimeRejectedError(
                    f"InvokeAI refused to install {name!r} from {path}: HTTP {resp.status} {text[:300]}"
                )
            if resp.status not in (200, 201) or not isinstance(job, dict) or "id" not in job:
                raise RuntimeUnavailableError(f"POST models/install: HTTP {resp.status}")
        job = await self._wait_install(int(job["id"]), job)
        record = job.get("config_out")
        if job.get("error_reason") == "DuplicateModelException":
            # Installed before (under any type): what the model manager made of it decides.
            record = invokeai_graph.find_model(await self._models(), path)
        elif job.get("status") != "completed":
            reason = job.get("error") or job.get("error_reason") or job.get("status")
            raise RuntimeRejectedError(f"InvokeAI could not install {name!r} from {path}: {reason}")
        if not isinstance(record, dict):
            raise RuntimeUnavailableError(f"InvokeAI installed {name!r} but has no record of it")
        if model_type is not None and record.get("type") != model_type:
            raise RuntimeRejectedError(
                f"InvokeAI's model manager identifies {name!r} ({path}) as a "
                f"{record.get('type')!r} model (base {record.get('base')!r}), not {model_type!r}; "
                "its probe did not recognise the file"
            )
        _log.info("model_installed", model=record.get("name"), key=record.get("key"))
        return dict(record)

    async def _wait_install(self, job_id: int, job: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + self._install_seconds
        while job.get("status") not in ("completed", "error", "cancelled"):
            if time.monotonic() > deadline:
                raise TransientTaskError(f"InvokeAI model install {job_id} did not finish in time")
            await asyncio.sleep(min(0.5, self._poll * 5))
            async with (
                unavailable_on_network_error("GET models/install/{id}"),
                self._session.get(f"{self._api}/v2/models/install/{job_id}", timeout=SHORT) as resp,
            ):
                payload, _ = await read_json(resp)
                if resp.status != 200 or not isinstance(payload, dict):
                    raise RuntimeUnavailableError(
                        f"GET models/install/{job_id}: HTTP {resp.status}"
                    )
            job = payload
        return job

    # ------------------------------------------------------------------ one task

    def prepare(self, task: TaskMessage, content: dict[str, Any]) -> RuntimeRequest:
        return invokeai_graph.shape(task, content, static_model=self._static_model)

    async def stage_inputs(
        self, request: RuntimeRequest, inputs: Sequence[FetchedInput]
    ) -> RuntimeRequest:
        values: dict[JsonPath, Any] = {}
        uploaded = self._uploads.setdefault(request.task_id, [])
        for n, item in enumerate(inputs, start=1):
            form = aiohttp.FormData()
            filename = f"{request.task_id}-{n}.{ext_for(item.content_type)}"
            form.add_field("file", item.data, filename=filename, content_type=item.content_type)
            async with (
                unavailable_on_network_error("POST images/upload"),
                self._session.post(
                    f"{self._api}/v1/images/upload",
                    params={"image_category": "user", "is_intermediate": "true"},
                    data=form,
                    timeout=FILES,
                ) as resp,
            ):
                payload, text = await read_json(resp)
                if 400 <= resp.status < 500:
                    raise RuntimeRejectedError(
                        f"InvokeAI refused the input image: HTTP {resp.status} {text[:200]}"
                    )
                if resp.status not in (200, 201) or not isinstance(payload, dict):
                    raise RuntimeUnavailableError(f"POST images/upload: HTTP {resp.status}")
            name = str(payload["image_name"])
            uploaded.append(name)
            values[item.ref.path] = name
        return dataclasses.replace(request, body=substitute(request.body, values), inputs=())

    async def run(self, request: RuntimeRequest) -> RuntimeResult:
        task_id = request.task_id
        self._interrupted.discard(task_id)
        run = self._runs[task_id] = _Run()
        try:
            body = await self._with_models(request.body)
            await self._enqueue(task_id, body, run)
            if task_id in self._interrupted:  # interrupted while the batch was being enqueued
                await self._cancel_items(run)
            items = await self._follow(run)
            outcomes = [invokeai_graph.item_outcome(item) for item in items]
            # Images the task's nodes wrote, not images the graph only read (a client's own).
            given = set(invokeai_graph.image_names(body))
            run.images = tuple(name for o in outcomes for name in o.produced if name not in given)
            self._raise_failures(task_id, outcomes)
            names = [name for outcome in outcomes for name in outcome.images]
            if not names:
                raise RuntimeRejectedError(
                    "the graph finished without an output image (every node is intermediate?)"
                )
            files = [await self._image(name) for name in names]
        except TaskFailure:
            await self._cleanup(task_id, run, images=run.images)
            raise
        finally:
            self._runs.pop(task_id, None)
        response = {
            "batch_id": run.batch_id,
            "item_ids": list(run.item_ids),
            "items": [
                {"item_id": o.item_id, "status": o.status, "images": list(o.images)}
                for o in outcomes
            ],
        }

        async def after_upload() -> None:
            await self._cleanup(task_id, run, images=run.images)

        return RuntimeResult(files=tuple(files), response=response, after_upload=after_upload)

    async def _with_models(self, body: dict[str, Any]) -> dict[str, Any]:
        refs = invokeai_graph.model_refs(body)
        values: dict[JsonPath, Any] = {}
        for ref in refs:
            values[ref.path] = await self.resolve_model(ref.name, ref.model_type)
        return substitute(body, values) if values else body

    async def _enqueue(self, task_id: str, body: dict[str, Any], run: _Run) -> None:
        async with (
            unavailable_on_network_error("POST enqueue_batch"),
            self._session.post(
                f"{self._api}/v1/queue/{QUEUE}/enqueue_batch", json=body, timeout=SHORT
            ) as resp,
        ):
            payload, text = await read_json(resp)
            if 400 <= resp.status < 500:
                raise invokeai_graph.enqueue_error(resp.status, payload, text)
            if resp.status not in (200, 201) or not isinstance(payload, dict):
                raise RuntimeUnavailableError(
                    f"POST enqueue_batch: HTTP {resp.status} {text[:200]}"
                )
        run.batch_id = str((payload.get("batch") or {}).get("batch_id") or "") or None
        run.item_ids = tuple(int(i) for i in payload.get("item_ids") or ())
        if not run.item_ids:
            raise RuntimeRejectedError("InvokeAI enqueued no queue item for the batch")
        _log.info("enqueued", task_id=task_id, batch_id=run.batch_id, item_ids=list(run.item_ids))

    async def _follow(self, run: _Run) -> list[dict[str, Any]]:
        """Wait until every item of the batch is terminal (its status counts), then read each."""
        while True:
            if run.batch_id is not None and len(run.item_ids) > 1:
                async with (
                    unavailable_on_network_error("GET batch status"),
                    self._session.get(
                        f"{self._api}/v1/queue/{QUEUE}/b/{run.batch_id}/status", timeout=SHORT
                    ) as resp,
                ):
                    counts, _ = await read_json(resp)
                    if resp.status != 200 or not isinstance(counts, dict):
                        raise RuntimeUnavailableError(f"GET batch status: HTTP {resp.status}")
                open_items = sum(
                    int(counts.get(k) or 0) for k in ("pending", "in_progress", "waiting")
                )
                if open_items == 0:
                    return [await self._item(i) for i in run.item_ids]
            else:
                items = [await self._item(i) for i in run.item_ids]
                if all(item.get("status") in invokeai_graph.TERMINAL for item in items):
                    return items
            await asyncio.sleep(self._poll)

    async def _item(self, item_id: int) -> dict[str, Any]:
        async with (
            unavailable_on_network_error("GET queue item"),
            self._session.get(f"{self._api}/v1/queue/{QUEUE}/i/{item_id}", timeout=SHORT) as resp,
        ):
            payload, _ = await read_json(resp)
            if resp.status == 404:
                raise RuntimeUnavailableError(
                    f"InvokeAI lost queue item {item_id} (restarted with a new database?)"
                )
            if resp.status != 200 or not isinstance(payload, dict):
                raise RuntimeUnavailableError(f"GET queue item {item_id}: HTTP {resp.status}")
        return payload

    def _raise_failures(self, task_id: str, outcomes: list[invokeai_graph.ItemOutcome]) -> None:
        known_keys = {str(ident.get("key")) for ident in self._known.values()}
        for outcome in outcomes:
            if outcome.status != "failed":
                continue
            message = outcome.error_message or ""
            if message.startswith("Unknown model ") and message[14:].strip() in known_keys:
                # A key this agent installed is gone: InvokeAI restarted with an empty model
                # manager. Forget what was installed; the retry installs it again.
                self._known.clear()
                raise TransientTaskError(
                    f"InvokeAI no longer has model key {message[14:].strip()} (restarted?); "
                    "it is installed again on the next attempt"
                )
            raise invokeai_graph.failure(outcome)
        if any(o.status == "canceled" for o in outcomes):
            if task_id in self._interrupted:
                raise TransientTaskError("InvokeAI queue items were canceled by the agent")
            raise InterruptedByOtherError("InvokeAI queue items were canceled by someone else")
        for outcome in outcomes:
            if outcome.status != "completed":
                raise RuntimeUnavailableError(
                    f"InvokeAI queue item {outcome.item_id} ended as {outcome.status!r}"
                )

    async def _image(self, name: str) -> OutputFile:
        async with (
            unavailable_on_network_error("GET image"),
            self._session.get(f"{self._api}/v1/images/i/{name}/full", timeout=FILES) as resp,
        ):
            if resp.status != 200:
                raise RuntimeUnavailableError(f"GET images/i/{name}/full: HTTP {resp.status}")
            data = await resp.read()
            header_type = resp.headers.get("Content-Type")
        content_type, ext = by_filename(name, header_type)
        return OutputFile(data=data, content_type=content_type, ext=ext)

    # ------------------------------------------------------------------ cancel and clean up

    async def interrupt(self, task_id: str) -> None:
        self._interrupted.add(task_id)
        run = self._runs.get(task_id)
        if run is not None:
            await self._cancel_items(run)
            _log.info(
                "canceled_the_invokeai_queue_items", task_id=task_id, items=list(run.item_ids)
            )

    async def _cancel_items(self, run: _Run) -> None:
        for item_id in run.item_ids:
            async with (
                unavailable_on_network_error("PUT cancel"),
                self._session.put(
                    f"{self._api}/v1/queue/{QUEUE}/i/{item_id}/cancel", timeout=SHORT
                ),
            ):
                pass

    async def _cleanup(self, task_id: str, run: _Run, *, images: Sequence[str]) -> None:
        """Delete the task's output images, uploaded inputs and queue items from InvokeAI
        (best effort: what stays behind only takes disk space)."""
        names = [*images, *self._uploads.pop(task_id, [])]
        calls = [(f"{self._api}/v1/images/i/{name}", f"image {name}") for name in names]
        calls += [
            (f"{self._api}/v1/queue/{QUEUE}/i/{item_id}", f"queue item {item_id}")
            for item_id in run.item_ids
        ]
        left: list[str] = []
        for url, what in calls:
            with contextlib.suppress(TaskFailure):
                async with (
                    unavailable_on_network_error(f"DELETE {what}"),
                    self._session.delete(url, timeout=CLEANUP) as resp,
                ):
                    if resp.status in (200, 204, 404):
                        continue
            left.append(what)
        if left:
            _log.warning("could_not_delete_from_invokeai", task_id=task_id, left=left)
