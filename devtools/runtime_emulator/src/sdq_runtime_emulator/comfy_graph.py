"""API-format graph checks of the emulated ComfyUI — sdq runtime EMULATOR.

Mirrors ComfyUI's ``validate_prompt``: every node needs a known ``class_type``; each output
node is validated with everything it depends on; a prompt with no valid output is a 400
``prompt_outputs_failed_validation`` and per-node reasons land in ``node_errors`` (valid
outputs still run, so ``node_errors`` may be non-empty on a 200).
"""

from __future__ import annotations

import hashlib
import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sdq_runtime_emulator.comfy_nodes import NODES, InputSpec, NodeSpec
from sdq_runtime_emulator.comfy_spec import ANY

Reason = dict[str, Any]
CustomCheck = Callable[[Any], str | None]
"""A node's own input check (ComfyUI's VALIDATE_INPUTS): an error text, or None when fine."""


@dataclass(frozen=True)
class Validation:
    error: dict[str, Any] | None
    """The 400 body's ``error`` (None when at least one output is valid)."""
    outputs: list[str]
    node_errors: dict[str, Any]


def error(kind: str, message: str, details: str = "", **extra: Any) -> Reason:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def _output_nodes(prompt: dict[str, Any]) -> list[str] | Validation:
    """The ids of the prompt's output nodes, or the error ComfyUI gives for a node it cannot
    even look at (no class_type, or a class it does not have)."""
    outputs = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            return Validation(
                error(
                    "invalid_prompt",
                    "Cannot execute because a node is missing the class_type property.",
                    f"Node ID '#{node_id}'",
                ),
                [],
                {},
            )
        spec = NODES.get(str(node["class_type"]))
        if spec is None:
            return Validation(
                error(
                    "invalid_prompt",
                    f"Cannot execute because node {node['class_type']} does not exist.",
                    f"Node ID '#{node_id}'",
                ),
                [],
                {},
            )
        if spec.output_node:
            outputs.append(str(node_id))
    return outputs


def validate(
    prompt: Any, combos: dict[str, list[str]], custom: dict[str, CustomCheck] | None = None
) -> Validation:
    """Validate an API-format prompt; ``combos`` and ``custom`` are keyed ``Class.input``."""
    if not isinstance(prompt, dict):
        return Validation(
            error(
                "invalid_prompt",
                "Cannot execute because the prompt is not an object of nodes.",
                type(prompt).__name__,
            ),
            [],
            {},
        )
    outputs = _output_nodes(prompt)
    if isinstance(outputs, Validation):
        return outputs
    if not outputs:
        return Validation(error("prompt_no_outputs", "Prompt has no outputs"), [], {})

    checker = _Checker(prompt, combos, custom or {})
    good: list[str] = []
    node_errors: dict[str, Any] = {}
    own_reasons: list[Reason] = []
    for output in sorted(outputs):
        try:
            valid, reasons = checker.check(output)
        except (KeyError, TypeError) as ex:
            valid, reasons = (
                False,
                [
                    error(
                        "exception_during_validation",
                        "Exception when validating node",
                        str(ex),
                        exception_type=type(ex).__name__,
                        traceback=traceback.format_tb(ex.__traceback__),
                    )
                ],
            )
            checker.validated[output] = (False, reasons)
        if valid:
            good.append(output)
            continue
        own_reasons += reasons
        for node_id, (node_valid, node_reasons) in checker.validated.items():
            if node_valid or not node_reasons:
                continue
            entry = node_errors.setdefault(
                node_id,
                {
                    "errors": node_reasons,
                    "dependent_outputs": [],
                    "class_type": prompt[node_id]["class_type"],
                },
            )
            entry["dependent_outputs"].append(output)
    if not good:
        details = "\n".join(f"{reason['message']}: {reason['details']}" for reason in own_reasons)
        return Validation(
            error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details),
            [],
            node_errors,
        )
    return Validation(None, good, node_errors)


class _Checker:
    def __init__(
        self, prompt: dict[str, Any], combos: dict[str, list[str]], custom: dict[str, CustomCheck]
    ) -> None:
        self.prompt = prompt
        self.combos = combos
        self.custom = custom
        self.validated: dict[str, tuple[bool, list[Reason]]] = {}
        self.visiting: set[str] = set()

    def check(self, node_id: str) -> tuple[bool, list[Reason]]:
        if node_id in self.validated:
            return self.validated[node_id]
        if node_id in self.visiting:
            return False, [error("dependency_cycle", "Dependency cycle detected", node_id)]
        self.visiting.add(node_id)
        node = self.prompt[node_id]
        spec = NODES[node["class_type"]]
        inputs = node["inputs"]
        valid = True
        reasons: list[Reason] = []
        for input_spec in spec.required:
            if input_spec.name not in inputs:
                reasons.append(
                    error(
                        "required_input_missing",
                        "Required input is missing",
                        input_spec.name,
                        input_name=input_spec.name,
                    )
                )
                continue
            valid = self._check_input(spec, input_spec, inputs[input_spec.name], reasons) and valid
        for input_spec in spec.optional:  # checked like required ones when given
            if input_spec.name in inputs:
                value = inputs[input_spec.name]
                valid = self._check_input(spec, input_spec, value, reasons) and valid
        result = (valid and not reasons, reasons)
        self.validated[node_id] = result
        return result

    def _check_input(
        self, node: NodeSpec, spec: InputSpec, value: Any, reasons: list[Reason]
    ) -> bool:
        """Add the input's problems to ``reasons``; False when an upstream node is invalid."""
        if isinstance(value, list):
            link_ok, link_reasons = self._check_link(spec, value)
            reasons += link_reasons
            return link_ok
        reasons += self._check_value(node, spec, value)
        return True

    def _check_link(self, spec: InputSpec, link: list[Any]) -> tuple[bool, list[Reason]]:
        if len(link) != 2 or not isinstance(link[1], int):
            return False, [
                error(
                    "bad_linked_input",
                    "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                    spec.name,
                    input_name=spec.name,
                    received_value=link,
                )
            ]
        upstream_id = str(link[0])
        upstream = NODES[self.prompt[upstream_id]["class_type"]]
        if not 0 <= link[1] < len(upstream.outputs):
            return False, [
                error(
                    "bad_linked_input",
                    "Bad linked input, output slot out of range",
                    spec.name,
                    input_name=spec.name,
                    linked_node=link,
                )
            ]
        received = upstream.outputs[link[1]]
        if received != spec.kind and ANY not in (received, spec.kind):
            return False, [
                error(
                    "return_type_mismatch",
                    "Return type mismatch between linked nodes",
                    f"{spec.name}, received_type({received}) mismatch input_type({spec.kind})",
                    input_name=spec.name,
                    received_type=received,
                    linked_node=link,
                )
            ]
        upstream_ok, upstream_reasons = self.check(upstream_id)
        cycle = [reason for reason in upstream_reasons if reason["type"] == "dependency_cycle"]
        return upstream_ok, cycle

    def _check_value(self, node: NodeSpec, spec: InputSpec, value: Any) -> list[Reason]:
        extra = {
            "input_name": spec.name,
            "input_config": [spec.kind, spec.options],
            "received_value": value,
        }
        custom = self.custom.get(f"{node.name}.{spec.name}")
        if custom is not None:  # like ComfyUI, a node's own check replaces the list check
            problem = custom(value)
            if problem is None:
                return []
            return [
                error(
                    "custom_validation_failed",
                    "Custom validation failed for node",
                    f"{spec.name} - {problem}",
                    **extra,
                )
            ]
        if spec.kind == "COMBO":
            choices = self.combos.get(f"{node.name}.{spec.name}", [])
            if value not in choices:
                return [
                    error(
                        "value_not_in_list",
                        "Value not in list",
                        f"{spec.name}: '{value}' not in {choices}",
                        **extra,
                    )
                ]
            return []
        convert = CONVERTERS.get(spec.kind)
        if convert is None:
            return []
        try:
            number = convert(value)
        except (TypeError, ValueError) as ex:
            return [
                error(
                    "invalid_input_type",
                    f"Failed to convert an input value to a {spec.kind} value",
                    f"{spec.name}, {value}, {ex}",
                    exception_message=str(ex),
                    **extra,
                )
            ]
        low, high = spec.options.get("min"), spec.options.get("max")
        if low is not None and number < low:
            return [
                error(
                    "value_smaller_than_min",
                    f"Value {number} smaller than min of {low}",
                    spec.name,
                    **extra,
                )
            ]
        if high is not None and number > high:
            return [
                error(
                    "value_bigger_than_max",
                    f"Value {number} bigger than max of {high}",
                    spec.name,
                    **extra,
                )
            ]
        return []


CONVERTERS: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float}


def literal(spec: InputSpec, value: Any) -> Any:
    """A validated literal as the node function receives it."""
    if spec.kind == "STRING":
        return str(value)
    if spec.kind == "BOOLEAN":
        return bool(value)
    convert = CONVERTERS.get(spec.kind)
    return convert(value) if convert is not None else value


def execution_order(prompt: dict[str, Any], outputs: list[str]) -> list[str]:
    """Nodes the outputs need, dependencies first (depth-first from each output)."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(node_id: str) -> None:
        if node_id in seen:
            return
        seen.add(node_id)
        for value in prompt[node_id]["inputs"].values():
            if isinstance(value, list):
                visit(str(value[0]))
        order.append(node_id)

    for output in outputs:
        visit(output)
    return order


def signatures(
    prompt: dict[str, Any], order: list[str], extra: Callable[[str], str]
) -> dict[str, str]:
    """Cache keys: class, literal inputs and upstream keys (node ids play no part)."""
    keys: dict[str, str] = {}
    for node_id in order:
        node = prompt[node_id]
        parts: dict[str, Any] = {}
        for name, value in sorted(node["inputs"].items()):
            parts[name] = [keys[str(value[0])], value[1]] if isinstance(value, list) else value
        text = json.dumps([node["class_type"], parts, extra(node_id)], sort_keys=True, default=str)
        keys[node_id] = hashlib.sha256(text.encode()).hexdigest()
    return keys
