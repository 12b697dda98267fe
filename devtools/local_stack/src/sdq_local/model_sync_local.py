"""Model sync in the local stack: bucket events from the emulator → the same handler → a local node.

The cloud path is S3 → SQS → the model_sync Lambda → SSM → ``sdq-model-sync.sh`` on every GPU
node. Locally, moto delivers the bucket's notifications to an SQS queue
(:func:`provision_model_events`), and :func:`run_local_model_sync` feeds them, as Lambda SQS
events, to the same ``ModelSync.handle`` the Lambda runs. Only the two adapters differ: one
"node" instead of an EC2 lookup, and :class:`LocalCommandRunner`, which runs the very command line
SSM would get (the repo's node script) against a local directory instead of sending it.

Wiring for the local stack::

    queue_url = provision_model_events(s3, sqs, bucket)
    sync = build_local_model_sync(bucket=bucket, node_dir=Path(".local/node/models"))
    stop = threading.Event()
    worker = threading.Thread(target=run_local_model_sync, args=(sqs, sync, queue_url, stop))
    worker.start()  # ... later: stop.set(); worker.join(timeout=10)

The runtime emulator's model directory should be ``node_dir`` (what a pod mounts on a node).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from sdq_model_sync.app import build_model_sync
from sdq_model_sync.domain.commands import NodeCommand
from sdq_model_sync.domain.ports import NodeResult
from sdq_model_sync.domain.sync import ModelSync
from sdq_model_sync.node_script import node_script_path
from sdq_model_sync.settings import Settings

log = structlog.get_logger("sdq_local.model_sync")

DEFAULT_QUEUE_NAME = "sdq-model-events"
LOCAL_NODE_ID = "local-node"
# `make awscli` puts the CLI the node script needs here (it pins its own botocore).
_REPO_ROOT = Path(__file__).resolve().parents[4]
DEFAULT_AWS_CLI_DIR = _REPO_ROOT / ".venv-awscli" / "bin"
_SQS_MAX_BATCH = 10


def provision_model_events(
    s3: Any,
    sqs: Any,
    bucket: str,
    *,
    queue_name: str = DEFAULT_QUEUE_NAME,
    prefix: str = "",
    visibility_timeout: int = 60,
) -> str:
    """Create the event queue and point the bucket's created/removed notifications at it.

    Idempotent; returns the queue URL. S3 sends an ``s3:TestEvent`` when this is configured,
    which the handler ignores.
    """
    queue_url = str(
        sqs.create_queue(
            QueueName=queue_name,
            Attributes={"VisibilityTimeout": str(visibility_timeout)},
        )["QueueUrl"]
    )
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    config: dict[str, Any] = {
        "Id": "sdq-model-sync",
        "QueueArn": queue_arn,
        "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
    }
    if prefix:
        config["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [config]}
    )
    return queue_url


@dataclass(frozen=True)
class LocalNodes:
    """The local stack has one GPU "node": this machine."""

    ids: tuple[str, ...] = (LOCAL_NODE_ID,)

    def gpu_nodes(self) -> tuple[str, ...]:
        return self.ids


@dataclass
class LocalCommandRunner:
    """Runs the SSM command line with bash, here and now, and keeps each node's result."""

    env: Mapping[str, str]
    _results: dict[str, tuple[NodeResult, ...]] = field(default_factory=dict)

    def send(self, instance_ids: tuple[str, ...], command: NodeCommand) -> str:
        command_id = f"local-{uuid.uuid4()}"
        self._results[command_id] = tuple(self._run(i, command) for i in instance_ids)
        return command_id

    def results(self, command_id: str) -> tuple[NodeResult, ...]:
        return self._results.get(command_id, ())

    def _run(self, instance_id: str, command: NodeCommand) -> NodeResult:
        script = "\n".join(("set -e", *command.commands))
        try:
            done = subprocess.run(  # noqa: S603 - our own command line, built by the domain
                ["bash", "-c", script],  # noqa: S607 - bash from PATH, as on a node
                env=dict(self.env),
                capture_output=True,
                text=True,
                timeout=command.execution_timeout_seconds,
                check=False,
            )
        except subprocess.TimeoutExpired:
            log.error("model_sync_local_command_timed_out", instance_id=instance_id)
            return NodeResult(instance_id, "TimedOut")
        status = "Success" if done.returncode == 0 else "Failed"
        tail = done.stdout.strip().splitlines()[-1:] or [""]
        log.info(
            "model_sync_local_command",
            instance_id=instance_id,
            status=status,
            response_code=done.returncode,
            summary=tail[0],
            stderr=done.stderr.strip()[-2000:],
        )
        return NodeResult(instance_id, status, done.returncode, tail[0])


def local_command_env(
    *,
    aws_cli_dir: Path | None = None,
    endpoint_url: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment the node script runs with: ours, plus the AWS CLI, the emulator and
    `extra` (e.g. the local stack's credentials)."""
    env = dict(os.environ) | dict(extra or {})
    cli_dir = aws_cli_dir if aws_cli_dir is not None else DEFAULT_AWS_CLI_DIR
    if (cli_dir / "aws").is_file():
        env["PATH"] = f"{cli_dir}{os.pathsep}{env.get('PATH', '')}"
    if endpoint_url:
        env["AWS_ENDPOINT_URL"] = endpoint_url
    return env


def build_local_model_sync(
    *,
    bucket: str,
    node_dir: Path,
    prefix: str = "",
    region: str | None = None,
    endpoint_url: str | None = None,
    aws_cli_dir: Path | None = None,
    timeout_seconds: int = 600,
    extra_env: Mapping[str, str] | None = None,
) -> ModelSync:
    """The Lambda's use case with the local node and command runner in place of EC2 and SSM."""
    settings = Settings(
        cluster_name="local",
        model_bucket=bucket,
        model_prefix=prefix,
        node_script_path=str(node_script_path()),
        model_cache_dir=str(node_dir.resolve()),
        region=region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        execution_timeout_seconds=timeout_seconds,
    )
    runner = LocalCommandRunner(
        local_command_env(aws_cli_dir=aws_cli_dir, endpoint_url=endpoint_url, extra=extra_env)
    )
    return build_model_sync(settings, nodes=LocalNodes(), sender=runner)


def run_local_model_sync(
    sqs: Any,
    sync: ModelSync,
    queue_url: str,
    stop: threading.Event,
    *,
    burst: bool = False,
    wait_seconds: int = 1,
) -> int:
    """Feed queued bucket events to the handler until ``stop`` is set; returns batches handled.

    Each receive long-polls at most ``wait_seconds``, so a stop is noticed within that plus the
    running sync (bounded by its timeout). ``burst=True`` returns once the queue is empty
    (tests). Messages the handler reports as failed stay on the queue for a retry, as with
    Lambda's partial batch response; a crash of one batch is logged and the loop goes on.
    """
    batches = 0
    while not stop.is_set():
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=_SQS_MAX_BATCH,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            if burst:
                break
            continue
        batches += 1
        try:
            response = sync.handle(_lambda_sqs_event(messages, queue_url))
        except Exception:
            log.exception("model_sync_local_batch_crashed", messages=len(messages))
            continue
        failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done)
                ],
            )
    return batches


def _lambda_sqs_event(messages: list[dict[str, Any]], queue_url: str) -> dict[str, Any]:
    """SQS messages in the shape Lambda's SQS event source mapping delivers them."""
    queue_name = queue_url.rstrip("/").rsplit("/", 1)[-1]
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:local:000000000000:{queue_name}",
            }
            for m in messages
        ]
    }
