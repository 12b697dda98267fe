"""Terraform applies the AWS-only stacks (routing, model_sync, runtimes) to the moto server (emulator mode), and a task published
to the input topic it created lands in exactly the runtime queue its `runtime` attribute names.

Slow by nature: each SQS queue takes ~25 s to create through Terraform on moto, so the runtime
stacks (two queues each) are applied in parallel, after routing.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from sdq_contracts import naming
from sdq_contracts.messages import ATTR_RUNTIME, TaskMessage
from sdq_contracts.requests import TaskType
from sdq_infra.options import InfraOptions, find_repo_root
from sdq_infra.terraform import Terraform, mirror_has_provider, plugin_mirror, terraform_env

if TYPE_CHECKING:
    from sdq_contracts.config import DeploymentConfig
    from sdq_testing.pytest_plugin import AwsTarget

# Terraform, checkov or the Lambda wheels: minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = find_repo_root(Path(__file__).parent)
RECEIVE_ATTEMPTS = 5


def apply(stack_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """Plan and apply an initialised stack; its outputs."""
    tf = Terraform(stack_dir, env)
    tf.plan()
    tf.apply()
    return tf.outputs()


def receive(sqs: Any, queue_url: str, attempts: int) -> list[dict[str, Any]]:
    """Up to ``attempts`` one-second long polls; returns as soon as something arrives."""
    for _ in range(attempts):
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            WaitTimeSeconds=1,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if messages:
            return list(messages)
    return []


def test_routing_and_runtimes_deploy_and_route_a_task(
    aws: AwsTarget, emulator_config: DeploymentConfig, lambda_zips: Path, tmp_path: Path
) -> None:
    if not mirror_has_provider(plugin_mirror()):
        pytest.skip(f"no hashicorp/aws 5.100.0 in the provider mirror {plugin_mirror()}")
    from sdq_infra.app import synth

    cfg = emulator_config
    options = InfraOptions(REPO, tmp_path, "unused-in-emulator-mode", aws.endpoint_url)
    shutil.copytree(lambda_zips, options.lambda_dir)
    synthesized = synth(cfg, options)
    routing_tf = json.loads((synthesized.stack_dir("routing") / "cdk.tf.json").read_text())
    assert "local" in routing_tf["terraform"]["backend"]
    assert routing_tf["provider"]["aws"][0]["endpoints"][0]["sqs"] == aws.endpoint_url

    env = terraform_env(tmp_path, aws.env())
    # One at a time: Terraform's plugin cache is not safe for concurrent installs.
    for stack in synthesized.stacks:
        Terraform(synthesized.stack_dir(stack), env).init()
    routing = apply(synthesized.stack_dir("routing"), env)
    alpha, beta = (r.name for r in cfg.runtimes)
    # The runtime stacks and model_sync only name routing's resources: apply them side by side.
    later = ("model_sync", f"runtime-{alpha}", f"runtime-{beta}")
    with ThreadPoolExecutor(max_workers=len(later)) as pool:
        futures = {stack: pool.submit(apply, synthesized.stack_dir(stack), env) for stack in later}
        outputs = {stack: future.result(timeout=600) for stack, future in futures.items()}
    runtime_outputs = {name: outputs[f"runtime-{name}"] for name in (alpha, beta)}

    assert routing["input_topic_arn"].endswith(f":{naming.input_topic_name(cfg)}")
    assert routing["status_table"] == naming.status_table_name(cfg)
    assert outputs["model_sync"]["model_bucket"] == cfg.buckets.models
    session = boto3.Session(region_name=aws.region)
    sqs = session.client("sqs", endpoint_url=aws.endpoint_url)
    apigw = session.client("apigateway", endpoint_url=aws.endpoint_url)

    api_id = routing["api_url"].split("//", 1)[1].split(".", 1)[0]
    paths = {r["path"] for r in apigw.get_resources(restApiId=api_id)["items"]}
    assert {"/v1alpha1", "/v1alpha2", "/v1alpha2/tasks/{id}"} <= paths
    (plan,) = apigw.get_usage_plans()["items"]
    assert plan["throttle"]["rateLimit"] == cfg.api.throttle.rate_limit
    assert plan["throttle"]["burstLimit"] == cfg.api.throttle.burst_limit

    attrs = sqs.get_queue_attributes(
        QueueUrl=runtime_outputs[alpha]["queue_url"], AttributeNames=["All"]
    )["Attributes"]
    assert (
        json.loads(attrs["RedrivePolicy"])["maxReceiveCount"] == cfg.runtimes[0].max_receive_count
    )
    assert int(attrs["VisibilityTimeout"]) >= cfg.runtimes[0].task_timeout_seconds

    task = TaskMessage(
        id="emu-task-1", runtime=alpha, tasktype=TaskType.TEXT_TO_IMAGE, content={"prompt": "a cat"}
    )
    body = task.model_dump_json()
    session.client("sns", endpoint_url=aws.endpoint_url).publish(
        TopicArn=routing["input_topic_arn"],
        Message=body,
        MessageAttributes={ATTR_RUNTIME: {"DataType": "String", "StringValue": alpha}},
    )
    delivered = receive(sqs, runtime_outputs[alpha]["queue_url"], RECEIVE_ATTEMPTS)
    assert [m["Body"] for m in delivered] == [body]  # raw delivery: the task itself
    assert TaskMessage.model_validate_json(delivered[0]["Body"]).id == "emu-task-1"
    assert receive(sqs, runtime_outputs[beta]["queue_url"], 1) == []
