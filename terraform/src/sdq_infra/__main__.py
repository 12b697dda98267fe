"""Command line of the infrastructure: ``python -m sdq_infra <command>`` (make targets call it).

  synth     synthesize every stack to Terraform JSON (build/cdktf.out/stacks/<stack>)
  plan      synth, then terraform init + plan every stack in dependency order
  apply     the same, applying each plan, then write build/outputs/<stack>.json and, with
            --agent-version, build/outputs/k8s.json for the k8s overlays
  destroy   destroy the stacks in reverse order (all but `state` unless --stacks names it)
  doctor    report missing prerequisites with fixes
  release   SERVICE VERSION: a Lambda zip, or an image (queue agent, sdwebui, comfyui) pushed
            to ECR

SDQ_CONFIG (or --config) names the deployment config; SDQ_TF_ENDPOINT switches to emulator mode.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sdq_contracts.config import ConfigError, DeploymentConfig, load_config
from sdq_infra import doctor
from sdq_infra.console import complain, say
from sdq_infra.options import InfraError, InfraOptions, find_repo_root


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sdq_infra",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="deployment config (default: $SDQ_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("synth")
    for name in ("plan", "apply", "destroy"):
        sub = commands.add_parser(name)
        sub.add_argument("--stacks", nargs="*", default=[], help="only these stacks (in order)")
    commands.choices["apply"].add_argument(
        "--agent-version",
        help="released queue agent image tag pinned in build/outputs/k8s.json (make: AGENT_VERSION)",
    )
    destroy = commands.choices["destroy"]
    destroy.add_argument("--yes", action="store_true", help="confirm destruction")
    destroy.add_argument(
        "--skip-drain",
        action="store_true",
        help="do not drain Karpenter's nodes first (the cluster is already gone or unreachable)",
    )
    commands.add_parser("doctor")
    release = commands.add_parser("release")
    release.add_argument("service")
    release.add_argument("version")
    return parser


def _config(path: Path) -> DeploymentConfig:
    return load_config(path)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        root = find_repo_root()
        config_path = args.config or doctor.config_path_from_env(root / "config.yaml")
        if args.command == "doctor":
            try:
                options: InfraOptions | None = InfraOptions.from_env(load_config(config_path), root)
            except ConfigError:
                options = None
            return doctor.report(doctor.run_checks(config_path, options, root))
        cfg = _config(config_path)
        options = InfraOptions.from_env(cfg, root)
        if args.command == "release":
            from sdq_infra.release import release  # noqa: PLC0415

            say(release(args.service, args.version, options, cfg.region))
            return 0
        # cdktf takes ~30 s to load (jsii starts Node.js): only the commands that need it do.
        from sdq_infra import deploy  # noqa: PLC0415
        from sdq_infra.app import synth  # noqa: PLC0415

        if args.command == "synth":
            synthesized = synth(cfg, options)
            for stack in synthesized.stacks:
                say(str(synthesized.stack_dir(stack) / "cdk.tf.json"))
            return 0
        if args.command in ("plan", "apply"):
            apply = args.command == "apply"
            version = args.agent_version if apply else None
            return deploy.plan(cfg, options, args.stacks, apply=apply, agent_version=version)
        if args.command == "destroy":
            if not args.yes:
                complain("destroy needs --yes (make destroy CONFIRM=yes)")
                return 2
            return deploy.destroy(
                cfg, options, args.stacks, config_path=config_path, drain=not args.skip_drain
            )
        raise InfraError(f"unknown command {args.command}")
    except (InfraError, ConfigError) as exc:
        complain(f"error: {exc}")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
