"""Local provisioning against the moto server: the resources, idempotency, and filter routing."""

import json

import boto3
import pytest

from sdq_contracts import load_config, naming
from sdq_contracts.messages import ATTR_RUNTIME
from sdq_local.provision import provision

pytestmark = pytest.mark.integration


@pytest.fixture
def cfg(repo_root):
    return load_config(repo_root / "config.yaml")


def _drain(sqs, url, wait=1):
    got = []
    for _ in range(5):
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait).get(
            "Messages", []
        )
        if not msgs:
            break
        got.extend(msgs)
    return got


def test_creates_every_resource_with_the_configured_settings(aws, cfg):
    p = provision(cfg)
    sqs = boto3.client("sqs")
    for runtime in cfg.runtimes:
        url = p.queue_urls[runtime.name]
        assert url.endswith(naming.queue_name(cfg, runtime))
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert int(attrs["VisibilityTimeout"]) >= runtime.task_timeout_seconds
        redrive = json.loads(attrs["RedrivePolicy"])
        assert redrive["maxReceiveCount"] == runtime.max_receive_count
        assert redrive["deadLetterTargetArn"].endswith(naming.dlq_name(cfg, runtime))
    sns = boto3.client("sns")
    topics = {t["TopicArn"].rsplit(":", 1)[1] for t in sns.list_topics()["Topics"]}
    assert topics == {naming.input_topic_name(cfg), naming.output_topic_name(cfg)}
    s3 = boto3.client("s3")
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {
        cfg.buckets.models,
        cfg.buckets.outputs,
    }
    ddb = boto3.client("dynamodb")
    table = ddb.describe_table(TableName=p.status_table)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    ttl = ddb.describe_time_to_live(TableName=p.status_table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == naming.STATUS_TTL_ATTRIBUTE


def test_provisioning_twice_changes_nothing(aws, cfg):
    first = provision(cfg)
    second = provision(cfg)
    assert first == second
    sns = boto3.client("sns")
    subs = sns.list_subscriptions_by_topic(TopicArn=first.input_topic_arn)["Subscriptions"]
    assert len(subs) == len(cfg.runtimes)
    assert len(boto3.client("sqs").list_queues()["QueueUrls"]) == 2 * len(cfg.runtimes)


def test_a_task_for_one_runtime_never_reaches_another_runtimes_queue(aws, cfg):
    p = provision(cfg)
    sns = boto3.client("sns")
    sqs = boto3.client("sqs")
    a, b = (r.name for r in cfg.runtimes[:2])
    for name in (a, a, b):
        sns.publish(
            TopicArn=p.input_topic_arn,
            Message=json.dumps({"for": name}),
            MessageAttributes={ATTR_RUNTIME: {"DataType": "String", "StringValue": name}},
        )
    sns.publish(  # no runtime attribute: routed nowhere
        TopicArn=p.input_topic_arn, Message=json.dumps({"for": "nobody"})
    )
    got_a = [json.loads(m["Body"]) for m in _drain(sqs, p.queue_urls[a])]
    got_b = [json.loads(m["Body"]) for m in _drain(sqs, p.queue_urls[b])]
    assert got_a == [{"for": a}, {"for": a}]  # raw delivery: the body is the message itself
    assert got_b == [{"for": b}]
