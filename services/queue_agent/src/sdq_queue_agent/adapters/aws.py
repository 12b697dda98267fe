"""AWS adapters (aioboto3 clients built once by the composition root): SQS, S3, SNS, DynamoDB.

Retries of AWS calls are botocore's (standard mode); anything that still fails becomes an
:class:`AwsError` (transient), except the cases that are the caller's mistake.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from sdq_contracts.messages import (
    ATTR_RUNTIME,
    ATTR_STATUS,
    ATTR_TRACE_HEADER,
    OutputObject,
    ResultNotification,
    TaskError,
    TaskState,
)
from sdq_contracts.status import (
    ANNOUNCED,
    CLAIMED_STAGE,
    HOLDER,
    LEASE_UNTIL,
    REQUIRED,
    RETRY_AT,
    SETTLED_BY,
    WAITING_TO_RETRY,
)
from sdq_queue_agent.domain.model import (
    Claim,
    ClaimOutcome,
    DeleteRefusal,
    NewRow,
    ReceivedMessage,
    Renewal,
    refused_claim,
)
from sdq_queue_agent.errors import AwsError, InputRefusedError, InputTooLargeError, StartupError

# Multipart part size for outputs that do not fit in one (S3's minimum is 5 MiB).
PART_SIZE = 8 * 1024 * 1024
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

    async def delete_batch(self, messages: Sequence[ReceivedMessage]) -> dict[str, DeleteRefusal]:
        if not messages:
            return {}
        if len(messages) > 10:
            raise ValueError("DeleteMessageBatch takes at most 10 entries")
        entries = [
            {"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(messages)
        ]
        async with _aws("DeleteMessageBatch"):
            resp = await self._sqs.delete_message_batch(QueueUrl=self._url, Entries=entries)
        return {
            messages[int(f["Id"])].receipt_handle: DeleteRefusal(
                str(f.get("Code", "Unknown")), retryable=not f.get("SenderFault", False)
            )
            for f in resp.get("Failed", [])
        }

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
    def __init__(self, client: Any, *, part_size: int = PART_SIZE) -> None:
        self._s3 = client
        self._part_size = part_size

    async def put(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        async with _aws("PutObject"):
            await self._s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    async def put_stream(
        self, bucket: str, key: str, chunks: AsyncGenerator[bytes, None], content_type: str
    ) -> int:
        """One PutObject when the bytes fit in one part; else a multipart upload that sends part
        k while part k+1 is read (at most two parts in memory), aborted on any failure."""
        async with contextlib.aclosing(_parts(chunks, self._part_size)) as parts:
            first = await anext(parts, None)
            second = await anext(parts, None) if first is not None else None
            if second is None:
                body = first or b""
                await self.put(bucket, key, body, content_type)
                return len(body)

            async def every_part() -> AsyncGenerator[bytes, None]:
                yield first or b""
                yield second
                async for part in parts:
                    yield part

            async with contextlib.aclosing(every_part()) as all_parts:
                return await self._multipart(bucket, key, content_type, all_parts)

    async def _multipart(
        self, bucket: str, key: str, content_type: str, parts: AsyncGenerator[bytes, None]
    ) -> int:
        async with _aws("CreateMultipartUpload"):
            created = await self._s3.create_multipart_upload(
                Bucket=bucket, Key=key, ContentType=content_type
            )
        upload_id = str(created["UploadId"])
        done: list[dict[str, Any]] = []
        sending: asyncio.Task[dict[str, Any]] | None = None
        total = 0

        async def send(number: int, body: bytes) -> dict[str, Any]:
            async with _aws("UploadPart"):
                resp = await self._s3.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                )
            return {"PartNumber": number, "ETag": resp["ETag"]}

        try:
            async for part in parts:
                if sending is not None:
                    done.append(await sending)
                total += len(part)
                sending = asyncio.create_task(send(len(done) + 1, part))
            if sending is not None:
                done.append(await sending)
                sending = None
            async with _aws("CompleteMultipartUpload"):
                await self._s3.complete_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
                )
        except BaseException:
            if sending is not None:
                sending.cancel()
                with contextlib.suppress(BaseException):
                    await sending
            with contextlib.suppress(ClientError, BotoCoreError):
                await self._s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise
        return total

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


class S3LinkSigner:
    """Pre-signed GET links with the agent's S3 client and credentials (its IRSA role session on
    EKS): aiobotocore signs locally, no request leaves the process."""

    def __init__(self, client: Any) -> None:
        self._s3 = client

    async def sign(self, bucket: str, key: str, seconds: int) -> str:
        try:
            url: str = await self._s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds
            )
        except BotoCoreError as exc:  # no credentials, unknown parameter
            raise AwsError(f"cannot sign a download link: {type(exc).__name__}") from exc
        return url


async def _parts(chunks: AsyncGenerator[bytes, None], size: int) -> AsyncGenerator[bytes, None]:
    """``chunks`` regrouped into parts of ``size`` bytes (the last one shorter)."""
    buf = bytearray()
    async with contextlib.aclosing(chunks) as source:
        async for chunk in source:
            buf += chunk
            while len(buf) >= size:
                with memoryview(buf) as view:
                    part = bytes(view[:size])  # one copy (a bytearray slice would be a second)
                del buf[:size]
                yield part
    if buf:
        yield bytes(buf)


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
    """The task-status table (key ``id``): the transitions of :mod:`sdq_contracts.status` as
    conditional updates (the shared scenario suite holds the two to the same answers)."""

    def __init__(self, client: Any, table: str) -> None:
        self._ddb = client
        self._table = table

    def _key(self, task_id: str) -> dict[str, Any]:
        return {"id": {"S": task_id}}

    async def warm_up(self) -> None:
        """Open the connection before the first task (a read of a key that never exists)."""
        with contextlib.suppress(ClientError, BotoCoreError):
            await self._ddb.get_item(TableName=self._table, Key=self._key(WARMUP_KEY))

    async def _update(
        self, task_id: str, expression: str, condition: str, values: dict[str, Any]
    ) -> bool:
        """UpdateItem; False when the condition did not hold."""
        returned = await self._update_returning(task_id, expression, condition, values, "NONE")
        return returned is not None

    async def _update_returning(
        self,
        task_id: str,
        expression: str,
        condition: str,
        values: dict[str, Any],
        return_values: str = "ALL_NEW",
    ) -> dict[str, Any] | None:
        """UpdateItem returning the new item (no extra capacity is charged for it); None when
        the condition did not hold."""
        names = {f"#{n}": n for n in _ATTRIBUTES if f"#{n}" in expression + condition}
        try:
            resp = await self._ddb.update_item(
                TableName=self._table,
                Key=self._key(task_id),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_values(values),
                ReturnValues=return_values,
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return None
            raise AwsError(f"UpdateItem failed: {_code(exc)}") from exc
        except BotoCoreError as exc:
            raise AwsError(f"UpdateItem failed: {type(exc).__name__}") from exc
        return {k: _de.deserialize(v) for k, v in resp.get("Attributes", {}).items()}

    async def _get(self, task_id: str) -> dict[str, Any] | None:
        async with _aws("GetItem"):
            resp = await self._ddb.get_item(
                TableName=self._table, Key=self._key(task_id), ConsistentRead=True
            )
        item = resp.get("Item")
        return {k: _de.deserialize(v) for k, v in item.items()} if item else None

    async def claim(
        self, task_id: str, new_row: NewRow, now: datetime, holder: str, lease_until: int
    ) -> Claim:
        stamp = now.isoformat()
        fill = ", ".join(f"#{k} = if_not_exists(#{k}, :{k})" for k in REQUIRED)
        claimed = await self._update(
            task_id,
            "SET #status = :running, #attempts = if_not_exists(#attempts, :zero) + :one, "
            f"#started_at = :now, #updated_at = :now, #holder = :holder, #lease_until = :lease, "
            f"#stage = :stage, {fill} REMOVE #error, #retry_at",
            "attribute_not_exists(#id) OR (NOT #status IN (:completed, :cancelled) "
            "AND (attribute_not_exists(#cancel_requested) OR #cancel_requested = :false) "
            "AND NOT (#status = :failed AND #error.#permanent = :true) "
            "AND NOT (#status = :running AND attribute_exists(#holder) AND #holder <> :holder "
            "AND #lease_until >= :epoch))",
            {
                ":running": TaskState.RUNNING.value,
                ":zero": 0,
                ":one": 1,
                ":now": stamp,
                ":holder": holder,
                ":lease": lease_until,
                ":stage": CLAIMED_STAGE,
                ":epoch": int(now.timestamp()),
                ":completed": TaskState.COMPLETED.value,
                ":cancelled": TaskState.CANCELLED.value,
                ":failed": TaskState.FAILED.value,
                ":false": False,
                ":true": True,
            }
            | {f":{k}": v for k, v in new_row.item(task_id, stamp).items() if k in REQUIRED},
        )
        if claimed:
            return Claim(ClaimOutcome.CLAIMED)
        item = await self._get(task_id)
        return refused_claim(item, holder, int(now.timestamp()))

    async def renew(
        self, task_id: str, holder: str, lease_until: int, stage: str, now: datetime
    ) -> Renewal:
        item = await self._update_returning(
            task_id,
            "SET #lease_until = :lease, #stage = :stage, #updated_at = :now",
            "#status = :running AND #holder = :holder",
            {
                ":lease": lease_until,
                ":stage": stage,
                ":now": now.isoformat(),
                ":running": TaskState.RUNNING.value,
                ":holder": holder,
            },
        )
        if item is None:
            return Renewal(held=False)
        return Renewal(held=True, cancel_requested=item.get("cancel_requested") is True)

    async def release(self, task_id: str, holder: str, now: datetime) -> None:
        await self._update(
            task_id,
            "SET #updated_at = :now REMOVE #holder, #lease_until, #stage",
            "#status = :running AND #holder = :holder",
            {":now": now.isoformat(), ":running": TaskState.RUNNING.value, ":holder": holder},
        )

    async def wait_to_retry(
        self, task_id: str, holder: str, error: TaskError, retry_at: datetime, now: datetime
    ) -> None:
        await self._update(
            task_id,
            "SET #updated_at = :now, #stage = :waiting, #error = :err, #retry_at = :retry "
            "REMOVE #holder, #lease_until",
            "#status = :running AND #holder = :holder",
            {
                ":now": now.isoformat(),
                ":waiting": WAITING_TO_RETRY,
                ":err": error.model_dump(mode="json"),
                ":retry": retry_at.isoformat(),
                ":running": TaskState.RUNNING.value,
                ":holder": holder,
            },
        )

    async def cancel_requested(self, task_id: str) -> bool:
        item = await self._get(task_id)
        return bool(item and item.get("cancel_requested"))

    async def complete(
        self,
        task_id: str,
        holder: str,
        outputs: list[str],
        now: datetime,
        *,
        settled_by: str,
        files: Sequence[OutputObject] = (),
    ) -> bool:
        return await self._update(
            task_id,
            "SET #status = :completed, #outputs = :out, #files = :files, #finished_at = :now, "
            f"#updated_at = :now, #settled_by = :mid {_SETTLE_REMOVES}, #error",
            "#status = :running AND #holder = :holder",
            {
                ":completed": TaskState.COMPLETED.value,
                ":out": outputs,
                # No links in the row (the status answer signs fresh ones).
                ":files": [
                    f.model_dump(
                        mode="json",
                        exclude_none=True,
                        exclude={"download_url", "download_expires_at"},
                    )
                    for f in files
                ],
                ":now": now.isoformat(),
                ":mid": settled_by,
                ":running": TaskState.RUNNING.value,
                ":holder": holder,
            },
        )

    async def fail(
        self,
        task_id: str,
        error: TaskError,
        now: datetime,
        new_row: NewRow | None,
        settled_by: str,
    ) -> bool:
        stamp = now.isoformat()
        values: dict[str, Any] = {
            ":failed": TaskState.FAILED.value,
            ":err": error.model_dump(mode="json"),
            ":now": stamp,
            ":mid": settled_by,
            ":completed": TaskState.COMPLETED.value,
            ":cancelled": TaskState.CANCELLED.value,
        }
        expression = (
            "SET #status = :failed, #error = :err, #finished_at = :now, #updated_at = :now, "
            "#settled_by = :mid"
        )
        # Not ended otherwise, and not failed by another message's handling.
        ended = (
            "NOT #status IN (:completed, :cancelled) AND NOT (#status = :failed "
            "AND attribute_exists(#settled_by) AND #settled_by <> :mid)"
        )
        if new_row is None:
            # No task to describe the row: only update a row that exists.
            condition = f"attribute_exists(#id) AND {ended}"
        else:
            condition = f"attribute_not_exists(#id) OR {ended}"
            expression += ", " + ", ".join(f"#{k} = if_not_exists(#{k}, :{k})" for k in REQUIRED)
            values |= {f":{k}": v for k, v in new_row.item(task_id, stamp).items() if k in REQUIRED}
        return await self._update(
            task_id, f"{expression} {_SETTLE_REMOVES}", f"({condition})", values
        )

    async def cancelled(self, task_id: str, now: datetime, settled_by: str) -> bool:
        return await self._update(
            task_id,
            "SET #status = :cancelled, #finished_at = :now, #updated_at = :now, "
            f"#settled_by = :mid {_SETTLE_REMOVES}",
            "attribute_exists(#id) AND NOT #status = :completed "
            "AND (NOT #status = :cancelled OR #settled_by = :mid)",
            {
                ":cancelled": TaskState.CANCELLED.value,
                ":now": now.isoformat(),
                ":mid": settled_by,
                ":completed": TaskState.COMPLETED.value,
            },
        )

    async def adopt(self, task_id: str, settled_by: str, now: datetime | None = None) -> bool:
        stamp = "" if now is None else ", #updated_at = :now"
        values: dict[str, Any] = {
            ":mid": settled_by,
            ":completed": TaskState.COMPLETED.value,
            ":cancelled": TaskState.CANCELLED.value,
            ":failed": TaskState.FAILED.value,
            ":false": False,
        }
        if now is not None:
            values[":now"] = now.isoformat()
        return await self._update(
            task_id,
            f"SET #settled_by = :mid{stamp} REMOVE #announced",
            "#status IN (:completed, :cancelled, :failed) AND attribute_not_exists(#settled_by) "
            "AND #announced = :false",
            values,
        )

    async def mark_announced(self, marks: Sequence[tuple[str, str]]) -> set[str]:
        """One TransactWriteItems for every mark. A transaction is all or nothing: when some
        conditions fail (TransactionCanceledException names them in order) it is sent once more
        without them."""
        pending = list(marks)
        for _ in range(2):
            if not pending:
                return set()
            try:
                await self._ddb.transact_write_items(
                    TransactItems=[self._mark(task_id, mid) for task_id, mid in pending]
                )
            except ClientError as exc:
                if _code(exc) != "TransactionCanceledException":
                    raise AwsError(f"TransactWriteItems failed: {_code(exc)}") from exc
                reasons = exc.response.get("CancellationReasons") or []
                failed = {
                    n for n, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"
                }
                if not failed:  # cancelled for another reason (a conflict, throttling)
                    raise AwsError(f"TransactWriteItems failed: {_code(exc)}") from exc
                pending = [m for n, m in enumerate(pending) if n not in failed]
                continue
            except BotoCoreError as exc:
                raise AwsError(f"TransactWriteItems failed: {type(exc).__name__}") from exc
            return {task_id for task_id, _ in pending}
        return set()

    def _mark(self, task_id: str, settled_by: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._table,
                "Key": self._key(task_id),
                "UpdateExpression": "SET #announced = :true",
                "ConditionExpression": "#settled_by = :mid AND "
                "#status IN (:completed, :cancelled, :failed)",
                "ExpressionAttributeNames": {
                    "#announced": "announced",
                    "#settled_by": "settled_by",
                    "#status": "status",
                },
                "ExpressionAttributeValues": _values(
                    {
                        ":true": True,
                        ":mid": settled_by,
                        ":completed": TaskState.COMPLETED.value,
                        ":cancelled": TaskState.CANCELLED.value,
                        ":failed": TaskState.FAILED.value,
                    }
                ),
            }
        }


# What every final write removes: the running task's bookkeeping and the ownerless marker.
_SETTLE_REMOVES = "REMOVE #stage, #holder, #lease_until, #retry_at, #announced"


# Every attribute name the expressions use (as ``#name``).
_ATTRIBUTES = (
    "id",
    "status",
    "attempts",
    "started_at",
    "updated_at",
    "finished_at",
    "created_at",
    "runtime",
    "tasktype",
    "output_location",
    "expires_at",
    "outputs",
    "files",
    "error",
    "permanent",
    "stage",
    "cancel_requested",
    ANNOUNCED,
    HOLDER,
    LEASE_UNTIL,
    RETRY_AT,
    SETTLED_BY,
)
