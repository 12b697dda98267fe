"""Offline validation of rendered manifests.

Built-in kinds are checked against the Kubernetes OpenAPI schemas that the `kubernetes-validate`
package ships (strict: unknown fields fail); KEDA and Karpenter kinds against the CRD schemas
vendored in k8s/schemas/. Nothing is downloaded.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs in the pinned toolset
import kubernetes_validate  # type: ignore[import-untyped]  # ships no py.typed
import yaml

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
CRD_SCHEMAS: Mapping[tuple[str, str], str] = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobject_v1alpha1.yaml",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_triggerauthentication_v1alpha1.yaml",
    ("karpenter.sh/v1", "NodePool"): "karpenter.sh_nodepool_v1.yaml",
    ("karpenter.k8s.aws/v1", "EC2NodeClass"): "karpenter.k8s.aws_ec2nodeclass_v1.yaml",
}
KUSTOMIZE_TIMEOUT_SECONDS = 120

# metadata.name rules (Kubernetes apimachinery validation): most kinds take a DNS-1123
# subdomain; these take a DNS-1123 label, because the name becomes a label value or a DNS label
# (NodePool -> karpenter.sh/nodepool, EC2NodeClass -> karpenter.k8s.aws/ec2nodeclass node labels).
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_KINDS = frozenset({"Namespace", "NodePool", "EC2NodeClass"})
_DNS1035_KINDS = frozenset({"Service"})


class BuildError(RuntimeError):
    """`kubectl kustomize` failed."""


@dataclass(frozen=True)
class Finding:
    kind: str
    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}: {self.message}"


def kustomize_build(path: Path) -> list[dict[str, Any]]:
    """Render a kustomization with the installed `kubectl kustomize`."""
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            ["kubectl", "kustomize", str(path)],  # noqa: S607 - kubectl from PATH by design
            capture_output=True,
            text=True,
            timeout=KUSTOMIZE_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError:
        raise BuildError("kubectl is not installed (needed for `kubectl kustomize`)") from None
    if proc.returncode != 0:
        raise BuildError(f"kubectl kustomize {path} failed:\n{proc.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@cache
def _crd_validator(filename: str) -> jsonschema.protocols.Validator:
    schema = yaml.safe_load((SCHEMAS_DIR / filename).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


def name_problem(kind: str, name: object) -> str | None:
    """Why `name` cannot be the metadata.name of a `kind`, or None when it can."""
    if not isinstance(name, str) or not name:
        return "metadata.name is missing"
    if kind in _DNS1035_KINDS:
        ok, limit, rule = bool(_DNS1035_LABEL.match(name)), 63, "an RFC 1035 label"
    elif kind in _LABEL_KINDS:
        ok, limit, rule = bool(_DNS1123_LABEL.match(name)), 63, "a DNS-1123 label"
    else:
        ok = all(_DNS1123_LABEL.match(part) for part in name.split("."))
        limit, rule = 253, "a DNS-1123 subdomain"
    if not ok or len(name) > limit:
        return (
            f"metadata.name {name!r} is not {rule} (lower-case letters, digits, '-'"
            f"{', dots between labels' if limit == 253 else ''}; at most {limit} characters)"
        )
    return None


def validate_docs(docs: Iterable[Mapping[str, Any]], kubernetes_version: str) -> list[Finding]:
    """Every problem found; an empty list means every document is valid."""
    findings: list[Finding] = []
    version = (
        f"{kubernetes_version}.0" if kubernetes_version.count(".") == 1 else kubernetes_version
    )
    for doc in docs:
        kind = str(doc.get("kind", "?"))
        raw_name = (doc.get("metadata") or {}).get("name")
        name = str(raw_name if raw_name is not None else "?")
        bad_name = name_problem(kind, raw_name)
        if bad_name is not None:
            findings.append(Finding(kind, name, bad_name))
        crd = CRD_SCHEMAS.get((str(doc.get("apiVersion")), kind))
        if crd is not None:
            for err in _crd_validator(crd).iter_errors(doc):
                path = "/".join(str(p) for p in err.absolute_path) or "(root)"
                findings.append(Finding(kind, name, f"{path}: {err.message}"))
            continue
        try:
            kubernetes_validate.validate(dict(doc), version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            findings.append(Finding(kind, name, f"no schema for {doc.get('apiVersion')} {kind}"))
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path) or "(root)"
            findings.append(Finding(kind, name, f"{path}: {exc.message}"))
    return findings
