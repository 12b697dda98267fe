"""ComfyUI workflow shaping and history reading (pure)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from sdq_contracts.messages import TaskMessage
from sdq_contracts.requests import TaskType
from sdq_queue_agent.domain.inputs import comfyui_input_refs
from sdq_queue_agent.domain.model import RuntimeRequest
from sdq_queue_agent.errors import InvalidTaskError, WorkflowExecutionError

OUTPUT_ROOT = "sdq"


@dataclass(frozen=True)
class OutputRef:
    filename: str
    subfolder: str
    type: str


def shape(task: TaskMessage, content: dict[str, Any]) -> RuntimeRequest:
    if task.tasktype is not TaskType.PIPELINE:
        raise InvalidTaskError(f"ComfyUI runs 'pipeline' tasks, not {task.tasktype.value!r}")
    graph = copy.deepcopy(content)
    # A v1alpha2 pipeline may wrap the graph as {"prompt": {...}}.
    if set(graph) == {"prompt"} and isinstance(graph["prompt"], dict):
        graph = graph["prompt"]
    for node_id, node in graph.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise InvalidTaskError(
                f"workflow node {node_id!r} has no class_type (API format expected)"
            )
    rewrite_prefixes(graph, task.id)
    return RuntimeRequest(
        task_id=task.id,
        tasktype=task.tasktype,
        body=graph,
        inputs=tuple(comfyui_input_refs(graph)),
    )


def rewrite_prefixes(graph: dict[str, Any], task_id: str, run: str | None = None) -> None:
    """Point every ``filename_prefix`` into ``sdq/<task id>/`` (``sdq/<task id>/<run>/`` for one
    run) so outputs of tasks never mix."""
    folder = f"{OUTPUT_ROOT}/{task_id}/{run}" if run else f"{OUTPUT_ROOT}/{task_id}"
    for node in graph.values():
        inputs = node.get("inputs")
        if isinstance(inputs, dict) and isinstance(inputs.get("filename_prefix"), str):
            base = inputs["filename_prefix"].replace("\\", "/").rsplit("/", 1)[-1] or "ComfyUI"
            inputs["filename_prefix"] = f"{folder}/{base}"


def for_run(graph: dict[str, Any], task_id: str, run: str) -> dict[str, Any]:
    """The graph with its save nodes writing into a folder of this run.

    ComfyUI serves an unchanged node from its cache: a task run again (a retry) would get the
    previous run's file names back, files the agent has removed by then. A new prefix makes
    the save nodes run again (upstream nodes still come from the cache).
    """
    out = copy.deepcopy(graph)
    rewrite_prefixes(out, task_id, run)
    return out


@dataclass(frozen=True)
class TextOutput:
    """A string a node showed (``PreviewAny``'s ``ui.text``): an output without a file."""

    node: str
    text: str


def history_outputs(entry: dict[str, Any]) -> list[OutputRef | TextOutput]:
    """Everything a finished prompt made, in node order, then in the order each node listed it.

    ComfyUI v0.8.0's ``history.outputs[node]`` is the node's ``ui`` dict: saved files are
    ``{"filename", "subfolder", "type"}`` items under ``images`` (SaveImage, SaveAnimatedWEBP,
    SaveAnimatedPNG — with ``animated: [true]`` beside them —, SaveWEBM and SaveVideo, which
    report their video there too, SaveSVGNode), ``audio`` (SaveAudio, SaveAudioMP3,
    SaveAudioOpus), ``3d`` (SaveGLB) or ``latents`` (SaveLatent); text is a list of strings
    under ``text`` (PreviewAny). Only ``type: output`` files count: ``temp`` ones are previews
    (PreviewImage, PreviewAudio, PreviewMask) that ComfyUI does not keep.
    """
    found: list[OutputRef | TextOutput] = []
    outputs = entry.get("outputs") or {}
    for node_id in sorted(outputs, key=_node_order):
        node_out = outputs[node_id]
        if not isinstance(node_out, dict):
            continue
        for key, items in node_out.items():
            if key == "animated" or not isinstance(items, list):
                continue
            for item in items:
                if key == "text" and isinstance(item, str):
                    found.append(TextOutput(str(node_id), item))
                elif (
                    isinstance(item, dict)
                    and isinstance(item.get("filename"), str)
                    and item.get("type", "output") == "output"
                ):
                    found.append(
                        OutputRef(item["filename"], str(item.get("subfolder") or ""), "output")
                    )
    return found


def history_previews(entry: dict[str, Any]) -> int:
    """How many ``temp`` files (previews, not kept) a finished prompt listed."""
    outputs = entry.get("outputs") or {}
    return sum(
        1
        for node_out in outputs.values()
        if isinstance(node_out, dict)
        for items in node_out.values()
        if isinstance(items, list)
        for item in items
        if isinstance(item, dict) and item.get("type") == "temp"
    )


def history_status(entry: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """``(status_str, execution_error data or None)`` of a history entry."""
    status = entry.get("status") or {}
    error = None
    for message in status.get("messages") or []:
        if isinstance(message, list) and len(message) == 2 and message[0] == "execution_error":
            error = message[1] if isinstance(message[1], dict) else {}
    return str(status.get("status_str") or ""), error


def execution_error(data: dict[str, Any]) -> WorkflowExecutionError:
    node = data.get("node_id", "?")
    node_type = data.get("node_type", "?")
    kind = data.get("exception_type", "error")
    message = data.get("exception_message", "")
    return WorkflowExecutionError(f"node {node} ({node_type}) failed: {kind}: {message}".strip())


def prompt_error(payload: Any, *, partial: bool = False) -> str:
    """Summary of ComfyUI's answer to a refused ``POST /prompt``: the error with its details
    (``Node ID '#8'`` names the node), then each node's messages.

    ``partial``: the 200 answer that accepted the prompt but listed ``node_errors`` (ComfyUI
    then runs only the outputs that passed validation).
    """
    if not isinstance(payload, dict):
        return "ComfyUI refused the workflow"
    error = payload.get("error") or {}
    if partial:
        parts = [
            "ComfyUI would run only part of the workflow: outputs "
            + ", ".join(repr(n) for n in dropped_outputs(payload))
            + " failed validation"
        ]
    elif isinstance(error, dict):
        head = str(error.get("message") or "invalid workflow")
        details = error.get("details")
        # prompt_outputs_failed_validation repeats the node errors in its details.
        if isinstance(details, str) and details and not payload.get("node_errors"):
            head = f"{head} ({details})"
        parts = [head]
    else:
        parts = [str(error)]
    node_errors = payload.get("node_errors") or {}
    if isinstance(node_errors, dict):
        for node_id, info in node_errors.items():
            if not isinstance(info, dict):
                continue
            for err in info.get("errors") or []:
                if isinstance(err, dict):
                    detail = f": {err['details']}" if err.get("details") else ""
                    parts.append(
                        f"node {node_id} ({info.get('class_type', '?')}): {err.get('message', '')}{detail}"
                    )
    return "; ".join(parts)


def dropped_outputs(payload: Any) -> list[str]:
    """Output nodes a 200 answer to ``POST /prompt`` will not run (its ``node_errors``).

    Each node error lists the outputs that depend on the failing node; with none listed the
    failing node itself is named.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("node_errors"), dict):
        return []
    dropped: list[str] = []
    for node_id, info in payload["node_errors"].items():
        outputs = info.get("dependent_outputs") if isinstance(info, dict) else None
        for output in outputs if isinstance(outputs, list) and outputs else [node_id]:
            if str(output) not in dropped:
                dropped.append(str(output))
    return sorted(dropped, key=_node_order)


def job_as_history(job: dict[str, Any]) -> dict[str, Any] | None:
    """A ``GET /api/jobs/{id}`` answer as the history entry it stands for; None while the job
    is pending or in progress."""
    if job.get("status") not in ("completed", "failed", "cancelled"):
        return None
    status = job.get("execution_status")
    return {
        "outputs": job.get("outputs") or {},
        "status": status if isinstance(status, dict) else {"status_str": "error", "messages": []},
    }


def _node_order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 30, node_id)
