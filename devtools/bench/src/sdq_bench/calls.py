"""AWS calls as the benchmark's proxy sees them: which service and operation a request is, how
many billing units it costs at list prices, and the verdict on a scenario.

Pure functions (no I/O): the proxy classifies every request it forwards, the benchmark turns the
counts into calls per task and a request cost per 1,000 images.

How botocore sends each service (checked against requests botocore itself builds, see
devtools/bench/tests/test_calls.py):

- the service is the SigV4 credential scope (``Authorization: AWS4-HMAC-SHA256
  Credential=<key>/<date>/<region>/<service>/aws4_request``);
- JSON protocols (DynamoDB, and SQS since botocore 1.31.x) name the operation in
  ``X-Amz-Target: <prefix>.<Operation>``;
- query protocols (SNS, and SQS on older botocore) send ``Action=<Operation>`` in the
  form-encoded body (or the query string);
- S3 (REST-XML) has no operation name on the wire: it is the method, whether the path names an
  object (``/bucket/key``) or a bucket, and the sub-resource in the query string.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

# ----------------------------------------------------------------------------- prices

# List prices of the requests the agent makes, one table. Region: us-west-2 (US West, Oregon),
# the benchmark's region, whose request prices for these four services equal us-east-1's. Read
# 2026-11-26 from published us-east-1 figures (devtools/bench/README.md says which); free tiers
# are ignored (a fleet exceeds them).
PRICE_REGION = "us-west-2"
PRICES_READ_ON = "2026-11-26"
PRICES_USD: dict[str, float] = {
    # Amazon SQS, standard queue: per request; each 64 KiB chunk of a payload is one request.
    "sqs_request": 0.40 / 1_000_000,
    # Amazon SNS, standard topic: per publish request (64 KiB chunks); delivery to SQS is free.
    "sns_request": 0.50 / 1_000_000,
    # DynamoDB on-demand, Standard table class: per write request unit (1 KiB item write; a
    # transactional write takes 2) and per read request unit (4 KiB strongly consistent read;
    # eventually consistent 1/2, transactional 2).
    "ddb_wru": 0.625 / 1_000_000,
    "ddb_rru": 0.125 / 1_000_000,
    # Amazon S3 Standard: PUT, COPY, POST, LIST requests; GET, HEAD (and other) requests.
    # DELETE and abort (cancel) requests are free.
    "s3_tier1": 0.005 / 1_000,
    "s3_tier2": 0.0004 / 1_000,
}

CHUNK = 64 * 1024
S3_FREE = frozenset({"DeleteObject", "DeleteObjects", "AbortMultipartUpload", "DeleteBucket"})
S3_TIER2_PREFIXES = ("Get", "Head")


@dataclass(frozen=True)
class Call:
    service: str  # "sqs", "sns", "dynamodb", "s3", or "other"
    operation: str
    # billing units and their price key (None: not billed here)
    units: float = 0.0
    price_key: str | None = None

    @property
    def name(self) -> str:
        return f"{self.service}:{self.operation}"

    @property
    def cost_usd(self) -> float:
        return self.units * PRICES_USD[self.price_key] if self.price_key else 0.0


_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/,\s]+/([^/,\s]+)/aws4_request")


def signing_service(headers: Mapping[str, str]) -> str | None:
    """The service a SigV4-signed request is for (its credential scope), else None."""
    auth = _header(headers, "authorization")
    match = _SCOPE.search(auth)
    return match.group(1) if match else None


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""


def classify(  # noqa: PLR0917 - the parts of one HTTP request
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    response_len: int = 0,
) -> Call:
    """The service, operation and billing units of one HTTP request to an AWS endpoint."""
    service = signing_service(headers) or "other"
    target = _header(headers, "x-amz-target")
    if target:
        operation = target.rsplit(".", 1)[-1]
    elif service == "s3":
        operation = s3_operation(method, path, query, headers)
    else:
        operation = query_action(query, body, headers) or f"{method} {path}"
    units, key = billing(service, operation, body, response_len)
    return Call(service, operation, units, key)


def query_action(query: str, body: bytes, headers: Mapping[str, str]) -> str | None:
    """``Action=`` of a query-protocol request (form body first, then the URL)."""
    if "x-www-form-urlencoded" in _header(headers, "content-type") and body:
        action = parse_qs(body.decode("utf-8", "replace")).get("Action")
        if action:
            return action[0]
    action = parse_qs(query).get("Action")
    return action[0] if action else None


def s3_operation(method: str, path: str, query: str, headers: Mapping[str, str]) -> str:
    """The S3 REST operation of a path-style request (``/bucket`` or ``/bucket/key``)."""
    params = {name for name, _, _ in (p.partition("=") for p in query.split("&")) if name}
    parts = unquote(path).lstrip("/").split("/", 1)
    if len(parts) == 2 and parts[1]:
        return _s3_object_op(method, params, headers)
    if not parts[0]:
        return "ListBuckets" if method == "GET" else f"{method}Service"
    return _s3_bucket_op(method, params)


def _s3_put_object_op(params: set[str], headers: Mapping[str, str]) -> str:
    copy = bool(_header(headers, "x-amz-copy-source"))
    if "partNumber" in params and "uploadId" in params:
        return "UploadPartCopy" if copy else "UploadPart"
    for sub, op in (("tagging", "PutObjectTagging"), ("acl", "PutObjectAcl")):
        if sub in params:
            return op
    return "CopyObject" if copy else "PutObject"


def _s3_object_op(method: str, params: set[str], headers: Mapping[str, str]) -> str:
    if method == "PUT":
        return _s3_put_object_op(params, headers)
    if method == "POST":
        if "uploads" in params:
            return "CreateMultipartUpload"
        if "uploadId" in params:
            return "CompleteMultipartUpload"
        return "RestoreObject" if "restore" in params else "PostObject"
    if method == "GET":
        if "uploadId" in params:
            return "ListParts"
        for sub, op in (("tagging", "GetObjectTagging"), ("acl", "GetObjectAcl")):
            if sub in params:
                return op
        return "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in params else "DeleteObject"
    return f"{method}Object"


def _s3_bucket_op(method: str, params: set[str]) -> str:
    if method == "GET":
        if "list-type" in params:
            return "ListObjectsV2"
        for sub, op in (
            ("uploads", "ListMultipartUploads"),
            ("versions", "ListObjectVersions"),
            ("location", "GetBucketLocation"),
        ):
            if sub in params:
                return op
        sub_resource = sorted(params)
        return f"GetBucket[{sub_resource[0]}]" if sub_resource else "ListObjects"
    if method == "HEAD":
        return "HeadBucket"
    if method == "POST" and "delete" in params:
        return "DeleteObjects"
    if method == "PUT":
        return f"PutBucket[{sorted(params)[0]}]" if params else "CreateBucket"
    if method == "DELETE":
        return "DeleteBucket" if not params else f"DeleteBucket[{sorted(params)[0]}]"
    return f"{method}Bucket"


def billing(
    service: str, operation: str, body: bytes, response_len: int = 0
) -> tuple[float, str | None]:
    """(billing units, price key) of one call at list prices.

    Assumptions, stated once: status rows are under 1 KiB, so an item write is 1 WRU (2 in a
    transaction) and a read 1 RRU (½ eventually consistent, 2 in a transaction); Query/Scan are
    billed their minimum; SQS/SNS payloads count in 64 KiB chunks of the larger of request and
    response.
    """
    if service == "sqs":
        return max(1, math.ceil(max(len(body), response_len) / CHUNK)), "sqs_request"
    if service == "sns":
        if operation in ("Publish", "PublishBatch"):
            return max(1, math.ceil(len(body) / CHUNK)), "sns_request"
        return 1, "sns_request"
    if service == "dynamodb":
        return _dynamodb_units(operation, body)
    if service == "s3":
        if operation in S3_FREE:
            return 0, None
        if operation.startswith(S3_TIER2_PREFIXES):
            return 1, "s3_tier2"
        return 1, "s3_tier1"
    return 0, None


_DDB_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
_DDB_READS = frozenset({"GetItem", "Query", "Scan"})


def _dynamodb_units(operation: str, body: bytes) -> tuple[float, str | None]:
    if operation in _DDB_WRITES:
        return 1, "ddb_wru"
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        request = {}
    if not isinstance(request, dict):
        request = {}
    if operation == "TransactWriteItems":
        return 2 * len(request.get("TransactItems", [])), "ddb_wru"
    if operation == "BatchWriteItem":
        items = request.get("RequestItems", {})
        return sum(len(v) for v in items.values()), "ddb_wru"
    if operation == "TransactGetItems":
        return 2 * len(request.get("TransactItems", [])), "ddb_rru"
    if operation == "BatchGetItem":
        tables = request.get("RequestItems", {}).values()
        return sum(
            len(t.get("Keys", [])) * (1 if t.get("ConsistentRead") else 0.5) for t in tables
        ), "ddb_rru"
    if operation in _DDB_READS:
        return (1 if request.get("ConsistentRead") else 0.5), "ddb_rru"
    return 0, None  # control plane (DescribeTable, ...): not a request-unit charge


def received_messages(call: Call, response: bytes) -> int | None:
    """How many messages a ReceiveMessage answer carried (JSON or query protocol), else None."""
    if call.name != "sqs:ReceiveMessage":
        return None
    if response.lstrip().startswith(b"{"):
        try:
            data = json.loads(response)
        except ValueError:
            return 0
        return len(data.get("Messages", [])) if isinstance(data, dict) else 0
    return response.count(b"<Message>")


# ----------------------------------------------------------------------------- per task


def cost_per_1000(counts: Mapping[str, tuple[int, float, str | None]], tasks: int) -> float:
    """USD of AWS requests per 1,000 tasks from ``{call name: (calls, units, price key)}``."""
    if tasks <= 0:
        return float("nan")
    total = sum(units * PRICES_USD[key] for _, units, key in counts.values() if key)
    return total / tasks * 1000


def calls_by_service(counts: Mapping[str, tuple[int, float, str | None]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, (calls, _, _) in counts.items():
        service = name.split(":", 1)[0]
        out[service] = out.get(service, 0) + calls
    return dict(sorted(out.items()))


# ----------------------------------------------------------------------------- verdict

# The goals (issue 18): duty cycle by generation time, and AWS calls per task.
CALLS_PER_TASK_GOAL = 6.0
# Above this share of its core(s), the AWS emulator side (moto + proxy + runtime emulator +
# the benchmark's feeder) is saturated: the agent waits on it, so the run measures the emulator.
EMULATOR_SATURATED = 0.85
# Above this share of the agent's core taken by processes outside the benchmark, the agent
# competed for its CPU: the numbers are noisy.
FOREIGN_NOISY = 0.25


def duty_goal(gen_s: float) -> float | None:
    if gen_s >= 0.5:
        return 0.99
    if gen_s >= 0.1:
        return 0.95
    return None


@dataclass(frozen=True)
class Verdict:
    bottleneck: str  # "agent", "emulator", "machine"
    meets_goals: bool
    line: str


def verdict(
    *,
    gen_s: float,
    duty_cycle: float,
    calls_per_task: float,
    emulator_share: float,
    foreign_share: float,
    starved_receives: int,
    foreign_scope: str = "the agent's core",
) -> Verdict:
    """Who limited the run, and whether the issue's goals are met, in one line."""
    goal = duty_goal(gen_s)
    checks = []
    ok = True
    duty_met = goal is None or duty_cycle >= goal
    if goal is not None:
        passed = duty_met
        ok &= passed
        checks.append(f"duty {duty_cycle:.3f} {'>=' if passed else '<'} {goal}")
    passed = calls_per_task <= CALLS_PER_TASK_GOAL
    ok &= passed
    checks.append(
        f"{calls_per_task:.1f} calls/task {'<=' if passed else '>'} {CALLS_PER_TASK_GOAL:g}"
    )
    goals = ("goals met: " if ok else "goals MISSED: ") + ", ".join(checks)
    if emulator_share >= EMULATOR_SATURATED and duty_met:
        return Verdict(
            "emulator",
            ok,
            f"EMULATOR-BUSY (emulator side {emulator_share:.0%} of its core): the agent kept "
            f"this duty cycle even so, a lower bound of its own; {goals}",
        )
    if emulator_share >= EMULATOR_SATURATED:
        return Verdict(
            "emulator",
            ok,
            f"EMULATOR-BOUND (emulator side {emulator_share:.0%} of its core): the duty cycle "
            f"measures moto, not the agent; {goals}",
        )
    if starved_receives:
        return Verdict(
            "emulator",
            ok,
            f"FEED-BOUND ({starved_receives} empty receives while tasks remained): the agent "
            f"waited for messages; {goals}",
        )
    if foreign_share >= FOREIGN_NOISY:
        return Verdict(
            "machine",
            ok,
            f"NOISY (other processes took {foreign_share:.0%} of {foreign_scope}); {goals}",
        )
    return Verdict("agent", ok, f"agent-bound; {goals}")
