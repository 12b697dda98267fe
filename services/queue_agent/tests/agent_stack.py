"""Integration helpers: the sdq AWS resources on the moto server (``sdq_local.provision``), a
queue subscribed to the result topic, and agent settings pointing at both."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from sdq_contracts.config import DeploymentConfig, parse_config
from sdq_contracts.keys import output_location
from sdq_contracts.messages import ATTR_RUNTIME, StatusRecord, TaskMessage, TaskState
from sdq_local.provision import Provisioned, observe_topic, provision
from sdq_queue_agent.app import run_agent
from sdq_queue_agent.settings import AgentSettings, load_settings

CONFIG: DeploymentConfig = parse_config(
    {
        "stack_name": "itest",
        "region": "us-west-2",
        "buckets": {"models": "itest-models", "outputs": "itest-outputs"},
        "runtimes": [
            {
                "name": "sdruntime",
                "type": "sdwebui",
                "model": "v1-5-pruned-emaonly.safetensors",
                "task_timeout_seconds": 10,
                "max_receive_count": 3,
            },
            {
                "name": "sddynamic",
                "type": "sdwebui",
                "dynamic_model": True,
                "task_timeout_seconds": 10,
                "max_receive_count": 3,
            },
            {
                "name": "comfyui",
                "type": "comfyui",
                "dynamic_model": True,
                "task_timeout_seconds": 10,
                "max_receive_count": 3,
            },
        ],
    }
)


@dataclass
class Stack:
    prov: Provisioned
    endpoint: str
    observer_url: str
    config: DeploymentConfig = CONFIG

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=CONFIG.region, endpoint_url=self.endpoint)

    # ------------------------------------------------------------------ submit

    def submit(self, task: TaskMessage) -> None:
        """What the API does: a queued status row, then the task on the input topic."""
        record = StatusRecord(
            id=task.id,
            runtime=task.runtime,
            tasktype=task.tasktype,
            status=TaskState.QUEUED,
            output_location=output_location(self.prov.output_bucket, task.prefix, task.id),
        )
        self.client("dynamodb").put_item(
            TableName=self.prov.status_table,
            Item={k: _ddb(v) for k, v in record.to_item().items()},
        )
        self.client("sns").publish(
            TopicArn=self.prov.input_topic_arn,
            Message=task.model_dump_json(exclude_none=True),
            MessageAttributes={ATTR_RUNTIME: {"DataType": "String", "StringValue": task.runtime}},
        )

    def send_raw(self, runtime: str, body: str) -> None:
        self.client("sqs").send_message(QueueUrl=self.prov.queue_urls[runtime], MessageBody=body)

    # ------------------------------------------------------------------ observe

    def notifications(self, expect: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Every result notification so far: waits for ``expect`` of them, then one more
        short poll so duplicates would show."""
        sqs = self.client("sqs")
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        extra_poll_done = False
        while time.monotonic() < deadline:
            resp = sqs.receive_message(
                QueueUrl=self.observer_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                MessageAttributeNames=["All"],
            )
            for msg in resp.get("Messages", []):
                body = json.loads(msg["Body"])
                body["_attributes"] = {
                    k: v["StringValue"] for k, v in msg.get("MessageAttributes", {}).items()
                }
                seen.append(body)
                sqs.delete_message(QueueUrl=self.observer_url, ReceiptHandle=msg["ReceiptHandle"])
            if len(seen) >= expect and not resp.get("Messages"):
                if extra_poll_done:
                    break
                extra_poll_done = True
        return seen

    def status(self, task_id: str) -> StatusRecord:
        item = self.client("dynamodb").get_item(
            TableName=self.prov.status_table, Key={"id": {"S": task_id}}
        )["Item"]
        deserializer = TypeDeserializer()
        return StatusRecord.from_item({k: deserializer.deserialize(v) for k, v in item.items()})

    def objects(self, prefix: str) -> dict[str, bytes]:
        s3 = self.client("s3")
        listing = s3.list_objects_v2(Bucket=self.prov.output_bucket, Prefix=prefix)
        return {
            o["Key"]: s3.get_object(Bucket=self.prov.output_bucket, Key=o["Key"])["Body"].read()
            for o in listing.get("Contents", [])
        }

    def dlq_bodies(self, runtime: str) -> list[str]:
        sqs = self.client("sqs")
        bodies: list[str] = []
        for _ in range(3):
            resp = sqs.receive_message(
                QueueUrl=self.prov.dlq_urls[runtime], MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            bodies += [m["Body"] for m in resp.get("Messages", [])]
        return bodies

    # ------------------------------------------------------------------ agent

    def env(self, runtime: str, runtime_url: str, **overrides: Any) -> dict[str, str]:
        cfg = self.config.runtime(runtime)
        assert cfg is not None
        env = {
            "SDQ_RUNTIME_NAME": runtime,
            "SDQ_RUNTIME_TYPE": cfg.type.value,
            "SDQ_RUNTIME_URL": runtime_url,
            "SDQ_STATIC_MODEL": cfg.model or "",
            "SDQ_DYNAMIC_MODEL": str(cfg.dynamic_model).lower(),
            "SDQ_QUEUE_URL": self.prov.queue_urls[runtime],
            "SDQ_RESULT_TOPIC_ARN": self.prov.output_topic_arn,
            "SDQ_STATUS_TABLE": self.prov.status_table,
            "SDQ_OUTPUT_BUCKET": self.prov.output_bucket,
            "SDQ_MODEL_BUCKET": self.prov.model_bucket,
            "SDQ_TASK_TIMEOUT_SECONDS": str(cfg.task_timeout_seconds),
            "SDQ_MAX_RECEIVE_COUNT": str(cfg.max_receive_count),
            "SDQ_HTTP_PORT": "0",
            "SDQ_URL_ALLOWLIST": "127.0.0.1/32",
            "SDQ_WAIT_TIME_SECONDS": "1",
            "SDQ_RETRY_BACKOFF_SECONDS": "1",
            "SDQ_READINESS_TIMEOUT_SECONDS": "20",
            "SDQ_READINESS_INTERVAL_SECONDS": "0.3",
            "SDQ_INTERRUPT_GRACE_SECONDS": "3",
            "SDQ_WEBHOOK_BACKOFF_SECONDS": "0.1",
            "SDQ_LOG_LEVEL": "INFO",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": CONFIG.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        env |= {f"SDQ_{k.upper()}": str(v) for k, v in overrides.items()}
        return env

    def settings(self, runtime: str, runtime_url: str, **overrides: Any) -> AgentSettings:
        return load_settings(self.env(runtime, runtime_url, **overrides))

    async def run_burst(
        self, runtime: str, runtime_url: str, timeout: float = 60.0, **overrides: Any
    ) -> int:
        settings = self.settings(runtime, runtime_url, **overrides)
        async with asyncio.timeout(timeout):
            return await run_agent(settings, burst=True)


def _ddb(value: Any) -> dict[str, Any]:
    return TypeSerializer().serialize(value)  # type: ignore[no-any-return]


def make_stack(endpoint: str, config: DeploymentConfig = CONFIG) -> Stack:
    prov = provision(config, endpoint_url=endpoint)
    sqs = boto3.client("sqs", region_name=CONFIG.region, endpoint_url=endpoint)
    sns = boto3.client("sns", region_name=CONFIG.region, endpoint_url=endpoint)
    observer = observe_topic(sqs, sns, prov.output_topic_arn, "itest-observer")
    return Stack(prov, endpoint, observer, config)


def task(task_id: str, runtime: str = "sdruntime", **fields: Any) -> TaskMessage:
    data: dict[str, Any] = {
        "id": task_id,
        "runtime": runtime,
        "tasktype": "text-to-image",
        "prefix": "itest",
        "content": {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 1},
    }
    data.update(fields)
    return TaskMessage.model_validate(data)


__all__ = ["CONFIG", "Stack", "make_stack", "task"]
