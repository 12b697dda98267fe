"""boto3 adapters: the status table (DynamoDB), the input topic (SNS), the claim check (S3)."""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from sdq_contracts.messages import TaskState, utcnow
from sdq_contracts.status import ANNOUNCED, PUBLISH_LEASE_UNTIL

_SER = TypeSerializer()
_DES = TypeDeserializer()


def _to_ddb(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _SER.serialize(v) for k, v in item.items()}


def _from_ddb(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _DES.deserialize(v) for k, v in item.items()}


def _conditional_failed(exc: ClientError) -> bool:
    code: str = exc.response.get("Error", {}).get("Code", "")
    return code == "ConditionalCheckFailedException"


class DynamoStatusStore:
    """The API's transitions of :mod:`sdq_contracts.status` as conditional writes."""

    def __init__(self, client: Any, table: str) -> None:
        self._ddb = client
        self._table = table

    def get(self, task_id: str) -> dict[str, Any] | None:
        item = self._ddb.get_item(
            TableName=self._table, Key={"id": {"S": task_id}}, ConsistentRead=True
        ).get("Item")
        return _from_ddb(item) if item else None

    def create(self, item: dict[str, Any]) -> bool:
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=_to_ddb(item),
                ConditionExpression="attribute_not_exists(id)",
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def _update(
        self,
        task_id: str,
        expression: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """UpdateItem; the new row, or None when the condition did not hold."""
        known = {"#s": "status", "#id": "id"} | (names or {})
        used = {k: v for k, v in known.items() if k in expression + condition}
        try:
            result = self._ddb.update_item(
                TableName=self._table,
                Key={"id": {"S": task_id}},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=used,
                ExpressionAttributeValues=_to_ddb(values),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return None
            raise
        return _from_ddb(result["Attributes"])

    def take_publish_lease(self, task_id: str, now: int, lease_until: int) -> bool:
        taken = self._update(
            task_id,
            "SET #pl = :lease",
            "#s = :queued AND attribute_not_exists(published_at) "
            "AND (attribute_not_exists(#pl) OR #pl < :now)",
            {":lease": lease_until, ":now": now, ":queued": TaskState.QUEUED.value},
            {"#pl": PUBLISH_LEASE_UNTIL},
        )
        return taken is not None

    def mark_published(self, task_id: str) -> None:
        self._update(
            task_id,
            "SET published_at = :now REMOVE #pl",
            "attribute_exists(#id)",
            {":now": utcnow().isoformat()},
            {"#pl": PUBLISH_LEASE_UNTIL},
        )

    def cancel_if_queued(self, task_id: str) -> dict[str, Any] | None:
        now = utcnow().isoformat()
        return self._update(
            task_id,
            "SET #s = :cancelled, finished_at = :now, updated_at = :now, #ann = :false",
            "#s = :queued",
            {
                ":cancelled": TaskState.CANCELLED.value,
                ":now": now,
                ":queued": TaskState.QUEUED.value,
                ":false": False,
            },
            {"#ann": ANNOUNCED},
        )

    def request_cancel_if_running(self, task_id: str) -> dict[str, Any] | None:
        return self._update(
            task_id,
            "SET cancel_requested = :yes, updated_at = :now",
            "#s = :running",
            {":yes": True, ":now": utcnow().isoformat(), ":running": TaskState.RUNNING.value},
        )

    def delete(self, task_id: str) -> None:
        self._ddb.delete_item(TableName=self._table, Key={"id": {"S": task_id}})


class SnsPublisher:
    def __init__(self, client: Any, topic_arn: str) -> None:
        self._sns = client
        self._topic = topic_arn

    def publish(self, message: str, attributes: dict[str, str]) -> str:
        result = self._sns.publish(
            TopicArn=self._topic,
            Message=message,
            MessageAttributes={
                k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
            },
        )
        return str(result["MessageId"])


class S3ClaimStore:
    def __init__(self, client: Any, bucket: str) -> None:
        self._s3 = client
        self._bucket = bucket

    def put(self, key: str, body: bytes) -> str:
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType="application/json")
        return f"s3://{self._bucket}/{key}"


class S3LinkSigner:
    """Pre-signed GET links with the Lambda's S3 client and execution-role credentials; boto3
    signs locally, no request leaves the process."""

    def __init__(self, client: Any) -> None:
        self._s3 = client

    def sign(self, bucket: str, key: str, seconds: int) -> str | None:
        try:
            url: str = self._s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds
            )
        except BotoCoreError:  # no credentials: the answer goes out without links
            return None
        return url
