"""`python -m sdq_k8s render|check|platform`: the entry point of `make k8s-render`,
`make k8s-validate`, `make platform` (install) and `make k8s-drain` (drain)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sdq_contracts.config import ConfigError, load_config
from sdq_k8s.outputs import OutputsError, load_cluster_outputs, resolve_outputs
from sdq_k8s.platform import Platform, PlatformError, SubprocessRunner, target_for
from sdq_k8s.render import (
    K8S_ROOT,
    NODE_SYNC_SCRIPT,
    Knobs,
    RenderError,
    RenderRequest,
    render_overlay,
)
from sdq_k8s.validate import BuildError, kustomize_build, validate_docs


def _say(message: str, *, err: bool = False) -> None:
    """Command-line output for humans (stdout, or stderr for warnings and errors)."""
    (sys.stderr if err else sys.stdout).write(message + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdq-k8s", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="write k8s/overlays/<env>/ from config + IaC outputs")
    render.add_argument("--config", type=Path, default=Path("config.yaml"))
    render.add_argument("--env", default="dev")
    render.add_argument(
        "--outputs", type=Path, default=Path("build/outputs"), help="dir holding k8s.json"
    )
    render.add_argument("--out", type=Path, help="overlay dir (default k8s/overlays/<env>)")
    render.add_argument("--node-sync-script", type=Path, default=NODE_SYNC_SCRIPT)
    render.add_argument(
        "--ami-alias", default=Knobs.ami_alias, help="pinned AL2023 AMI release, al2023@vYYYYMMDD"
    )
    check = sub.add_parser("check", help="kubectl kustomize an overlay and validate every object")
    check.add_argument("--config", type=Path, default=Path("config.yaml"))
    check.add_argument("--env", default="dev")
    check.add_argument("--dir", type=Path, help="overlay dir (default k8s/overlays/<env>)")
    platform = sub.add_parser(
        "platform", help="install the cluster add-ons + overlay, or drain Karpenter's nodes"
    )
    action = platform.add_subparsers(dest="action", required=True)
    install = action.add_parser("install", help="kubeconfig, spot role, helm releases, overlay")
    drain = action.add_parser("drain", help="delete workloads/NodePools/NodeClaims, wait for EC2")
    for p in (install, drain):
        p.add_argument("--config", type=Path, default=Path("config.yaml"))
        p.add_argument(
            "--outputs", type=Path, default=Path("build/outputs"), help="dir with cluster.json"
        )
        p.add_argument(
            "--kube-dir", type=Path, default=Path("build/kube"), help="private kubeconfig dir"
        )
    install.add_argument("--env", default="dev")
    install.add_argument("--overlay", type=Path, help="overlay dir (default k8s/overlays/<env>)")
    drain.add_argument(
        "--timeout", type=float, default=900, help="seconds to wait for nodes/instances"
    )
    return parser


def _platform(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    target = target_for(cfg, load_cluster_outputs(args.outputs), args.kube_dir)
    platform = Platform(target, SubprocessRunner(), _say)
    if args.action == "install":
        platform.install(args.overlay or K8S_ROOT / "overlays" / args.env)
    else:
        platform.drain(args.timeout)
    return 0


def _render(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    outputs, source = resolve_outputs(args.outputs)
    if outputs.example:
        _say(
            f"WARNING: no {args.outputs}/k8s.json; rendering with EXAMPLE values from {source}",
            err=True,
        )
    out_dir = args.out or K8S_ROOT / "overlays" / args.env
    files = render_overlay(
        RenderRequest(
            env=args.env,
            config=cfg,
            outputs=outputs,
            out_dir=out_dir,
            node_sync_script=args.node_sync_script,
            knobs=Knobs(ami_alias=args.ami_alias),
        )
    )
    _say(f"wrote {len(files)} files to {out_dir} ({len(cfg.runtimes)} runtimes, outputs: {source})")
    return 0


def _check(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    overlay = args.dir or K8S_ROOT / "overlays" / args.env
    docs = kustomize_build(overlay)
    findings = validate_docs(docs, cfg.cluster.kubernetes_version)
    for finding in findings:
        _say(f"INVALID {finding}", err=True)
    _say(f"{overlay}: {len(docs)} objects, {len(findings)} invalid")
    return 1 if findings else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "platform":
            return _platform(args)
        return _render(args) if args.command == "render" else _check(args)
    except (ConfigError, OutputsError, RenderError, BuildError, PlatformError) as exc:
        _say(f"error: {exc}", err=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
