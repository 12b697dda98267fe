"""boto3 adapters: the status table (DynamoDB), the input topic (SNS), the claim check (S3)."""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from sdq_contracts.messages import StatusRecord, TaskState, utcnow

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
    def __init__(self, client: Any, table: str) -> None:
        self._ddb = client
        self._table = table

    def get(self, task_id: str) -> StatusRecord | None:
        item = self._ddb.get_item(
            TableName=self._table, Key={"id": {"S": task_id}}, ConsistentRead=True
        ).get("Item")
        return StatusRecord.from_item(_from_ddb(item)) if item else None

    def create(self, record: StatusRecord) -> bool:
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=_to_ddb(record.to_item()),
                ConditionExpression="attribute_not_exists(id)",
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def _update_if(
        self, task_id: str, expected: TaskState, sets: str, values: dict[str, Any]
    ) -> StatusRecord | None:
        now = utcnow().isoformat()
        try:
            result = self._ddb.update_item(
                TableName=self._table,
                Key={"id": {"S": task_id}},
                UpdateExpression=f"SET {sets}, updated_at = :now",
                ConditionExpression="#s = :expected",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=_to_ddb(
                    values | {":now": now, ":expected": expected.value}
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return None
            raise
        return StatusRecord.from_item(_from_ddb(result["Attributes"]))

    def mark_published(self, task_id: str) -> None:
        self._ddb.update_item(
            TableName=self._table,
            Key={"id": {"S": task_id}},
            UpdateExpression="SET published_at = :now",
            ExpressionAttributeValues={":now": {"S": utcnow().isoformat()}},
        )

    def cancel_if_queued(self, task_id: str) -> StatusRecord | None:
        return self._update_if(
            task_id,
            TaskState.QUEUED,
            "#s = :cancelled, finished_at = :now",
            {":cancelled": TaskState.CANCELLED.value},
        )

    def request_cancel_if_running(self, task_id: str) -> StatusRecord | None:
        return self._update_if(
            task_id, TaskState.RUNNING, "cancel_requested = :yes", {":yes": True}
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
