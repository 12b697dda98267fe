"""sdq: submit Stable Diffusion tasks to an sdq deployment (the local stack or AWS) and follow them.

Exit codes: 0 ok, 1 sdq/CLI failure, 2 usage or local input error, 3 request refused by the API,
4 missing or rejected API key, 5 throttled (retry later), 6 endpoint unreachable, 7 task failed
or cancelled, 8 timed out waiting.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sdq_cli import local, logs, traces
from sdq_cli.api import ApiClient
from sdq_cli.build import TaskFlags, build
from sdq_cli.errors import CliError, Exit
from sdq_cli.follow import Progress, Tracked, download, follow
from sdq_cli.target import USER_PROFILE, Target, resolve


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _target(args: argparse.Namespace) -> Target:
    return resolve(args.endpoint, args.api_key, args.profile)


def _flags(args: argparse.Namespace) -> TaskFlags:
    return TaskFlags(
        runtime=args.runtime,
        tasktype=args.type,
        task_id=args.id,
        prefix=args.prefix,
        context=args.context,
        callback_url=args.callback_url,
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        width=args.width,
        height=args.height,
        steps=args.steps,
        seed=args.seed,
        cfg_scale=args.cfg_scale,
        sampler=args.sampler,
        batch_size=args.batch_size,
        n_iter=args.n_iter,
        denoising_strength=args.denoising_strength,
        model=args.model,
        images=tuple(args.image),
        mask=args.mask,
        upscale=args.upscale,
        upscaler=args.upscaler,
        workflow=args.workflow,
        file=args.file,
    )


def cmd_submit(args: argparse.Namespace) -> int:
    target = _target(args)
    submission = build(_flags(args), target.runtimes)
    api = ApiClient(target.api_url, target.api_key)
    accepted = api.submit(submission.path, submission.body)
    task = Tracked(accepted["id_task"], accepted.get("runtime", ""))
    if not args.wait:
        if args.json:
            _print_json(accepted)
        else:
            print(task.task_id)
        return Exit.OK
    print(f"submitted {task.task_id}", file=sys.stderr)
    follow(api, [task], args.timeout, Progress(enabled=not args.json))
    if task.state == "completed":
        download(target, task, Path(args.out))
    if args.json:
        _print_json(accepted | {"status": task.record, "files": [str(f) for f in task.files]})
    else:
        for path in task.files:
            print(path)
    if task.state != "completed":
        error = task.record.get("error") or {}
        print(f"task {task.task_id} {task.state}: {error.get('message', '')}", file=sys.stderr)
        return Exit.TASK_FAILED
    return Exit.OK


def cmd_status(args: argparse.Namespace) -> int:
    target = _target(args)
    record = ApiClient(target.api_url, target.api_key).status(args.task_id)
    if args.json:
        _print_json(record)
        return Exit.OK
    print(
        f"{record['id']}: {record['status']} (runtime {record.get('runtime')}, attempts {record.get('attempts', 0)})"
    )
    for key in ("created_at", "started_at", "finished_at", "output_location", "trace_id"):
        if record.get(key):
            print(f"  {key:<16} {record[key]}")
    for url in record.get("outputs", []):
        print(f"  output           {url}")
    if record.get("error"):
        print(f"  error            {record['error'].get('code')}: {record['error'].get('message')}")
    return Exit.OK


def cmd_cancel(args: argparse.Namespace) -> int:
    target = _target(args)
    answer = ApiClient(target.api_url, target.api_key).cancel(args.task_id)
    if args.json:
        _print_json(answer.body)
    elif answer.status == 202:
        print(f"{args.task_id}: running; asked the runtime to stop it")
    else:
        print(f"{args.task_id}: {answer.body.get('status')}")
    return Exit.OK


def cmd_trace(args: argparse.Namespace) -> int:
    target = _target(args)
    record = ApiClient(target.api_url, target.api_key).status(args.task_id)
    trace_id = record.get("trace_id")
    if not trace_id:
        raise CliError(f"task {args.task_id} has no trace id recorded", Exit.ERROR)
    if target.trace_dir is not None:
        spans = traces.spans_from_files(target.trace_dir, traces.xray_to_hex(trace_id))
    else:
        spans = traces.spans_from_xray(target.client("xray"), trace_id)
    if args.json:
        _print_json([s.__dict__ | {"children": None} for s in spans])
    else:
        print(traces.render(trace_id, spans))
    return Exit.OK


def cmd_logs(args: argparse.Namespace) -> int:
    target = _target(args)
    if target.log_dir is None:
        raise CliError(
            "this profile has no log directory; on AWS read the task's lines in CloudWatch Logs "
            f'with the filter {{ $.task_id = "{args.task_id}" }}',
            Exit.USAGE,
        )
    found = logs.task_lines(target.log_dir, args.task_id)
    if args.json:
        _print_json([record for _, _, record in found])
    else:
        for stamp, source, record in found:
            print(logs.format_line(stamp, source, record))
    if not found:
        print(f"no log lines for task {args.task_id} in {target.log_dir}", file=sys.stderr)
    return Exit.OK


def cmd_local(args: argparse.Namespace) -> int:
    state = Path(args.state_dir)
    if args.action == "up":
        info, started = local.up(
            state, args.config, args.latency, args.runtime_url, args.local_api_key
        )
        if args.json:
            _print_json(info)
        else:
            print(f"sdq local stack {'started' if started else 'already running'}")
            print(f"  endpoint  {info['api_url']}")
            print(f"  api key   {info['api_key']}")
            print(f"  profile   {state / local.STACK_FILE} (the sdq command uses it by default)")
            print(f"  logs      {info['logs']}")
        return Exit.OK
    if args.action == "down":
        stopped = local.down(state)
        print("sdq local stack stopped" if stopped else "no local stack was running")
        return Exit.OK
    current = local.running(state)
    if current is None:
        print("no local stack is running")
        return Exit.ERROR
    if args.json:
        _print_json(current)
    else:
        print(f"sdq local stack running (pid {current['pid']}): {current['api_url']}")
    return Exit.OK


def cmd_configure(args: argparse.Namespace) -> int:
    import boto3  # noqa: PLC0415 - only this command talks to API Gateway

    from sdq_cli.configure import profile_from_outputs, write_profile  # noqa: PLC0415
    from sdq_contracts import ConfigError, load_config  # noqa: PLC0415

    try:
        region = load_config(args.config).region
    except ConfigError as exc:
        raise CliError(str(exc), Exit.USAGE) from None
    apigateway = boto3.client("apigateway", region_name=region)
    profile = profile_from_outputs(Path(args.outputs), region, apigateway)
    path = write_profile(profile, Path(args.write))
    print(
        f"profile written to {path} (endpoint {profile['api_url']}); the sdq command uses it by default"
    )
    return Exit.OK


def cmd_smoke(args: argparse.Namespace) -> int:
    from sdq_cli.smoke import run_smoke  # noqa: PLC0415 - only smoke needs it
    from sdq_contracts import ConfigError, load_config  # noqa: PLC0415

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise CliError(str(exc), Exit.USAGE) from None
    target = _target(args)
    api = ApiClient(target.api_url, target.api_key)
    return run_smoke(
        cfg,
        api,
        target.client("s3"),
        timeout_s=args.timeout,
        poll_s=args.poll,
        workflow=Path(args.workflow),
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from sdq_cli.demo import run_demo  # noqa: PLC0415 - only the demo needs it

    return run_demo(args)


def _add_task_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("task")
    g.add_argument(
        "--runtime", help="runtime name (default: the first one that runs the task type)"
    )
    g.add_argument(
        "--type",
        help="text-to-image | image-to-image | extra-single-image | extra-batch-images | pipeline (inferred)",
    )
    g.add_argument(
        "--id", help="task id (default: generated); resending the same id and body is idempotent"
    )
    g.add_argument("--prefix", help="output key prefix (default: outputs)")
    g.add_argument("--context", help="JSON (or text) echoed back in the notification")
    g.add_argument("--callback-url", help="webhook for the result (signed)")
    g.add_argument("--file", help="a whole request body (v1alpha2 or v1alpha1 JSON)")
    g.add_argument("--workflow", help="a ComfyUI workflow in API format (pipeline task)")
    g.add_argument(
        "--image",
        action="append",
        default=[],
        help="input image: a local file or an http(s)/s3 URL (repeatable)",
    )
    g.add_argument("--mask", help="inpainting mask: local file or URL")
    g.add_argument("--upscale", type=float, help="upscale factor (extras task)")
    g.add_argument("--upscaler", default="Lanczos")
    g.add_argument("--model", help="checkpoint for dynamic-model runtimes")
    g.add_argument("--prompt")
    g.add_argument("--negative-prompt")
    for name in ("--width", "--height", "--steps", "--seed", "--batch-size", "--n-iter"):
        g.add_argument(name, type=int)
    g.add_argument("--cfg-scale", type=float)
    g.add_argument("--denoising-strength", type=float)
    g.add_argument("--sampler")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="sdq", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--endpoint", help="API URL (else SDQ_API_URL, else the profile)")
    common.add_argument("--api-key", help="API key (else SDQ_API_KEY, else the profile)")
    common.add_argument(
        "--profile",
        help="profile JSON (default: .local/stack.json, then ~/.config/sdq/profile.json)",
    )
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = root.add_subparsers(dest="command", required=True)

    p = sub.add_parser("submit", parents=[common], help="submit a task (and --wait for it)")
    _add_task_flags(p)
    p.add_argument("--wait", action="store_true", help="follow the task and download its images")
    p.add_argument("--out", default="outputs", help="where --wait saves images (default: outputs)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds --wait waits at most")
    p.set_defaults(func=cmd_submit)
    for name, func, text in (
        ("status", cmd_status, "a task's status record"),
        ("cancel", cmd_cancel, "cancel a queued task, or interrupt a running one"),
        ("trace", cmd_trace, "the span tree of a task's trace, with durations"),
        ("logs", cmd_logs, "every log line of a task"),
    ):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("task_id")
        p.set_defaults(func=func)

    p = sub.add_parser("local", parents=[common], help="the local stack in the background")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--state-dir", default=".local")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--latency", type=float, default=0.5, help="emulated seconds per generation")
    p.add_argument(
        "--runtime-url",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="a real SD WebUI / ComfyUI for runtime NAME",
    )
    p.add_argument("--local-api-key", help="fixed API key for the local stack (default: random)")
    p.set_defaults(func=cmd_local)

    p = sub.add_parser(
        "configure", help="write a profile for the AWS deployment from `make apply`'s outputs"
    )
    p.add_argument("--outputs", default="build/outputs", help="where make apply wrote outputs")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--write", default=str(USER_PROFILE), help="profile file to write")
    p.set_defaults(func=cmd_configure)

    p = sub.add_parser(
        "smoke",
        parents=[common],
        help="after make apply: one task per runtime through the API, outputs checked, cleaned up",
    )
    p.add_argument("--config", default="config.yaml")
    p.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="seconds to wait for every task (scaling from zero starts GPU nodes)",
    )
    p.add_argument("--poll", type=float, default=2.0, help="seconds between status polls")
    p.add_argument(
        "--workflow",
        default="tests/examples/comfyui-txt2img-api.json",
        help="ComfyUI workflow of the comfyui runtimes' task",
    )
    p.set_defaults(func=cmd_smoke)
    p = sub.add_parser(
        "demo",
        parents=[common],
        help="what `make run` does: a batch of every task type on the local stack",
    )
    p.add_argument("--state-dir", default=".local")
    p.add_argument("--config", default="config.yaml")
    p.add_argument("--out", default="outputs")
    p.add_argument("--latency", type=float, default=0.5)
    p.add_argument("--timeout", type=float, default=180.0)
    p.set_defaults(func=cmd_demo)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"sdq: {exc.message}", file=sys.stderr)
        return int(exc.code)
    except KeyboardInterrupt:
        print("sdq: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
