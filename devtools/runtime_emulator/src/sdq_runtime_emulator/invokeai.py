"""Emulated InvokeAI (6.14) HTTP API — sdq runtime EMULATOR (placeholder images).

What sdq drives, with the shapes and status codes of the real server (checked against
InvokeAI 6.14.2 on CPU): the session queue ``/api/v1/queue/{queue_id}`` (enqueue_batch, items,
batch status, cancel, delete), the image store ``/api/v1/images`` (upload, full, delete), the
model manager ``/api/v2/models`` (list, scan_folder, install by local path and its job) and
``/api/v1/app/version``. Queue items run one at a time in order on a worker task the app owns;
the latency knob is spent per queue item whose graph has a ``denoise_latents`` node.

Quirks kept: an invalid graph is a 422 with FastAPI's ``detail`` list; a node that fails marks
its item ``failed`` with ``error_type`` (the exception's class name) and ``error_message``; a
node missing a required input fails at run time (``MissingInputException``), not at enqueue;
``main_model_loader`` with an unknown key fails with ``Exception: Unknown model <key>``;
install job ids start at 0; a model file the probe cannot identify installs as
``unknown``; output nodes are the non-intermediate ones, results are keyed by prepared node ids
mapped through ``source_prepared_mapping``.
"""

from __future__ import annotations

import asyncio
import copy
import io
import itertools
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image

from sdq_runtime_emulator import models, render
from sdq_runtime_emulator.invokeai_nodes import (
    COMMON,
    FIELD_KINDS,
    NODE_TYPES,
    REQUIRED,
    Context,
    NodeError,
)
from sdq_runtime_emulator.state import EmulatorState, GenerationFault, Outcome, log, pace

VERSION = "6.14.2"
ENQUEUE_PATH_SUFFIX = "/enqueue_batch"
TERMINAL = frozenset({"completed", "failed", "canceled"})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def detail(status: int, message: str) -> web.Response:
    return web.json_response({"detail": message}, status=status)


def _invalid(loc: list[Any], kind: str, msg: str) -> web.Response:
    return web.json_response(
        {"detail": [{"type": kind, "loc": ["body", *loc], "msg": msg}]}, status=422
    )


@dataclass
class StoredImage:
    png: bytes
    width: int
    height: int
    category: str
    intermediate: bool
    created_at: str = field(default_factory=_now)

    def dto(self, name: str) -> dict[str, Any]:
        return {
            "image_name": name,
            "image_url": f"api/v1/images/i/{name}/full",
            "thumbnail_url": f"api/v1/images/i/{name}/thumbnail",
            "image_origin": "external",
            "image_category": self.category,
            "width": self.width,
            "height": self.height,
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "deleted_at": None,
            "is_intermediate": self.intermediate,
            "session_id": None,
            "node_id": None,
            "starred": False,
            "has_workflow": False,
            "image_subfolder": "",
            "board_id": None,
        }


@dataclass
class Item:
    item_id: int
    batch_id: str
    origin: str | None
    graph: dict[str, Any]
    field_values: list[dict[str, Any]]
    status: str = "pending"
    error_type: str | None = None
    error_message: str | None = None
    created_at: str = field(default_factory=_now)
    started_at: str | None = None
    completed_at: str | None = None
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    results: dict[str, Any] = field(default_factory=dict)
    mapping: dict[str, list[str]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "item_id": self.item_id,
            "status": self.status,
            "priority": 0,
            "batch_id": self.batch_id,
            "origin": self.origin,
            "session_id": self.session_id,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "created_at": self.created_at,
            "updated_at": self.completed_at or self.started_at or self.created_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "queue_id": "default",
            "user_id": "system",
            "field_values": self.field_values,
            "device": "cpu",
            "session": {
                "id": self.session_id,
                "graph": self.graph,
                "executed": self.executed,
                "results": self.results,
                "errors": {},
                "prepared_source_mapping": {
                    prepared: source for source, ids in self.mapping.items() for prepared in ids
                },
                "source_prepared_mapping": self.mapping,
            },
        }
        return {k: v for k, v in body.items() if v is not None}  # response_model_exclude_none


class InvokeAi:
    """Handlers, queue and executor of the InvokeAI routes; one instance per emulator app."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.items: dict[int, Item] = {}
        self.pending: list[int] = []
        self.wakeup = asyncio.Event()
        self.images: dict[str, StoredImage] = {}
        # Emulator convenience (the real model manager starts empty): the built-in checkpoints
        # the SD WebUI half also lists are installed, so a static model like
        # v1-5-pruned-emaonly.safetensors works without a file in the node cache.
        self.records: dict[str, dict[str, Any]] = {
            record["key"]: record for record in map(_builtin_record, models.BUILTIN_CHECKPOINTS)
        }
        self.jobs: dict[int, dict[str, Any]] = {}
        self.next_item = itertools.count(1)
        self.next_job = itertools.count(0)

    def routes(self) -> list[web.RouteDef]:
        queue = "/api/v1/queue/{queue_id}"
        return [
            web.get("/api/v1/app/version", self.version),
            web.post(f"{queue}/enqueue_batch", self.enqueue_batch),
            web.get(f"{queue}/i/{{item_id}}", self.get_item),
            web.delete(f"{queue}/i/{{item_id}}", self.delete_item),
            web.put(f"{queue}/i/{{item_id}}/cancel", self.cancel_item),
            web.get(f"{queue}/b/{{batch_id}}/status", self.batch_status),
            web.post("/api/v1/images/upload", self.upload_image),
            web.get("/api/v1/images/i/{image_name}/full", self.image_full),
            web.delete("/api/v1/images/i/{image_name}", self.delete_image),
            web.get("/api/v2/models/", self.list_models),
            web.get("/api/v2/models/scan_folder", self.scan_folder),
            web.post("/api/v2/models/install", self.install_model),
            web.get("/api/v2/models/install/{job_id}", self.install_job),
        ]

    # --- app lifecycle ----------------------------------------------------------------

    async def worker(self) -> None:
        """Run pending queue items one at a time, in order, until cancelled."""
        while True:
            while not self.pending:
                self.wakeup.clear()
                await self.wakeup.wait()
            item = self.items.get(self.pending.pop(0))
            if item is not None and item.status == "pending":
                await self._execute(item)

    # --- health -----------------------------------------------------------------------

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})

    # --- queue ------------------------------------------------------------------------

    async def enqueue_batch(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _invalid([], "json_invalid", "JSON decode error")
        batch = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch, dict):
            return _invalid(["batch"], "missing", "Field required")
        problem = self._check_graph(batch.get("graph"))
        if problem is not None:
            return problem
        runs = batch.get("runs", 1)
        if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
            return _invalid(["batch", "runs"], "greater_than_equal", "Input should be >= 1")
        combos = self._combinations(batch)
        if isinstance(combos, web.Response):
            return combos
        batch_id = str(batch.get("batch_id") or uuid.uuid4())
        ids: list[int] = []
        for _ in range(runs):
            for values in combos:
                graph = copy.deepcopy(batch["graph"])
                for value in values:
                    graph["nodes"][value["node_path"]][value["field_name"]] = value["value"]
                item = Item(next(self.next_item), batch_id, batch.get("origin"), graph, values)
                self.items[item.item_id] = item
                self.pending.append(item.item_id)
                ids.append(item.item_id)
        self.wakeup.set()
        echoed = {**batch, "batch_id": batch_id, "runs": runs}
        echoed.setdefault("origin", None)
        echoed.setdefault("destination", None)
        echoed.setdefault("data", None)
        return web.json_response(
            {
                "queue_id": request.match_info["queue_id"],
                "enqueued": len(ids),
                "requested": len(ids),
                "batch": echoed,
                "priority": 0,
                "item_ids": ids,
            }
        )

    def _check_graph(self, graph: Any) -> web.Response | None:
        if not isinstance(graph, dict):
            return _invalid(["batch", "graph"], "missing", "Field required")
        nodes = graph.setdefault("nodes", {})
        if not isinstance(nodes, dict):
            return _invalid(
                ["batch", "graph", "nodes"], "dict_type", "Input should be a valid dictionary"
            )
        graph.setdefault("id", str(uuid.uuid4()))
        for node_id, node in nodes.items():
            kind = node.get("type") if isinstance(node, dict) else None
            if kind not in NODE_TYPES:
                return _invalid(
                    ["batch", "graph", "nodes", node_id],
                    "union_tag_invalid",
                    f"Input tag {kind!r} found using 'type' does not match any of the expected "
                    f"tags: {', '.join(repr(t) for t in sorted(NODE_TYPES))}",
                )
            if node.get("id", node_id) != node_id:
                return _invalid(
                    ["batch", "graph"],
                    "value_error",
                    f"Value error, Node ids must match, got {node_id} and {node.get('id')}",
                )
            node.setdefault("id", node_id)
            node.setdefault("is_intermediate", False)
            node.setdefault("use_cache", True)
        edges = graph.setdefault("edges", [])
        for edge in edges if isinstance(edges, list) else []:
            try:
                src, dst = edge["source"], edge["destination"]
                src_node, dst_node = nodes.get(src["node_id"]), nodes.get(dst["node_id"])
            except (KeyError, TypeError):
                return _invalid(["batch", "graph", "edges"], "missing", "Field required")
            if src_node is None or dst_node is None:
                end, point = ("source", src) if src_node is None else ("destination", dst)
                return _invalid(
                    ["batch", "graph"],
                    "value_error",
                    f"Value error, Edge {end} node {point['node_id']} does not exist in the graph",
                )
            spec_src, spec_dst = NODE_TYPES[src_node["type"]], NODE_TYPES[dst_node["type"]]
            kinds = (FIELD_KINDS.get(src["field"]), FIELD_KINDS.get(dst["field"]))
            if (
                src["field"] not in spec_src.outputs
                or dst["field"] not in spec_dst.inputs
                or kinds[0] != kinds[1]
            ):
                return _invalid(
                    ["batch", "graph"],
                    "value_error",
                    "Value error, Edge source and target types do not match "
                    f"({src['node_id']}.{src['field']} -> {dst['node_id']}.{dst['field']})",
                )
        return None

    def _combinations(self, batch: dict[str, Any]) -> list[list[dict[str, Any]]] | web.Response:
        """Field values of each queue item: zipped within a group, product across groups."""
        groups: list[list[list[dict[str, Any]]]] = []
        for group in batch.get("data") or []:
            lengths = {len(datum.get("items") or []) for datum in group}
            if len(lengths) > 1:
                return _invalid(
                    ["batch", "data"],
                    "value_error",
                    "Value error, Zipped batch items must all have the same length",
                )
            for datum in group:
                node = batch["graph"]["nodes"].get(datum.get("node_path"))
                if node is None:
                    return _invalid(
                        ["batch"],
                        "value_error",
                        f"Value error, Node {datum.get('node_path')} not found in graph",
                    )
            size = lengths.pop() if lengths else 0
            groups.append(
                [
                    [
                        {
                            "node_path": d["node_path"],
                            "field_name": d["field_name"],
                            "value": d["items"][i],
                        }
                        for d in group
                    ]
                    for i in range(size)
                ]
            )
        if not groups:
            return [[]]
        return [list(itertools.chain.from_iterable(c)) for c in itertools.product(*groups)]

    async def get_item(self, request: web.Request) -> web.Response:
        item = self._item(request)
        if item is None:
            return self._no_item(request)
        return web.json_response(item.to_json())

    async def delete_item(self, request: web.Request) -> web.Response:
        item = self._item(request)
        if item is None:
            return self._no_item(request)
        item.stop.set()
        del self.items[item.item_id]
        return web.json_response(None)

    async def cancel_item(self, request: web.Request) -> web.Response:
        item = self._item(request)
        if item is None:
            return self._no_item(request)
        if item.status not in TERMINAL:
            # Like the real queue: canceled at once; a running session stops at its next node.
            self.state.stats.invokeai.interrupts += 1
            self._finish(item, "canceled")
            item.stop.set()
        return web.json_response(item.to_json())

    async def batch_status(self, request: web.Request) -> web.Response:
        batch_id = request.match_info["batch_id"]
        counts = dict.fromkeys(
            ("pending", "in_progress", "waiting", "completed", "failed", "canceled"), 0
        )
        for item in self.items.values():
            if item.batch_id == batch_id:
                counts[item.status] += 1
        return web.json_response(
            {
                "queue_id": request.match_info["queue_id"],
                "batch_id": batch_id,
                "origin": None,
                "destination": None,
                **counts,
                "total": sum(counts.values()),
            }
        )

    def _item(self, request: web.Request) -> Item | None:
        try:
            return self.items.get(int(request.match_info["item_id"]))
        except ValueError:
            return None

    @staticmethod
    def _no_item(request: web.Request) -> web.Response:
        return detail(
            404,
            f"Queue item with id {request.match_info['item_id']} not found in queue "
            f"{request.match_info['queue_id']}",
        )

    # --- execution --------------------------------------------------------------------

    async def _execute(self, item: Item) -> None:
        item.status = "in_progress"
        item.started_at = _now()
        item.stop.clear()
        nodes = item.graph["nodes"]
        generation = any(NODE_TYPES[n["type"]].generation for n in nodes.values())
        fault = GenerationFault.NONE
        if generation:
            fault = self.state.take_generation_fault()
            self.state.generation_started("invokeai")
            log.info("invokeai queue item %d started (fault=%s)", item.item_id, fault.value)
        deadline = time.monotonic() + (self.state.knobs.generation_latency_s if generation else 0)
        outcome = "failed"
        try:
            if fault is GenerationFault.EXECUTION_ERROR:
                raise NodeError("RuntimeError", "sdq runtime emulator: injected execution error")
            values = await self._run_graph(item)
            waited = await pace(
                deadline=deadline, stop=item.stop, fault=fault, steps=1, die=self._die
            )
            if waited is Outcome.FINISHED:
                outcome = "completed"
                item.results = values
            else:
                outcome = "interrupted"
        except NodeError as error:
            item.error_type, item.error_message = error.error_type, error.message
        if generation:
            self.state.generation_ended("invokeai", outcome)
        if item.status != "canceled":
            self._finish(item, "canceled" if outcome == "interrupted" else outcome)
        log.info("invokeai queue item %d %s", item.item_id, item.status)

    def _die(self) -> None:
        self.state.die(self._forget)

    def _forget(self) -> None:
        """In-process exit fault: the server 'restarts' with an empty queue and image store."""
        self.items.clear()
        self.pending.clear()
        self.images.clear()

    def _finish(self, item: Item, status: str) -> None:
        item.status = status
        item.completed_at = _now()

    async def _run_graph(self, item: Item) -> dict[str, Any]:
        graph = item.graph
        nodes: dict[str, dict[str, Any]] = graph["nodes"]
        incoming: dict[str, list[dict[str, Any]]] = {node_id: [] for node_id in nodes}
        for edge in graph["edges"]:
            incoming[edge["destination"]["node_id"]].append(edge)
        outputs: dict[str, dict[str, Any]] = {}
        results: dict[str, Any] = {}
        done: set[str] = set()
        context = Context(
            get_image=self._pil,
            save_image=self._save_output,
            model_exists=lambda key: key in self.records and self.records[key]["type"] == "main",
            serial=self.state.next_serial,
        )
        while len(done) < len(nodes):
            ready = [
                node_id
                for node_id in nodes
                if node_id not in done
                and all(e["source"]["node_id"] in done for e in incoming[node_id])
            ]
            for node_id in ready:
                node = nodes[node_id]
                spec = NODE_TYPES[node["type"]]
                fields = {k: v for k, v in node.items() if k not in COMMON}
                for edge in incoming[node_id]:
                    source = outputs[edge["source"]["node_id"]]
                    fields[edge["destination"]["field"]] = source[edge["source"]["field"]]
                for name, default in spec.inputs.items():
                    if name not in fields or fields[name] is None:
                        if default is REQUIRED:
                            raise NodeError(
                                "MissingInputException",
                                f"Node {node['type']} missing value or connection for field {name}",
                            )
                        fields.setdefault(name, default)
                out = await asyncio.to_thread(
                    spec.run, context, fields, bool(node.get("is_intermediate"))
                )
                prepared = str(uuid.uuid4())
                item.mapping[node_id] = [prepared]
                item.executed += [node_id, prepared]
                outputs[node_id] = out
                results[prepared] = {**_jsonable(out), "type": spec.output_type}
                done.add(node_id)
        return results

    # --- images -----------------------------------------------------------------------

    def _pil(self, name: str) -> Image.Image:
        stored = self.images.get(name)
        if stored is None:
            raise NodeError("ImageRecordNotFoundException", f"Image record not found: {name}")
        return render.open_image(stored.png)

    def _save_output(self, image: Image.Image, intermediate: bool) -> dict[str, Any]:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=render.PNG_COMPRESS_LEVEL)
        name = f"{uuid.uuid4()}.png"
        self.images[name] = StoredImage(
            buffer.getvalue(), image.width, image.height, "general", intermediate
        )
        return {"image": {"image_name": name}, "width": image.width, "height": image.height}

    async def upload_image(self, request: web.Request) -> web.Response:
        category = request.query.get("image_category")
        intermediate = request.query.get("is_intermediate")
        if category is None or intermediate is None:
            missing = "image_category" if category is None else "is_intermediate"
            return web.json_response(
                {
                    "detail": [
                        {"type": "missing", "loc": ["query", missing], "msg": "Field required"}
                    ]
                },
                status=422,
            )
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            return web.json_response(
                {"detail": [{"type": "missing", "loc": ["body", "file"], "msg": "Field required"}]},
                status=422,
            )
        if not (upload.content_type or "").startswith("image"):
            return detail(415, "Not an image")
        try:
            image = render.open_image(upload.file.read())
        except render.BadImageError:
            return detail(415, "Failed to read image")
        name = f"{uuid.uuid4()}.png"
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        stored = StoredImage(
            buffer.getvalue(), image.width, image.height, category, intermediate == "true"
        )
        self.images[name] = stored
        return web.json_response(stored.dto(name), status=201)

    async def image_full(self, request: web.Request) -> web.Response:
        name = request.match_info["image_name"]
        stored = self.images.get(name)
        if stored is None:
            return detail(404, "Not Found")
        return web.Response(
            body=stored.png,
            content_type="image/png",
            headers={"Content-Disposition": f'inline; filename="{name}"'},
        )

    async def delete_image(self, request: web.Request) -> web.Response:
        name = request.match_info["image_name"]
        if self.images.pop(name, None) is None:
            return detail(404, "Image not found")
        return web.json_response(
            {"deleted_images": [name], "failed_images": [], "affected_boards": ["none"]}
        )

    # --- models -----------------------------------------------------------------------

    async def list_models(self, request: web.Request) -> web.Response:
        found = list(self.records.values())
        name = request.query.get("model_name")
        if name is not None:
            found = [r for r in found if r["name"] == name]
        return web.json_response({"models": sorted(found, key=lambda r: r["name"])})

    async def scan_folder(self, request: web.Request) -> web.Response:
        scan_path = request.query.get("scan_path") or ""
        paths = await asyncio.to_thread(_model_files, scan_path) if scan_path else None
        if paths is None:
            return detail(400, f"The search path '{scan_path or None}' could not be scanned")
        installed = {r["source"] for r in self.records.values()}
        return web.json_response([{"path": p, "is_installed": p in installed} for p in paths])

    async def install_model(self, request: web.Request) -> web.Response:
        source = request.query.get("source")
        if not source:
            return web.json_response(
                {
                    "detail": [
                        {"type": "missing", "loc": ["query", "source"], "msg": "Field required"}
                    ]
                },
                status=422,
            )
        job_id = next(self.next_job)
        job: dict[str, Any] = {
            "id": job_id,
            "status": "running",
            "error_reason": None,
            "config_out": None,
            "inplace": request.query.get("inplace") == "true",
            "source": {"path": source, "type": "local"},
        }
        self.jobs[job_id] = job
        path = Path(source)
        await asyncio.sleep(self.state.knobs.model_switch_latency_s)
        resolved = await asyncio.to_thread(_resolved_file, path)
        if resolved is None:
            del self.jobs[job_id]
            return detail(409, f"Unsupported model source: '{source}'")
        if any(r["path"] == resolved for r in self.records.values()):
            job.update(
                status="error",
                error_reason="DuplicateModelException",
                error=f"A model with path '{resolved}' is already installed",
            )
            return web.json_response(job, status=201)
        # The emulator reads no weights: a checkpoint-looking file is an SD1.5 main model,
        # anything else is what the real probe answers for a file it cannot identify.
        known = path.suffix in (".safetensors", ".ckpt")
        record = {
            "key": str(uuid.uuid4()),
            "hash": f"random:{uuid.uuid4().hex}",
            "path": resolved,
            "name": path.stem,
            "source": source,
            "source_type": "path",
            "base": "sd-1" if known else "unknown",
            "type": "main" if known else "unknown",
            "format": "checkpoint" if known else "unknown",
        }
        self.records[record["key"]] = record
        job.update(status="completed", config_out=record)
        return web.json_response(job, status=201)

    async def install_job(self, request: web.Request) -> web.Response:
        try:
            job = self.jobs[int(request.match_info["job_id"])]
        except (ValueError, KeyError):
            return detail(404, f"No install job with id {request.match_info['job_id']}")
        return web.json_response(job)


def _builtin_record(name: str) -> dict[str, Any]:
    path = f"/emulator/builtin/{name}"
    return {
        "key": f"builtin-{Path(name).stem}",
        "hash": f"random:{Path(name).stem}",
        "path": path,
        "name": Path(name).stem,
        "source": path,
        "source_type": "path",
        "base": "sdxl" if "xl" in name else "sd-1",
        "type": "main",
        "format": "checkpoint",
    }


def _model_files(scan_path: str) -> list[str] | None:
    root = Path(scan_path)
    if not root.is_dir():
        return None
    return sorted(
        str(p) for p in root.rglob("*") if p.is_file() and p.suffix in models.MODEL_SUFFIXES
    )


def _resolved_file(path: Path) -> str | None:
    return str(path.resolve()) if path.is_file() else None


def _jsonable(out: dict[str, Any]) -> dict[str, Any]:
    """Node outputs as the session shows them (internal helper values reduced to JSON)."""
    return {k: v for k, v in out.items() if isinstance(v, str | int | float | dict | list)}
