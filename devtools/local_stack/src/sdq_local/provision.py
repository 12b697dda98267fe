"""Provision, from the deployment config, what the routing and runtime stacks create in AWS.

Same names (sdq_contracts.naming) and the same settings that matter to behaviour (queue
visibility, DLQ redrive, raw delivery, filter policies, TTL). Idempotent, and works against any
endpoint: the moto server in tests and `make run`, LocalStack, or a real account
(``AWS_ENDPOINT_URL`` or ``endpoint_url``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from sdq_contracts import naming
from sdq_contracts.config import DeploymentConfig, RuntimeConfig

_BOTO_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30
)


@dataclass(frozen=True)
class Provisioned:
    region: str
    input_topic_arn: str
    output_topic_arn: str
    status_table: str
    output_bucket: str
    model_bucket: str
    queue_urls: dict[str, str] = field(default_factory=dict)
    dlq_urls: dict[str, str] = field(default_factory=dict)
    subscription_arns: dict[str, str] = field(default_factory=dict)


def _client(service: str, cfg: DeploymentConfig, endpoint_url: str | None, session: Any) -> Any:
    return (session or boto3).client(
        service, region_name=cfg.region, endpoint_url=endpoint_url, config=_BOTO_CONFIG
    )


def _ensure_bucket(s3: Any, name: str, region: str) -> None:
    kwargs: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )


def _ensure_queue(sqs: Any, name: str, attributes: dict[str, str]) -> str:
    try:
        url: str = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("QueueAlreadyExists", "QueueNameExists"):
            raise
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url


def _queue_arn(sqs: Any, url: str) -> str:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return str(attrs["QueueArn"])


def _ensure_runtime_queue(
    cfg: DeploymentConfig, runtime: RuntimeConfig, sqs: Any, sns: Any, topic_arn: str
) -> tuple[str, str, str]:
    dlq_url = _ensure_queue(
        sqs,
        naming.dlq_name(cfg, runtime),
        {
            "MessageRetentionPeriod": str(naming.DLQ_RETENTION_SECONDS),
            "SqsManagedSseEnabled": "true",
        },
    )
    dlq_arn = _queue_arn(sqs, dlq_url)
    queue_url = _ensure_queue(
        sqs,
        naming.queue_name(cfg, runtime),
        {
            "VisibilityTimeout": str(naming.queue_visibility_timeout(runtime)),
            "MessageRetentionPeriod": str(naming.QUEUE_RETENTION_SECONDS),
            "ReceiveMessageWaitTimeSeconds": "20",
            "SqsManagedSseEnabled": "true",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": runtime.max_receive_count}
            ),
        },
    )
    queue_arn = _queue_arn(sqs, queue_url)
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            "Policy": json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "input-topic-delivers",
                            "Effect": "Allow",
                            "Principal": {"Service": "sns.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": queue_arn,
                            "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                        }
                    ],
                }
            )
        },
    )
    subscription_arn: str = sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={
            "RawMessageDelivery": "true",
            "FilterPolicy": json.dumps(naming.filter_policy(runtime)),
            "FilterPolicyScope": "MessageAttributes",
        },
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    return queue_url, dlq_url, subscription_arn


def _ensure_table(ddb: Any, name: str) -> None:
    try:
        ddb.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": naming.STATUS_HASH_KEY, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": naming.STATUS_HASH_KEY, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise
    ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        ddb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": naming.STATUS_TTL_ATTRIBUTE},
        )


def observe_topic(sqs: Any, sns: Any, topic_arn: str, queue_name: str) -> str:
    """A queue subscribed (raw delivery) to `topic_arn`: how tests, the benchmark and local users
    read the result notifications. Returns its URL; idempotent."""
    url: str = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    arn = _queue_arn(sqs, url)
    sns.subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    return url


def provision(
    cfg: DeploymentConfig,
    *,
    endpoint_url: str | None = None,
    session: boto3.session.Session | None = None,
) -> Provisioned:
    """Create (or confirm) every resource; safe to run any number of times."""
    s3 = _client("s3", cfg, endpoint_url, session)
    sns = _client("sns", cfg, endpoint_url, session)
    sqs = _client("sqs", cfg, endpoint_url, session)
    ddb = _client("dynamodb", cfg, endpoint_url, session)

    for bucket in (cfg.buckets.models, cfg.buckets.outputs):
        _ensure_bucket(s3, bucket, cfg.region)
    input_topic = sns.create_topic(Name=naming.input_topic_name(cfg))["TopicArn"]
    output_topic = sns.create_topic(Name=naming.output_topic_name(cfg))["TopicArn"]
    _ensure_table(ddb, naming.status_table_name(cfg))

    queues: dict[str, str] = {}
    dlqs: dict[str, str] = {}
    subs: dict[str, str] = {}
    for runtime in cfg.runtimes:
        queues[runtime.name], dlqs[runtime.name], subs[runtime.name] = _ensure_runtime_queue(
            cfg, runtime, sqs, sns, input_topic
        )
    return Provisioned(
        region=cfg.region,
        input_topic_arn=input_topic,
        output_topic_arn=output_topic,
        status_table=naming.status_table_name(cfg),
        output_bucket=cfg.buckets.outputs,
        model_bucket=cfg.buckets.models,
        queue_urls=queues,
        dlq_urls=dlqs,
        subscription_arns=subs,
    )
