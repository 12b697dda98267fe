"""Each built Lambda zip, executed for real: unpacked into an empty directory and its handler
invoked from an isolated interpreter (``python -I -S``: no site-packages, no PYTHONPATH, only
the stdlib and the zip's contents) against the moto server, with the event shapes API Gateway
(REST proxy), S3 and SNS deliver. A zip that misses a dependency fails here, not on AWS."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from sdq_contracts import naming
from sdq_contracts.config import load_config, runtimes_env
from sdq_contracts.messages import TaskMessage
from sdq_infra.options import find_repo_root
from sdq_local.provision import provision

if TYPE_CHECKING:
    from sdq_testing.pytest_plugin import AwsTarget

pytestmark = pytest.mark.integration

REPO = find_repo_root(Path(__file__).parent)
CFG = load_config(REPO / "config.yaml")
HANDLERS = {
    "api_validator": "sdq_api_validator.handler.handle",
    "model_sync": "sdq_model_sync.handler.handle",
}
INVOKE = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
module_name, _, function = sys.argv[2].rpartition(".")
handler = getattr(importlib.import_module(module_name), function)
results = [handler(event, None) for event in json.load(sys.stdin)]
# Everything the handler loaded came from the zip or the stdlib (namespace packages: no file).
for name, module in list(sys.modules.items()):
    path = getattr(module, "__file__", None)
    if path and name.startswith(("sdq_", "boto", "pydantic", "structlog", "opentelemetry")):
        assert path.startswith(sys.argv[1]), (name, path)
print("RESULTS " + json.dumps(results))
"""


def unpack(zips: Path, service: str, into: Path) -> Path:
    into.mkdir()
    with zipfile.ZipFile(zips / f"{service}.zip") as zf:
        zf.extractall(into)
    return into


def invoke(code_dir: Path, service: str, events: list[Any], env: dict[str, str]) -> Any:
    """Run the handler on each event in a fresh isolated interpreter; its return values."""
    environment = {"PATH": os.environ.get("PATH", ""), "HOME": str(code_dir)} | env
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", INVOKE, str(code_dir), HANDLERS[service]],
        input=json.dumps(events),
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=code_dir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [line] = [line for line in result.stdout.splitlines() if line.startswith("RESULTS ")]
    return json.loads(line.removeprefix("RESULTS "))


def rest_proxy_event(method: str, resource: str, path: str, body: str | None) -> dict[str, Any]:
    """An API Gateway REST API proxy-integration event (payload format 1.0)."""
    headers = {"content-type": "application/json", "x-api-key": "k" * 40, "Host": "api.test"}
    params = {"id": path.rsplit("/", 1)[1]} if "{id}" in resource else None
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": params,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123",
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": "x-1",
            "requestTime": "26/Nov/2026:15:00:00 +0000",
            "path": f"/live{path}",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "live",
            "domainPrefix": "api",
            "requestTimeEpoch": 1795000000000,
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "203.0.113.7", "apiKey": "k" * 40, "apiKeyId": "key1"},
            "domainName": "api.test",
            "apiId": "api1",
        },
        "body": body,
        "isBase64Encoded": False,
    }


def s3_records(bucket: str, *keys: str) -> list[dict[str, Any]]:
    return [
        {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": CFG.region,
            "eventTime": "2026-11-26T15:00:00.000Z",
            "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "AWS:EXAMPLE"},
            "requestParameters": {"sourceIPAddress": "203.0.113.7"},
            "responseElements": {"x-amz-request-id": "R", "x-amz-id-2": "I"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "sdq-model-sync",
                "bucket": {
                    "name": bucket,
                    "ownerIdentity": {"principalId": "EXAMPLE"},
                    "arn": f"arn:aws:s3:::{bucket}",
                },
                "object": {"key": key, "size": 1024, "eTag": "0123", "sequencer": "0A1B"},
            },
        }
        for key in keys
    ]


def sns_wrapped(s3_event: dict[str, Any]) -> dict[str, Any]:
    topic = f"arn:aws:sns:{CFG.region}:123456789012:models"
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"{topic}:sub",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
                    "TopicArn": topic,
                    "Subject": "Amazon S3 Notification",
                    "Message": json.dumps(s3_event),
                    "Timestamp": "2026-11-26T15:00:00.000Z",
                    "SignatureVersion": "1",
                    "Signature": "EXAMPLE",
                    "SigningCertUrl": "https://sns.example/cert.pem",
                    "UnsubscribeUrl": "https://sns.example/unsubscribe",
                    "MessageAttributes": {},
                },
            }
        ]
    }


@pytest.fixture
def api_env(aws: AwsTarget) -> dict[str, str]:
    p = provision(CFG)
    return aws.env() | {
        "SDQ_RUNTIMES": runtimes_env(CFG.runtimes),
        "SDQ_INPUT_TOPIC_ARN": p.input_topic_arn,
        "SDQ_STATUS_TABLE": p.status_table,
        "SDQ_OUTPUT_BUCKET": p.output_bucket,
        "SDQ_MAX_BODY_BYTES": str(CFG.api.max_body_bytes),
    }


def test_api_validator_zip_accepts_routes_and_answers_status(
    aws: AwsTarget, lambda_zips: Path, tmp_path: Path, api_env: dict[str, str]
) -> None:
    code = unpack(lambda_zips, "api_validator", tmp_path / "code")
    body = (REPO / "tests" / "examples" / "v1alpha2-text-to-image.json").read_text()
    task_id = json.loads(body)["task"]["metadata"]["id"]
    accepted, status, missing = invoke(
        code,
        "api_validator",
        [
            rest_proxy_event("POST", "/v1alpha2", "/v1alpha2", body),
            rest_proxy_event("GET", "/v1alpha2/tasks/{id}", f"/v1alpha2/tasks/{task_id}", None),
            rest_proxy_event("GET", "/v1alpha2/tasks/{id}", "/v1alpha2/tasks/nope", None),
        ],
        api_env,
    )
    assert accepted["statusCode"] == 202, accepted
    assert json.loads(accepted["body"])["id_task"] == task_id
    assert status["statusCode"] == 200
    assert json.loads(status["body"])["status"] == "queued"
    assert missing["statusCode"] == 404
    assert json.loads(missing["body"])["error"]["code"] == "not_found"
    # The task reached its runtime's queue through the real SNS topic.
    runtime = CFG.runtimes[0]
    queue = boto3.client("sqs").get_queue_url(QueueName=naming.queue_name(CFG, runtime))
    messages = boto3.client("sqs").receive_message(
        QueueUrl=queue["QueueUrl"], WaitTimeSeconds=1, MaxNumberOfMessages=10
    )["Messages"]
    assert [TaskMessage.model_validate_json(m["Body"]).id for m in messages] == [task_id]


def test_model_sync_zip_handles_s3_and_sns_wrapped_events(
    aws: AwsTarget, lambda_zips: Path, tmp_path: Path
) -> None:
    code = unpack(lambda_zips, "model_sync", tmp_path / "code")
    ec2 = boto3.client("ec2")
    tags = {naming.NODE_TAG_CLUSTER: naming.cluster_name(CFG), naming.NODE_TAG_ROLE: "gpu"}
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, TagSpecifications=spec)
    bucket = CFG.buckets.models
    direct = {"Records": s3_records(bucket, "Lora/a.safetensors")}
    env = aws.env() | {
        "SDQ_CLUSTER_NAME": naming.cluster_name(CFG),
        "SDQ_MODEL_BUCKET": bucket,
        "SDQ_MODEL_CACHE_DIR": naming.MODEL_CACHE_HOST_PATH,
    }
    first, second = invoke(
        code, "model_sync", [direct, sns_wrapped({"Records": s3_records(bucket, "b.pt")})], env
    )
    assert (first["status"], first["keys"]) == ("sent", ["Lora/a.safetensors"])
    assert (second["status"], second["keys"]) == ("sent", ["b.pt"])
    commands = boto3.client("ssm").list_commands()["Commands"]
    assert sorted(c["CommandId"] for c in commands) == sorted(
        first["command_ids"] + second["command_ids"]
    )


def test_a_zip_missing_a_dependency_fails(
    aws: AwsTarget, lambda_zips: Path, tmp_path: Path, api_env: dict[str, str]
) -> None:
    """The check above is real: remove one bundled dependency and the same invocation fails."""
    code = unpack(lambda_zips, "api_validator", tmp_path / "code")
    shutil.rmtree(code / "structlog")
    event = rest_proxy_event("GET", "/v1alpha2/tasks/{id}", "/v1alpha2/tasks/x", None)
    with pytest.raises(AssertionError, match="No module named 'structlog'"):
        invoke(code, "api_validator", [event], api_env)
