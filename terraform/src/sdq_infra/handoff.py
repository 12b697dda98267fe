"""Hand Terraform's outputs to the k8s overlays: ``build/outputs/k8s.json``.

``make apply`` writes one ``<stack>.json`` per applied stack (:func:`sdq_infra.deploy.write_outputs`:
``terraform output -json`` values, sensitive ones left out). This module combines them with the
deployment config and the released queue agent version into the single file the overlay renderer
reads (``k8s/src/sdq_k8s/outputs.py`` ``IacOutputs``; ``k8s/outputs.example.json`` shows the shape).

The file is only written when an overlay can be rendered from it: every stack it reads has been
applied, a queue agent version is given and every runtime names its image in the config. When not,
:func:`write_k8s_outputs` says why and removes a stale ``k8s.json`` rather than leaving outputs
of an earlier apply (or an unpinned image) for ``make k8s-render``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdq_contracts.config import DeploymentConfig
from sdq_infra import names
from sdq_infra.options import InfraError

K8S_OUTPUTS_FILE = "k8s.json"
# Docker's tag grammar; `latest` is refused (the registry's tags are immutable, overlays pinned).
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# Values every runtime stack repeats; they must agree with the stacks that own them, or the
# per-stack files come from different applies.
_SHARED = {
    "result_topic_arn": ("routing", "output_topic_arn"),
    "status_table": ("routing", "status_table"),
    "output_bucket": ("routing", "output_bucket"),
    "model_bucket": ("model_sync", "model_bucket"),
}


class HandoffError(InfraError):
    """The per-stack outputs cannot be combined (missing key, stale file, bad version)."""


@dataclass(frozen=True)
class Handoff:
    """Result of :func:`write_k8s_outputs`: the file written, or why none was."""

    path: Path | None
    reason: str = ""


def check_agent_version(version: str) -> str:
    """A queue agent image tag (or ``sha256:`` digest) the overlay can pin; else HandoffError."""
    if _DIGEST.match(version) or (_TAG.match(version) and version != "latest"):
        return version
    raise HandoffError(
        f"queue agent version {version!r} is not a pinnable image tag: use the VERSION given "
        "to `make release SERVICE=queue_agent` (letters, digits, '_', '.', '-'; not 'latest') "
        "or a sha256: digest"
    )


def agent_image(repository_url: str, version: str) -> str:
    version = check_agent_version(version)
    separator = "@" if version.startswith("sha256:") else ":"
    return f"{repository_url}{separator}{version}"


def required_stacks(cfg: DeploymentConfig) -> tuple[str, ...]:
    return (
        "registry",
        "cluster",
        "routing",
        "model_sync",
        *(names.runtime_stack_id(rt) for rt in cfg.runtimes),
    )


def _value(outputs: Mapping[str, Mapping[str, Any]], stack: str, key: str) -> Any:
    try:
        return outputs[stack][key]
    except KeyError:
        raise HandoffError(
            f"{stack}.json has no output {key!r}: re-apply the {stack} stack (`make apply "
            f"STACKS={stack}`)"
        ) from None


def build_k8s_outputs(
    cfg: DeploymentConfig, outputs: Mapping[str, Mapping[str, Any]], agent_version: str
) -> dict[str, Any]:
    """The content of k8s.json from the per-stack outputs (keyed by stack id)."""
    runtimes: dict[str, dict[str, str]] = {}
    for rt in cfg.runtimes:
        stack = names.runtime_stack_id(rt)
        for key, (owner, owner_key) in _SHARED.items():
            mine, theirs = _value(outputs, stack, key), _value(outputs, owner, owner_key)
            if mine != theirs:
                raise HandoffError(
                    f"{stack}.json says {key}={mine!r} but {owner}.json says {theirs!r}: "
                    "the outputs come from different applies; run `make apply` for all stacks"
                )
        runtimes[rt.name] = {
            "queue_url": _value(outputs, stack, "queue_url"),
            "role_arn": _value(outputs, stack, "role_arn"),
        }
    return {
        "_comment": "Written by `make apply` (sdq_infra.handoff) from build/outputs/<stack>.json.",
        "karpenter_instance_profile": _value(outputs, "cluster", "karpenter_instance_profile"),
        "result_topic_arn": _value(outputs, "routing", "output_topic_arn"),
        "status_table_name": _value(outputs, "routing", "status_table"),
        "output_bucket": _value(outputs, "routing", "output_bucket"),
        "model_bucket": _value(outputs, "model_sync", "model_bucket"),
        "images": {
            "queue_agent": agent_image(
                _value(outputs, "registry", "queue_agent_repository_url"), agent_version
            )
        },
        "runtimes": runtimes,
    }


def read_stack_outputs(outputs_dir: Path, stacks: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for stack in stacks:
        path = outputs_dir / f"{stack}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise HandoffError(f"cannot read Terraform outputs {path}: {exc}") from None
        if not isinstance(data, dict):
            raise HandoffError(f"Terraform outputs {path}: expected a JSON object")
        found[stack] = data
    return found


def _skip(target: Path, reason: str) -> Handoff:
    if target.is_file():
        target.unlink()
        reason += f" (removed the stale {target})"
    return Handoff(None, reason)


def write_k8s_outputs(
    cfg: DeploymentConfig, outputs_dir: Path, agent_version: str | None
) -> Handoff:
    """Write ``outputs_dir/k8s.json`` when an overlay can be rendered from it; else say why."""
    target = outputs_dir / K8S_OUTPUTS_FILE
    if not agent_version:
        return _skip(
            target,
            "no queue agent version given (AGENT_VERSION / --agent-version): the k8s overlay "
            "cannot be rendered until one is released (`make release SERVICE=queue_agent "
            "VERSION=<v>`, then `make apply AGENT_VERSION=<v>`)",
        )
    imageless = [rt.name for rt in cfg.runtimes if rt.image is None]
    if imageless:
        return _skip(
            target,
            f"runtime(s) {', '.join(imageless)} have no runtimes[].image in the config: the k8s "
            "overlay cannot be rendered until each names its (pinned) image",
        )
    stacks = required_stacks(cfg)
    outputs = read_stack_outputs(outputs_dir, stacks)
    missing = [stack for stack in stacks if stack not in outputs]
    if missing:
        return _skip(
            target,
            f"no outputs of stack(s) {', '.join(missing)} in {outputs_dir}: apply them first "
            "(`make apply`)",
        )
    content = build_k8s_outputs(cfg, outputs, agent_version)
    outputs_dir.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return Handoff(target)
