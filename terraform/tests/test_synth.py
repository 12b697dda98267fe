"""Assertions on the synthesized Terraform JSON of the repository's config (one synthesis)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sdq_contracts import naming
from sdq_infra import names

if TYPE_CHECKING:
    from conftest import Synth

# cdktf synth (node + jsii): seconds to minutes per app on a loaded 2-core machine.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

DATA_SERVICES = ("s3", "sqs", "sns", "dynamodb", "kms", "lambda", "ssm", "ec2", "iam", "eks")


def policies(synth: Synth) -> dict[str, dict[str, Any]]:
    """Every inline IAM policy of every stack, parsed, by stack.resource."""
    return {
        name: json.loads(body["policy"])
        for name, body in synth.all_resources("aws_iam_role_policy").items()
    }


def statements(synth: Synth, stack: str, role_fragment: str) -> list[dict[str, Any]]:
    found = [
        json.loads(body["policy"])["Statement"]
        for name, body in synth.resources(stack, "aws_iam_role_policy").items()
        if role_fragment in name
    ]
    assert len(found) == 1, f"expected one policy matching {role_fragment} in {stack}"
    return found[0]


def only(resources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    assert len(resources) == 1, sorted(resources)
    return next(iter(resources.values()))


def test_stacks_in_dependency_order(synthesized: Synth) -> None:
    runtimes = [names.runtime_stack_id(r) for r in synthesized.cfg.runtimes]
    assert synthesized.stacks == (
        "state", "registry", "network", "cluster", "routing", "model_sync", *runtimes
    )  # fmt: skip


def test_only_the_aws_provider(synthesized: Synth) -> None:
    for stack in synthesized.stacks:
        tf = synthesized.json(stack)
        assert set(tf["provider"]) == {"aws"}, stack
        assert tf["terraform"]["required_providers"] == {
            "aws": {"source": "aws", "version": "5.100.0"}
        }


def test_s3_backend_key_per_stack_with_lockfile(synthesized: Synth) -> None:
    keys = set()
    for stack in synthesized.stacks:
        backend = synthesized.json(stack)["terraform"]["backend"]
        if stack == "state":
            assert set(backend) == {"local"}, "the state bucket cannot hold its own state"
            continue
        s3 = backend["s3"]
        assert s3["use_lockfile"] is True
        assert "dynamodb_table" not in s3
        assert s3["bucket"] == "sdq-test-tfstate"
        assert s3["key"] == f"{synthesized.cfg.stack_name}/{stack}.tfstate"
        keys.add(s3["key"])
    assert len(keys) == len(synthesized.stacks) - 1


def test_runtime_queues_encrypted_with_visibility_and_redrive(synthesized: Synth) -> None:
    cfg = synthesized.cfg
    for runtime in cfg.runtimes:
        stack = names.runtime_stack_id(runtime)
        queues = {
            q["name"]: (name, q)
            for name, q in synthesized.resources(stack, "aws_sqs_queue").items()
        }
        dlq_id, dlq = queues[naming.dlq_name(cfg, runtime)]
        _, queue = queues[naming.queue_name(cfg, runtime)]
        for q in (queue, dlq):
            assert q["sqs_managed_sse_enabled"] is True
        assert queue["visibility_timeout_seconds"] >= runtime.task_timeout_seconds
        assert queue["visibility_timeout_seconds"] == naming.queue_visibility_timeout(runtime)
        redrive = json.loads(queue["redrive_policy"])
        assert redrive == {
            "deadLetterTargetArn": f"${{aws_sqs_queue.{dlq_id}.arn}}",
            "maxReceiveCount": runtime.max_receive_count,
        }
        assert dlq["message_retention_seconds"] == naming.DLQ_RETENTION_SECONDS
        policy = json.loads(queue["policy"])["Statement"]
        assert [s["Principal"] for s in policy] == [{"Service": "sns.amazonaws.com"}]
        assert policy[0]["Condition"]["ArnEquals"]["aws:SourceArn"].endswith(
            f":{naming.input_topic_name(cfg)}"
        )


def test_each_runtime_subscribed_with_its_own_filter(synthesized: Synth) -> None:
    cfg = synthesized.cfg
    filters = {}
    for runtime in cfg.runtimes:
        sub = only(
            synthesized.resources(names.runtime_stack_id(runtime), "aws_sns_topic_subscription")
        )
        assert sub["protocol"] == "sqs"
        assert sub["raw_message_delivery"] is True
        assert sub["filter_policy_scope"] == "MessageAttributes"
        assert sub["topic_arn"].endswith(f":{naming.input_topic_name(cfg)}")
        filters[runtime.name] = json.loads(sub["filter_policy"])
        assert filters[runtime.name] == naming.filter_policy(runtime)
    assert len({json.dumps(f) for f in filters.values()}) == len(cfg.runtimes)


def test_api_routes_require_api_keys_and_proxy_to_the_lambda(synthesized: Synth) -> None:
    methods = synthesized.resources("routing", "aws_api_gateway_method")
    resources = synthesized.resources("routing", "aws_api_gateway_resource")
    by_id = {f"${{aws_api_gateway_resource.{name}.id}}": r for name, r in resources.items()}

    def path(resource_ref: str) -> str:
        parts = []
        while resource_ref in by_id:
            parts.append(by_id[resource_ref]["path_part"])
            resource_ref = by_id[resource_ref]["parent_id"]
        return "/" + "/".join(reversed(parts))

    routes = {(path(m["resource_id"]), m["http_method"]) for m in methods.values()}
    assert routes == {
        ("/v1alpha1", "POST"),
        ("/v1alpha2", "POST"),
        ("/v1alpha2/tasks/{id}", "GET"),
        ("/v1alpha2/tasks/{id}", "DELETE"),
    }
    assert all(m["api_key_required"] is True for m in methods.values())
    integrations = synthesized.resources("routing", "aws_api_gateway_integration")
    assert len(integrations) == len(methods)
    for integration in integrations.values():
        assert integration["type"] == "AWS_PROXY"
        assert integration["uri"].startswith("${aws_lambda_function.")


def test_usage_plan_throttle_matches_config(synthesized: Synth) -> None:
    plan = only(synthesized.resources("routing", "aws_api_gateway_usage_plan"))
    throttle = synthesized.cfg.api.throttle
    assert plan["throttle_settings"] == {
        "rate_limit": throttle.rate_limit,
        "burst_limit": throttle.burst_limit,
    }
    assert len(plan["api_stages"]) == 1


def test_stage_traces_and_logs_access(synthesized: Synth) -> None:
    stage = only(synthesized.resources("routing", "aws_api_gateway_stage"))
    assert stage["stage_name"] == names.API_STAGE
    assert stage["xray_tracing_enabled"] is True
    log = stage["access_log_settings"]
    assert log["destination_arn"].startswith("${aws_cloudwatch_log_group.")
    assert json.loads(log["format"])["requestId"] == "$context.requestId"


def test_lambdas_trace_and_run_the_contract_handlers(synthesized: Synth) -> None:
    functions = synthesized.all_resources("aws_lambda_function")
    handlers = {f["handler"] for f in functions.values()}
    assert handlers == {names.API_VALIDATOR_HANDLER, names.MODEL_SYNC_HANDLER}
    for function in functions.values():
        assert function["tracing_config"] == {"mode": "Active"}
        assert function["runtime"] == "python3.11"
    validator = only(synthesized.resources("routing", "aws_lambda_function"))
    env = validator["environment"]["variables"]
    cfg = synthesized.cfg
    assert json.loads(env["SDQ_RUNTIMES"]) == [
        {"name": r.name, "type": r.type.value, "model": r.model, "dynamic_model": r.dynamic_model}
        for r in cfg.runtimes
    ]
    assert env["SDQ_STATUS_TABLE"].startswith("${aws_dynamodb_table.")
    assert env["SDQ_MAX_BODY_BYTES"] == str(cfg.api.max_body_bytes)
    assert env["SDQ_CLAIM_CHECK_BYTES"] == str(cfg.api.claim_check_bytes)
    assert env["SDQ_STATUS_TTL_DAYS"] == str(cfg.api.status_ttl_days)
    assert {"SDQ_INPUT_TOPIC_ARN", "SDQ_OUTPUT_BUCKET"} <= set(env)


def test_topics_encrypted_and_traced(synthesized: Synth) -> None:
    topics = synthesized.resources("routing", "aws_sns_topic")
    cfg = synthesized.cfg
    assert {t["name"] for t in topics.values()} == {
        naming.input_topic_name(cfg),
        naming.output_topic_name(cfg),
    }
    for topic in topics.values():
        assert topic["kms_master_key_id"] == "alias/aws/sns"
        assert topic["tracing_config"] == "Active"


def test_status_table_keys_and_ttl(synthesized: Synth) -> None:
    table = only(synthesized.resources("routing", "aws_dynamodb_table"))
    assert table["name"] == naming.status_table_name(synthesized.cfg)
    assert table["hash_key"] == naming.STATUS_HASH_KEY
    assert table["ttl"] == {"attribute_name": naming.STATUS_TTL_ATTRIBUTE, "enabled": True}
    assert table["server_side_encryption"] == {"enabled": True}


@pytest.mark.parametrize(
    ("stack", "versioned"), [("state", True), ("model_sync", True), ("routing", False)]
)
def test_buckets_private_encrypted_versioned(
    synthesized: Synth, stack: str, versioned: bool
) -> None:
    bucket_names = {b["bucket"] for b in synthesized.resources(stack, "aws_s3_bucket").values()}
    assert len(bucket_names) == 1
    blocks = synthesized.resources(stack, "aws_s3_bucket_public_access_block")
    assert [
        all(
            b[k]
            for k in (
                "block_public_acls",
                "block_public_policy",
                "ignore_public_acls",
                "restrict_public_buckets",
            )
        )
        for b in blocks.values()
    ] == [True]
    encryption = only(
        synthesized.resources(stack, "aws_s3_bucket_server_side_encryption_configuration")
    )
    rule = encryption["rule"][0]["apply_server_side_encryption_by_default"]
    assert rule["sse_algorithm"] == "aws:kms"
    ownership = only(synthesized.resources(stack, "aws_s3_bucket_ownership_controls"))
    assert ownership["rule"]["object_ownership"] == "BucketOwnerEnforced"
    versioning = synthesized.resources(stack, "aws_s3_bucket_versioning")
    if versioned:
        assert only(versioning)["versioning_configuration"]["status"] == "Enabled"
    else:
        assert versioning == {}


def test_no_wildcard_actions_anywhere(synthesized: Synth) -> None:
    for name, policy in policies(synthesized).items():
        for statement in policy["Statement"]:
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            assert not [a for a in actions if "*" in a], f"{name} {statement['Sid']}"
            if statement["Resource"] == ["*"]:
                services = {a.split(":")[0] for a in actions}
                data_actions = {
                    a for a in actions
                    if a.split(":")[0] in {"s3", "sqs", "sns", "dynamodb"}
                }  # fmt: skip
                assert not data_actions, f"{name}: data actions on '*': {data_actions}"
                assert services, name


def test_runtime_role_scoped_to_its_own_resources(synthesized: Synth) -> None:
    cfg = synthesized.cfg
    for runtime in cfg.runtimes:
        stack = names.runtime_stack_id(runtime)
        queue_id = next(
            name for name, q in synthesized.resources(stack, "aws_sqs_queue").items()
            if q["name"] == naming.queue_name(cfg, runtime)
        )  # fmt: skip
        by_sid = {s["Sid"]: s for s in statements(synthesized, stack, "role-policy")}
        assert by_sid["ConsumeOwnQueue"]["Resource"] == [f"${{aws_sqs_queue.{queue_id}.arn}}"]
        assert "sqs:SendMessage" not in by_sid["ConsumeOwnQueue"]["Action"]
        assert by_sid["PublishResults"]["Resource"][0].endswith(f":{naming.output_topic_name(cfg)}")
        assert by_sid["UpdateStatusRows"]["Resource"][0].endswith(
            f":table/{naming.status_table_name(cfg)}"
        )
        assert all(
            r.endswith((cfg.buckets.models, f"{cfg.buckets.models}/*"))
            for r in by_sid["ReadModels"]["Resource"]
        )
        assert by_sid["ReadModels"]["Action"] == ["s3:GetObject", "s3:ListBucket"]
        assert by_sid["WriteOutputs"]["Resource"][0].endswith(f"{cfg.buckets.outputs}/*")
        trust = json.loads(only(synthesized.resources(stack, "aws_iam_role"))["assume_role_policy"])
        assert trust["Statement"][0]["Principal"] == {"Service": "pods.eks.amazonaws.com"}
        association = only(synthesized.resources(stack, "aws_eks_pod_identity_association"))
        assert association["service_account"] == naming.service_account_name(runtime)
        assert association["namespace"] == cfg.cluster.namespace


def test_keda_reads_only_sdq_queue_depth(synthesized: Synth) -> None:
    """Each runtime stack grants KEDA's role (cluster stack) its own queue, so applying one
    runtime stack alone leaves a runtime KEDA can scale; the cluster stack lists no queue."""
    cfg = synthesized.cfg
    assert not [n for n in synthesized.resources("cluster", "aws_iam_role_policy") if "keda" in n]
    keda_role = names.role_name(cfg, "keda-operator")
    assert keda_role in {
        r["name"] for r in synthesized.resources("cluster", "aws_iam_role").values()
    }
    for runtime in cfg.runtimes:
        stack = names.runtime_stack_id(runtime)
        [grant] = [
            p
            for p in synthesized.resources(stack, "aws_iam_role_policy").values()
            if p["role"] == keda_role
        ]
        [queue_id] = [
            name
            for name, q in synthesized.resources(stack, "aws_sqs_queue").items()
            if q["name"] == naming.queue_name(cfg, runtime)
        ]
        (statement,) = json.loads(grant["policy"])["Statement"]
        assert statement["Action"] == ["sqs:GetQueueAttributes"]
        assert statement["Resource"] == [f"${{aws_sqs_queue.{queue_id}.arn}}"]


def test_model_sync_sends_commands_only_to_tagged_cluster_nodes(synthesized: Synth) -> None:
    cfg = synthesized.cfg
    sync = [
        s
        for s in statements(synthesized, "model_sync", "lambda_policy")
        if "ssm:SendCommand" in s["Action"]
    ]
    by_resource = {s["Resource"][0].split(":", 5)[5]: s for s in sync}
    assert set(by_resource) == {"document/AWS-RunShellScript", "instance/*"}
    assert "Condition" not in by_resource["document/AWS-RunShellScript"]
    condition = by_resource["instance/*"]["Condition"]
    assert condition == {
        "StringEquals": {f"ssm:resourceTag/{naming.NODE_TAG_CLUSTER}": naming.cluster_name(cfg)}
    }
    everything = [
        a for s in statements(synthesized, "model_sync", "lambda_policy") for a in s["Action"]
    ]
    assert "s3:GetObject" not in everything


def test_model_bucket_notifies_the_model_sync_lambda(synthesized: Synth) -> None:
    notification = only(synthesized.resources("model_sync", "aws_s3_bucket_notification"))
    (target,) = notification["lambda_function"]
    assert sorted(target["events"]) == ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
    permission = only(synthesized.resources("model_sync", "aws_lambda_permission"))
    assert permission["principal"] == "s3.amazonaws.com"


def test_cluster_version_addons_and_api_auth(synthesized: Synth) -> None:
    cluster = only(synthesized.resources("cluster", "aws_eks_cluster"))
    assert cluster["version"] == synthesized.cfg.cluster.kubernetes_version
    assert cluster["access_config"]["authentication_mode"] == "API"
    addons = {a["addon_name"] for a in synthesized.resources("cluster", "aws_eks_addon").values()}
    assert addons == {"vpc-cni", "coredns", "kube-proxy", "eks-pod-identity-agent"}
    group = only(synthesized.resources("cluster", "aws_eks_node_group"))
    assert group["scaling_config"]["desired_size"] == synthesized.cfg.cluster.system_node_count


def test_karpenter_interruption_events_reach_its_queue(synthesized: Synth) -> None:
    rules = synthesized.resources("cluster", "aws_cloudwatch_event_rule")
    kinds = {json.loads(r["event_pattern"])["detail-type"][0] for r in rules.values()}
    assert kinds == {
        "AWS Health Event",
        "EC2 Spot Instance Interruption Warning",
        "EC2 Instance Rebalance Recommendation",
        "EC2 Instance State-change Notification",
    }
    queue = only(synthesized.resources("cluster", "aws_sqs_queue"))
    assert queue["sqs_managed_sse_enabled"] is True
    targets = synthesized.resources("cluster", "aws_cloudwatch_event_target")
    assert len(targets) == len(rules)


def test_network_subnets_nat_and_discovery_tags(synthesized: Synth) -> None:
    subnets = synthesized.resources("network", "aws_subnet").values()
    public = [s for s in subnets if "kubernetes.io/role/elb" in s["tags"]]
    private = [s for s in subnets if "kubernetes.io/role/internal-elb" in s["tags"]]
    assert len(public) == len(private) == synthesized.cfg.network.availability_zones
    assert all(s["cidr_block"].endswith("/19") for s in subnets)
    assert all(
        s["tags"]["karpenter.sh/discovery"] == naming.cluster_name(synthesized.cfg) for s in private
    )
    nats = synthesized.resources("network", "aws_nat_gateway")
    assert len(nats) == {"single": 1, "per_az": 3, "none": 0}[synthesized.cfg.network.nat]
    endpoint = only(synthesized.resources("network", "aws_vpc_endpoint"))
    assert endpoint["service_name"] == f"com.amazonaws.{synthesized.cfg.region}.s3"
    assert only(synthesized.resources("network", "aws_vpc"))["cidr_block"] == "10.0.0.0/16"


def test_image_repositories_are_immutable_and_scanned(synthesized: Synth) -> None:
    repos = synthesized.resources("registry", "aws_ecr_repository").values()
    cfg = synthesized.cfg
    assert sorted(r["name"] for r in repos) == sorted(
        [
            naming.queue_agent_repository_name(cfg),
            names.runtime_image_repository_name(cfg, "comfyui"),
            names.runtime_image_repository_name(cfg, "invokeai"),
            names.runtime_image_repository_name(cfg, "sdwebui"),
        ]
    )
    for repo in repos:
        assert repo["image_tag_mutability"] == "IMMUTABLE"
        assert repo["image_scanning_configuration"] == {"scan_on_push": True}
    outputs = synthesized.json("registry")["output"]
    assert {
        "queue_agent_repository_url",
        "sdwebui_repository_url",
        "comfyui_repository_url",
        "invokeai_repository_url",
    } <= set(outputs)


def test_lambda_environments_match_what_the_handlers_read(synthesized: Synth) -> None:
    from sdq_api_validator.settings import load_settings

    validator = only(synthesized.resources("routing", "aws_lambda_function"))["environment"][
        "variables"
    ]
    # What Terraform sets is what the handler's settings parse back (SDQ_RUNTIMES round trip).
    settings = load_settings(validator)
    assert [(r.name, r.type, r.model, r.dynamic_model) for r in settings.runtimes] == [
        (r.name, r.type, r.model, r.dynamic_model) for r in synthesized.cfg.runtimes
    ]
    sync = only(synthesized.resources("model_sync", "aws_lambda_function"))["environment"][
        "variables"
    ]
    assert sync == {
        "SDQ_CLUSTER_NAME": naming.cluster_name(synthesized.cfg),
        "SDQ_MODEL_BUCKET": synthesized.cfg.buckets.models,
        "SDQ_MODEL_CACHE_DIR": naming.MODEL_CACHE_HOST_PATH,
    }


# Least privilege that still works: every AWS call a service's adapter makes is allowed by its role.
ROOT = Path(__file__).resolve().parents[2]
# client attribute in the adapter → IAM service prefix
CLIENTS = {"_ddb": "dynamodb", "_sns": "sns", "_s3": "s3", "_sqs": "sqs"}
# boto operations whose IAM action is named differently from the operation
ALIASES = {
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    # A transaction's Update items are authorized by dynamodb:UpdateItem (DynamoDB developer
    # guide, "Using IAM with DynamoDB transactions"): the agent's batched `announced` marks.
    "dynamodb:TransactWriteItems": "dynamodb:UpdateItem",
    # There is no s3:HeadObject action: HEAD is authorized by s3:GetObject (the agent's warm-up).
    "s3:HeadObject": "s3:GetObject",
    # Signing makes no call; the link it makes is a GetObject with the signer's permissions.
    "s3:GeneratePresignedUrl": "s3:GetObject",
    # A multipart upload is authorized by s3:PutObject (only its abort has an action of its own).
    "s3:CreateMultipartUpload": "s3:PutObject",
    "s3:UploadPart": "s3:PutObject",
    "s3:CompleteMultipartUpload": "s3:PutObject",
}


def calls(adapter: Path) -> set[str]:
    """IAM actions of every `self.<client>.<operation>(` call in an adapter module."""
    found = set()
    for client, operation in re.findall(r"self\.(_[a-z0-9]+)\.([a-z_]+)\(", adapter.read_text()):
        if client in CLIENTS:
            action = f"{CLIENTS[client]}:{''.join(p.title() for p in operation.split('_'))}"
            found.add(ALIASES.get(action, action))
    return found


def allowed(policy: list[dict[str, Any]]) -> set[str]:
    return {
        a for s in policy for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }


def test_the_api_validator_role_allows_exactly_what_its_adapter_calls(synthesized: Synth) -> None:
    needed = calls(ROOT / "services/api_validator/src/sdq_api_validator/adapters/aws.py")
    assert {"dynamodb:PutItem", "dynamodb:DeleteItem", "sns:Publish", "s3:PutObject"} <= needed
    granted = allowed(statements(synthesized, "routing", "api-validator"))
    assert needed <= granted, needed - granted
    data = {a for a in granted if a.split(":")[0] in set(CLIENTS.values())}
    assert data == needed, data - needed


def test_each_agent_role_allows_what_the_agent_calls(synthesized: Synth) -> None:
    needed = calls(ROOT / "services/queue_agent/src/sdq_queue_agent/adapters/aws.py")
    assert {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "s3:PutObject",
        "dynamodb:UpdateItem",
    } <= needed
    for runtime in synthesized.cfg.runtimes:
        granted = allowed(statements(synthesized, names.runtime_stack_id(runtime), "role-policy"))
        assert needed <= granted, (runtime.name, needed - granted)


def test_buckets_deny_requests_without_tls(synthesized: Synth) -> None:
    for stack in ("state", "routing", "model_sync"):
        [bucket_id] = synthesized.resources(stack, "aws_s3_bucket")
        policy = only(synthesized.resources(stack, "aws_s3_bucket_policy"))
        assert policy["bucket"] == f"${{aws_s3_bucket.{bucket_id}.id}}"
        [statement] = json.loads(policy["policy"])["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Principal"] == "*"
        assert statement["Action"] == "s3:*"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        arn = f"${{aws_s3_bucket.{bucket_id}.arn}}"
        assert statement["Resource"] == [arn, f"{arn}/*"]
    # The state bucket's policy keeps its state address (no replacement on existing deploys).
    assert list(synthesized.resources("state", "aws_s3_bucket_policy")) == ["tls-only"]


def test_buckets_abort_incomplete_multipart_uploads(synthesized: Synth) -> None:
    """The agent streams large outputs as multipart uploads; one killed mid-upload leaves parts
    that are billed until a lifecycle rule drops them."""
    for stack in ("state", "routing", "model_sync"):
        [bucket_id] = synthesized.resources(stack, "aws_s3_bucket")
        lifecycle = only(synthesized.resources(stack, "aws_s3_bucket_lifecycle_configuration"))
        assert lifecycle["bucket"] == f"${{aws_s3_bucket.{bucket_id}.id}}"
        [rule] = lifecycle["rule"]
        assert rule["status"] == "Enabled"
        assert rule["filter"] == [{"prefix": ""}]
        assert rule["abort_incomplete_multipart_upload"] == [{"days_after_initiation": 1}]
        assert "expiration" not in rule  # outputs and models are never deleted by it


def test_eks_endpoint_upgrade_policy_addons_and_log_retention(synthesized: Synth) -> None:
    cluster = only(synthesized.resources("cluster", "aws_eks_cluster"))
    vpc = cluster["vpc_config"]
    assert vpc["endpoint_public_access"] is True
    assert vpc["public_access_cidrs"] == list(synthesized.cfg.cluster.public_access_cidrs)
    assert cluster["upgrade_policy"] == {"support_type": "STANDARD"}
    for addon in synthesized.resources("cluster", "aws_eks_addon").values():
        assert addon["resolve_conflicts_on_create"] == "OVERWRITE"
        assert addon["resolve_conflicts_on_update"] == "OVERWRITE"
    groups = {
        g["name"]: (name, g)
        for name, g in synthesized.resources("cluster", "aws_cloudwatch_log_group").items()
    }
    name, group = groups[f"/aws/eks/{cluster['name']}/cluster"]
    assert group["retention_in_days"] == 30
    assert f"aws_cloudwatch_log_group.{name}" in cluster["depends_on"]


def test_api_gateway_errors_are_the_documented_json(synthesized: Synth) -> None:
    responses = {
        r["response_type"]: r
        for r in synthesized.resources("routing", "aws_api_gateway_gateway_response").values()
    }
    expected = {
        "THROTTLED": ("429", "too_many_requests"),
        "INVALID_API_KEY": ("403", "invalid_api_key"),
        "MISSING_AUTHENTICATION_TOKEN": ("404", "not_found"),
        "REQUEST_TOO_LARGE": ("413", "body_too_large"),
        "DEFAULT_4XX": (None, "bad_request"),
        "DEFAULT_5XX": (None, "gateway_error"),
    }
    for response_type, (status, code) in expected.items():
        response = responses[response_type]
        assert response.get("status_code") == status, response_type
        template = response["response_templates"]["application/json"]
        # API Gateway substitutes its own message as a quoted JSON string.
        body = json.loads(template.replace("$context.error.messageString", '"Forbidden"'))
        assert set(body) == {"error"}
        assert body["error"]["code"] == code
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        assert response["response_parameters"]["gatewayresponse.header.Content-Type"] == (
            "'application/json'"
        )
    throttled = responses["THROTTLED"]["response_parameters"]
    assert throttled["gatewayresponse.header.Retry-After"] == "'1'"
    deployment = only(synthesized.resources("routing", "aws_api_gateway_deployment"))
    assert "errors" in deployment["triggers"]
    assert all(
        any(
            ref.startswith(f"aws_api_gateway_gateway_response.{name}")
            for ref in deployment["depends_on"]
        )
        for name in synthesized.resources("routing", "aws_api_gateway_gateway_response")
    )


def test_api_gateway_log_groups_have_retention_and_the_account_role_is_opted_in(
    synthesized: Synth,
) -> None:
    assert synthesized.cfg.api.account_logging == "sdq"  # config.yaml opts in explicitly
    groups = [g for g in synthesized.resources("routing", "aws_cloudwatch_log_group").values()]
    names_ = sorted(g["name"] for g in groups)
    assert any(n.startswith("API-Gateway-Execution-Logs_") and n.endswith("/live") for n in names_)
    assert any(n.startswith("/aws/apigateway/") for n in names_)
    assert all(g["retention_in_days"] == 30 for g in groups)
    assert len(synthesized.resources("routing", "aws_api_gateway_account")) == 1
