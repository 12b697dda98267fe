"""The Terraform outputs an overlay needs (`build/outputs/k8s.json`), typed and validated.

`make apply` (terraform/) writes the file; either plain ``{"name": value}`` or the shape of
``terraform output -json`` (``{"name": {"value": ..., "type": ...}}``) is accepted. Without it
(CI, a fresh checkout) the renderer falls back to ``k8s/outputs.example.json``, whose values are
clearly fake (account 111122223333) and marked ``"example": true``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

OUTPUTS_FILE = "k8s.json"
# The cluster stack's own outputs (sdq_infra.deploy.write_outputs): what the platform install
# and drain aim at (cluster name, Karpenter's interruption queue).
CLUSTER_OUTPUTS_FILE = "cluster.json"
EXAMPLE_OUTPUTS = Path(__file__).resolve().parents[2] / "outputs.example.json"

_ARN_ROLE = r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$"
_ARN_TOPIC = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]+$"
_QUEUE_URL = r"^https://sqs\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/\d{12}/[\w-]+$"


class OutputsError(ValueError):
    """The IaC outputs file is missing, unreadable or invalid."""


def image_is_pinned(ref: str) -> bool:
    """A reference is pinned when it has a digest or an explicit tag other than `latest`."""
    if "@sha256:" in ref:
        return True
    last = ref.rsplit("/", 1)[-1]
    _, colon, tag = last.partition(":")
    return bool(colon and tag and tag != "latest")


def _pinned(value: str) -> str:
    if not image_is_pinned(value):
        raise ValueError(
            f"image '{value}' is not pinned: use an explicit tag (not 'latest') or a digest"
        )
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RuntimeOutputs(_Frozen):
    queue_url: Annotated[str, Field(pattern=_QUEUE_URL)]
    # Pod identity role associated (by Terraform) with the runtime's service account.
    role_arn: Annotated[str, Field(pattern=_ARN_ROLE)]
    # Runtime image when config.yaml does not name one.
    image: str | None = None

    @field_validator("image")
    @classmethod
    def _image_pinned(cls, value: str | None) -> str | None:
        return None if value is None else _pinned(value)


class Images(_Frozen):
    queue_agent: str
    otel_collector: str | None = None

    @field_validator("queue_agent", "otel_collector")
    @classmethod
    def _images_pinned(cls, value: str | None) -> str | None:
        return None if value is None else _pinned(value)


class IacOutputs(_Frozen):
    # True only in outputs.example.json: rendering says loudly that values are fake.
    example: bool = False
    # Instance profile Terraform creates for the GPU nodes (EC2NodeClass `instanceProfile`;
    # Karpenter v1 takes either that or `role`, and with `role` it would need IAM rights to
    # create profiles itself, which sdq's controller policy does not grant).
    karpenter_instance_profile: Annotated[str, Field(pattern=r"^[\w+=,.@-]{1,128}$")]
    result_topic_arn: Annotated[str, Field(pattern=_ARN_TOPIC)]
    status_table_name: Annotated[str, Field(min_length=3, max_length=255)]
    output_bucket: Annotated[str, Field(min_length=3, max_length=63)]
    model_bucket: Annotated[str, Field(min_length=3, max_length=63)]
    images: Images
    runtimes: Mapping[str, RuntimeOutputs]


class ClusterOutputs(BaseModel):
    """The subset of ``build/outputs/cluster.json`` the platform needs (other keys ignored)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    cluster_name: Annotated[str, Field(pattern=r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")]
    karpenter_interruption_queue: Annotated[str, Field(pattern=r"^[\w-]{1,80}$")]


def _unwrap(data: Mapping[str, Any]) -> dict[str, Any]:
    """Accept `terraform output -json` ({"k": {"value": v, ...}}) as well as {"k": v}."""
    out: dict[str, Any] = {}
    for key, item in data.items():
        if key.startswith("_"):
            continue  # comments in the example file
        if (
            isinstance(item, Mapping)
            and "value" in item
            and set(item) <= {"value", "type", "sensitive"}
        ):
            out[key] = item["value"]
        else:
            out[key] = item
    return out


def parse_outputs(data: Mapping[str, Any], source: str = "<outputs>") -> IacOutputs:
    try:
        return IacOutputs.model_validate(_unwrap(data))
    except ValidationError as exc:
        lines = "\n".join(
            f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise OutputsError(f"invalid IaC outputs {source}:\n{lines}") from None


def load_outputs(path: Path) -> IacOutputs:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise OutputsError(f"cannot read IaC outputs {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise OutputsError(f"IaC outputs {path} is not JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise OutputsError(f"IaC outputs {path}: expected a JSON object")
    return parse_outputs(data, str(path))


def resolve_outputs(outputs_dir: Path) -> tuple[IacOutputs, Path]:
    """`<outputs_dir>/k8s.json` when Terraform wrote it, else the checked-in example values."""
    real = outputs_dir / OUTPUTS_FILE
    path = real if real.is_file() else EXAMPLE_OUTPUTS
    return load_outputs(path), path


def load_cluster_outputs(outputs_dir: Path) -> ClusterOutputs:
    """``<outputs_dir>/cluster.json``, written when `make apply` applied the cluster stack."""
    path = outputs_dir / CLUSTER_OUTPUTS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OutputsError(
            f"no {path}: apply the cluster stack first (`make apply`), it writes that file"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise OutputsError(f"cannot read the cluster outputs {path}: {exc}") from None
    if not isinstance(data, Mapping):
        raise OutputsError(f"cluster outputs {path}: expected a JSON object")
    try:
        return ClusterOutputs.model_validate(_unwrap(data))
    except ValidationError as exc:
        lines = "\n".join(
            f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise OutputsError(f"invalid cluster outputs {path}:\n{lines}") from None
