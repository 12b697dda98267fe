"""AWS adapters (aioboto3 clients built once by the composition root): SQS, S3, SNS, DynamoDB.

Retries of AWS calls are botocore's (standard mode); anything that still fails becomes an
:class:`AwsError` (transient), except the cases that are the caller's mistake.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from sdq_contracts.messages import (
    ATTR_RUNTIME,
    ATTR_STATUS,
    ATTR_TRACE_HEADER,
    ResultNotification,
    StatusRecord,
    TaskError,
    TaskMessage,
    TaskState,
)
from sdq_queue_agent.domain.model import Claim, ClaimOutcome, ReceivedMessage
from sdq_queue_agent.errors import AwsError, InputRefusedError, InputTooLargeError, StartupError

# Status-row attribute (agent bookkeeping, not in StatusRecord): False from the final state
# until the final notification is published.
ANNOUNCED = "announced"
# A key that never exists: start-up reads it to open connections (warm-up).
WARMUP_KEY = "_sdq/agent-warm-up"
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})
_DENIED = frozenset({"AccessDenied", "403", "Forbidden"})


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


@asynccontextmanager
async def _aws(operation: str) -> AsyncIterator[None]:
    try:
        yield
    except ClientError as exc:
        raise AwsError(f"{operation} failed: {_code(exc)}") from exc
    except BotoCoreError as exc:
        raise AwsError(f"{operation} failed: {type(exc).__name__}") from exc


class SqsQueue:
    def __init__(self, client: Any, queue_url: str) -> None:
        self._sqs = client
        self._url = queue_url

    async def receive(
        self, max_messages: int, wait_seconds: int, visibility: int
    ) -> list[ReceivedMessage]:
        async with _aws("ReceiveMessage"):
            resp = await self._sqs.receive_message(
                QueueUrl=self._url,
                MaxNumberOfMessages=max(1, min(max_messages, 10)),
                WaitTimeSeconds=wait_seconds,
                VisibilityTimeout=visibility,
                MessageSystemAttributeNames=[
                    "ApproximateReceiveCount",
                    "AWSTraceHeader",
                    "SentTimestamp",
                ],
                MessageAttributeNames=["All"],
            )
        return [self._message(m) for m in resp.get("Messages", [])]

    @staticmethod
    def _message(raw: dict[str, Any]) -> ReceivedMessage:
        attrs = raw.get("Attributes", {})
        trace = attrs.get("AWSTraceHeader")
        if not trace:
            carried = raw.get("MessageAttributes", {}).get(ATTR_TRACE_HEADER, {})
            trace = carried.get("StringValue")
        return ReceivedMessage(
            message_id=raw["MessageId"],
            receipt_handle=raw["ReceiptHandle"],
            body=raw.get("Body", ""),
            receive_count=int(attrs.get("ApproximateReceiveCount", "1")),
            trace_header=trace,
        )

    async def delete(self, message: ReceivedMessage) -> None:
        async with _aws("DeleteMessage"):
            await self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message.receipt_handle)

    async def set_visibility(self, message: ReceivedMessage, seconds: int) -> None:
        async with _aws("ChangeMessageVisibility"):
            await self._sqs.change_message_visibility(
                QueueUrl=self._url, ReceiptHandle=message.receipt_handle, VisibilityTimeout=seconds
            )

    async def extend(self, messages: Sequence[ReceivedMessage], seconds: int) -> None:
        failed: list[str] = []
        for start in range(0, len(messages), 10):
            batch = messages[start : start + 10]
            entries = [
                {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": seconds}
                for i, m in enumerate(batch)
            ]
            async with _aws("ChangeMessageVisibilityBatch"):
                resp = await self._sqs.change_message_visibility_batch(
                    QueueUrl=self._url, Entries=entries
                )
            failed += [str(f.get("Code")) for f in resp.get("Failed", [])]
        if failed:
            raise AwsError(f"visibility heartbeat refused for {len(failed)} message(s): {failed}")

    async def is_empty(self) -> bool:
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        async with _aws("GetQueueAttributes"):
            resp = await self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=names)
        return all(int(resp.get("Attributes", {}).get(n, "0")) == 0 for n in names)

    async def redrive_max_receive_count(self) -> int | None:
        """Start-up check: the queue exists and is readable (StartupError if not); the
        ``maxReceiveCount`` of its redrive policy, None without a dead-letter queue."""
        try:
            resp = await self._sqs.get_queue_attributes(
                QueueUrl=self._url, AttributeNames=["RedrivePolicy"]
            )
        except (ClientError, BotoCoreError) as exc:
            raise StartupError(f"cannot read the queue {self._url}: {exc}") from None
        redrive = json.loads(resp.get("Attributes", {}).get("RedrivePolicy") or "{}")
        return int(redrive["maxReceiveCount"]) if "maxReceiveCount" in redrive else None


class S3Store:
    def __init__(self, client: Any) -> None:
        self._s3 = client

    async def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        async with _aws("PutObject"):
            await self._s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    async def warm_up(self, bucket: str) -> None:
        """Open the connection before the first task (a HEAD of a key that never exists)."""
        with contextlib.suppress(ClientError, BotoCoreError):
            await self._s3.head_object(Bucket=bucket, Key=WARMUP_KEY)

    async def get(self, bucket: str, key: str, max_bytes: int) -> tuple[bytes, str]:
        uri = f"s3://{bucket}/{key}"
        try:
            resp = await self._s3.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            code = _code(exc)
            if code in _NOT_FOUND:
                raise InputRefusedError(f"{uri} does not exist") from None
            if code in _DENIED:
                raise InputRefusedError(f"{uri} is not readable by the agent") from None
            raise AwsError(f"GetObject failed: {code}") from exc
        except BotoCoreError as exc:
            raise AwsError(f"GetObject failed: {type(exc).__name__}") from exc
        async with resp["Body"] as body, _aws("GetObject"):
            if int(resp.get("ContentLength", 0)) > max_bytes:
                raise InputTooLargeError(f"{uri} is larger than {max_bytes} bytes")
            data: bytes = await body.read()
        return data, str(resp.get("ContentType") or "application/octet-stream")


class SnsPublisher:
    def __init__(self, client: Any, topic_arn: str) -> None:
        self._sns = client
        self._topic = topic_arn

    async def publish(self, notification: ResultNotification) -> None:
        async with _aws("Publish"):
            await self._sns.publish(
                TopicArn=self._topic,
                Message=notification.model_dump_json(exclude_none=True),
                MessageAttributes={
                    ATTR_RUNTIME: {"DataType": "String", "StringValue": notification.runtime},
                    ATTR_STATUS: {"DataType": "String", "StringValue": notification.status.value},
                },
            )


_ser = TypeSerializer()
_de = TypeDeserializer()


def _values(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in values.items()}


class DynamoStatusStore:
    """The task-status table (key ``id``); conditional updates keep redeliveries idempotent."""

    def __init__(self, client: Any, table: str) -> None:
        self._ddb = client
        self._table = table

    def _key(self, task_id: str) -> dict[str, Any]:
        return {"id": {"S": task_id}}

    async def warm_up(self) -> None:
        """Open the connection before the first task (a read of a key that never exists)."""
        with contextlib.suppress(ClientError, BotoCoreError):
            await self._ddb.get_item(TableName=self._table, Key=self._key(WARMUP_KEY))

    async def _update(self, task_id: str, **kwargs: Any) -> bool:
        """UpdateItem; False when the condition did not hold."""
        try:
            await self._ddb.update_item(TableName=self._table, Key=self._key(task_id), **kwargs)
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise AwsError(f"UpdateItem failed: {_code(exc)}") from exc
        except BotoCoreError as exc:
            raise AwsError(f"UpdateItem failed: {type(exc).__name__}") from exc
        return True

    async def _get(self, task_id: str) -> dict[str, Any] | None:
        async with _aws("GetItem"):
            resp = await self._ddb.get_item(
                TableName=self._table, Key=self._key(task_id), ConsistentRead=True
            )
        item = resp.get("Item")
        return {k: _de.deserialize(v) for k, v in item.items()} if item else None

    async def claim(self, task: TaskMessage, output_location: str, now: datetime) -> Claim:
        stamp = now.isoformat()
        claimed = await self._update(
            task.id,
            UpdateExpression=(
                "SET #s = :running, #att = if_not_exists(#att, :zero) + :one, #started = :now, "
                "#updated = :now, #rt = if_not_exists(#rt, :rt), #tt = if_not_exists(#tt, :tt), "
                "#loc = if_not_exists(#loc, :loc), #created = if_not_exists(#created, :now) REMOVE #err"
            ),
            ConditionExpression=(
                "attribute_not_exists(#id) OR (NOT #s IN (:completed, :cancelled) "
                "AND (attribute_not_exists(#cr) OR #cr = :false) "
                "AND NOT (#s = :failed AND #err.#perm = :true))"
            ),
            ExpressionAttributeNames={
                "#id": "id",
                "#s": "status",
                "#att": "attempts",
                "#started": "started_at",
                "#updated": "updated_at",
                "#rt": "runtime",
                "#tt": "tasktype",
                "#loc": "output_location",
                "#created": "created_at",
                "#err": "error",
                "#cr": "cancel_requested",
                "#perm": "permanent",
            },
            ExpressionAttributeValues=_values(
                {
                    ":running": TaskState.RUNNING.value,
                    ":zero": 0,
                    ":one": 1,
                    ":now": stamp,
                    ":rt": task.runtime,
                    ":tt": task.tasktype.value,
                    ":loc": output_location,
                    ":completed": TaskState.COMPLETED.value,
                    ":cancelled": TaskState.CANCELLED.value,
                    ":failed": TaskState.FAILED.value,
                    ":false": False,
                    ":true": True,
                }
            ),
        )
        if claimed:
            return Claim(ClaimOutcome.CLAIMED)
        item = await self._get(task.id)
        record = StatusRecord.from_item(item) if item else None
        if record is not None and record.cancel_requested and not record.status.terminal:
            return Claim(ClaimOutcome.CANCEL_REQUESTED, record)
        unannounced = item is not None and item.get(ANNOUNCED) is False
        return Claim(ClaimOutcome.ALREADY_DONE, record, unannounced=unannounced)

    async def cancel_requested(self, task_id: str) -> bool:
        item = await self._get(task_id)
        return bool(item and item.get("cancel_requested"))

    async def complete(self, task_id: str, outputs: list[str], now: datetime) -> bool:
        stamp = now.isoformat()
        return await self._update(
            task_id,
            UpdateExpression=(
                "SET #s = :completed, #out = :out, #fin = :now, #updated = :now, #ann = :false "
                "REMOVE #err"
            ),
            ConditionExpression="attribute_not_exists(#s) OR #s <> :cancelled",
            ExpressionAttributeNames={
                "#s": "status",
                "#out": "outputs",
                "#fin": "finished_at",
                "#updated": "updated_at",
                "#err": "error",
                "#ann": ANNOUNCED,
            },
            ExpressionAttributeValues=_values(
                {
                    ":completed": TaskState.COMPLETED.value,
                    ":out": outputs,
                    ":now": stamp,
                    ":cancelled": TaskState.CANCELLED.value,
                    ":false": False,
                }
            ),
        )

    async def fail(
        self, task: TaskMessage | None, task_id: str, error: TaskError, now: datetime
    ) -> None:
        stamp = now.isoformat()
        names = {
            "#s": "status",
            "#err": "error",
            "#fin": "finished_at",
            "#updated": "updated_at",
            "#ann": ANNOUNCED,
        }
        values: dict[str, Any] = {
            ":failed": TaskState.FAILED.value,
            ":err": error.model_dump(mode="json"),
            ":now": stamp,
            ":completed": TaskState.COMPLETED.value,
            ":false": False,
        }
        expression = "SET #s = :failed, #err = :err, #fin = :now, #updated = :now, #ann = :false"
        if task is None:
            # No task to describe the row: only update a row the API created.
            condition = "attribute_exists(#s) AND #s <> :completed"
        else:
            condition = "attribute_not_exists(#s) OR #s <> :completed"
            names |= {"#rt": "runtime", "#tt": "tasktype"}
            values |= {":rt": task.runtime, ":tt": task.tasktype.value}
            expression += ", #rt = if_not_exists(#rt, :rt), #tt = if_not_exists(#tt, :tt)"
        await self._update(
            task_id,
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=_values(values),
        )

    async def stage(self, task_id: str, stage: str, now: datetime) -> None:
        await self._update(
            task_id,
            UpdateExpression="SET #stage = :stage, #updated = :now",
            ConditionExpression="#s = :running",
            ExpressionAttributeNames={"#stage": "stage", "#updated": "updated_at", "#s": "status"},
            ExpressionAttributeValues=_values(
                {":stage": stage, ":now": now.isoformat(), ":running": TaskState.RUNNING.value}
            ),
        )

    async def cancelled(self, task_id: str, now: datetime) -> None:
        stamp = now.isoformat()
        await self._update(
            task_id,
            UpdateExpression="SET #s = :cancelled, #fin = :now, #updated = :now, #ann = :false",
            ConditionExpression="attribute_exists(#s) AND #s <> :completed",
            ExpressionAttributeNames={
                "#s": "status",
                "#fin": "finished_at",
                "#updated": "updated_at",
                "#ann": ANNOUNCED,
            },
            ExpressionAttributeValues=_values(
                {
                    ":cancelled": TaskState.CANCELLED.value,
                    ":now": stamp,
                    ":completed": TaskState.COMPLETED.value,
                    ":false": False,
                }
            ),
        )

    async def announced(self, task_id: str) -> None:
        await self._update(
            task_id,
            UpdateExpression="SET #ann = :true",
            ConditionExpression="attribute_exists(#id)",
            ExpressionAttributeNames={"#ann": ANNOUNCED, "#id": "id"},
            ExpressionAttributeValues=_values({":true": True}),
        )
