from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

import pytest
from structlog.testing import capture_logs

from sdq_model_sync.domain.commands import NodeCommand, NodeSyncSpec, node_command
from sdq_model_sync.domain.events import ChangeKind, ObjectChange
from sdq_model_sync.domain.ports import NodeResult
from sdq_model_sync.domain.sync import ModelSync, SyncFailedError, SyncStatus
from sdq_model_sync.errors import NodesNotManaged, TransientSyncError

pytestmark = pytest.mark.unit

SPEC = NodeSyncSpec(
    script_path="/opt/sdq/sdq-model-sync.sh",
    bucket="models",
    prefix="",
    cache_dir="/mnt/k8s-disks/0/sdq-models",
    region="us-west-2",
    execution_timeout_seconds=3600,
    delivery_timeout_seconds=600,
)


@dataclass
class FakeNodes:
    ids: tuple[str, ...] = ()
    error: Exception | None = None

    def gpu_nodes(self) -> tuple[str, ...]:
        if self.error:
            raise self.error
        return self.ids


@dataclass
class FakeSender:
    unmanaged: frozenset[str] = frozenset()
    fail: bool = False
    sent: list[tuple[tuple[str, ...], NodeCommand]] = field(default_factory=list)
    attempts: int = 0

    def send(self, instance_ids: tuple[str, ...], command: NodeCommand) -> str:
        self.attempts += 1
        if self.fail:
            raise TransientSyncError("throttled")
        if self.unmanaged & set(instance_ids):
            raise NodesNotManaged(instance_ids, "InvalidInstanceId")
        self.sent.append((instance_ids, command))
        return f"cmd-{len(self.sent)}"

    def results(self, command_id: str) -> tuple[NodeResult, ...]:
        index = int(command_id.split("-")[1]) - 1
        return tuple(NodeResult(i, "Pending") for i in self.sent[index][0])


def record(key: str, event: str = "ObjectCreated:Put", bucket: str = "models") -> dict[str, Any]:
    return {
        "eventSource": "aws:s3",
        "eventName": event,
        "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
    }


def sqs(*batches: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {"eventSource": "aws:sqs", "messageId": f"m{i}", "body": json.dumps({"Records": b})}
            for i, b in enumerate(batches)
        ]
    }


def test_many_records_and_messages_make_one_sync_per_chunk() -> None:
    sender = FakeSender()
    sync = ModelSync(SPEC, FakeNodes(("i-1", "i-2")), sender)
    outcome = sync.run(
        sqs([record("a.pt"), record("b.pt")], [record("c.pt", "ObjectRemoved:Delete")])
    )
    assert outcome.status is SyncStatus.SENT
    assert len(sender.sent) == 1
    targets, command = sender.sent[0]
    assert targets == ("i-1", "i-2")
    assert command.comment == "sdq model sync: +2 -1 in s3://models/"
    assert outcome.command_ids == ("cmd-1",)
    assert [r.status for r in outcome.node_results] == ["Pending", "Pending"]


def test_targets_are_sent_in_chunks_of_fifty() -> None:
    sender = FakeSender()
    ids = tuple(f"i-{n:03d}" for n in range(120))
    outcome = ModelSync(SPEC, FakeNodes(ids), sender).run({"Records": [record("a.pt")]})
    assert [len(targets) for targets, _ in sender.sent] == [50, 50, 20]
    assert outcome.targeted == ids
    assert outcome.command_ids == ("cmd-1", "cmd-2", "cmd-3")


def test_unmanaged_nodes_are_narrowed_out_not_fatal() -> None:
    sender = FakeSender(unmanaged=frozenset({"i-3"}))
    ids = ("i-1", "i-2", "i-3", "i-4")
    outcome = ModelSync(SPEC, FakeNodes(ids), sender).run({"Records": [record("a.pt")]})
    assert outcome.status is SyncStatus.SENT
    assert outcome.not_managed == ("i-3",)
    assert sorted(outcome.targeted) == ["i-1", "i-2", "i-4"]
    assert sender.attempts <= 2 * len(ids) - 1


def test_no_nodes_is_a_logged_noop() -> None:
    sender = FakeSender()
    with capture_logs() as logs:
        outcome = ModelSync(SPEC, FakeNodes(()), sender).run({"Records": [record("a.pt")]})
    assert outcome.status is SyncStatus.NO_NODES
    assert sender.sent == []
    assert any(entry["event"] == "model_sync_no_nodes" for entry in logs)
    done = next(entry for entry in logs if entry["event"] == "model_sync_done")
    assert (done["bucket"], done["keys"], done["command_ids"]) == ("models", 1, [])


def test_irrelevant_events_do_not_look_for_nodes() -> None:
    nodes = FakeNodes(error=AssertionError("must not be called"))
    outcome = ModelSync(SPEC, nodes, FakeSender()).run(
        {"Records": [record("a.pt", bucket="other-bucket")]}
    )
    assert outcome.status is SyncStatus.IGNORED


def test_sqs_failure_reports_only_messages_that_carried_changes() -> None:
    event = sqs([record("a.pt")], [record("b.pt", bucket="other-bucket")], [record("c.pt")])
    event["Records"].append({"eventSource": "aws:sqs", "messageId": "bad", "body": "{"})
    sync = ModelSync(SPEC, FakeNodes(("i-1",)), FakeSender(fail=True))
    assert sync.handle(event) == {
        "batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m2"}]
    }
    # Success: nothing to retry; the malformed message is reported (logged) and dropped.
    ok = ModelSync(SPEC, FakeNodes(("i-1",)), FakeSender())
    assert ok.handle(event) == {"batchItemFailures": []}


def test_direct_s3_failure_raises_for_lambda_retry() -> None:
    sync = ModelSync(SPEC, FakeNodes(error=TransientSyncError("ec2 down")), FakeSender())
    with pytest.raises(SyncFailedError, match="ec2 down"):
        sync.handle({"Records": [record("a.pt")]})
    summary = ModelSync(SPEC, FakeNodes(("i-1",)), FakeSender()).handle(
        {"Records": [record("a b.pt")]}
    )
    assert summary["status"] == "sent"
    assert summary["keys"] == ["a b.pt"]
    assert summary["command_ids"] == ["cmd-1"]


def test_node_command_runs_the_script_with_quoted_arguments() -> None:
    spec = NodeSyncSpec(
        script_path="/opt/sdq/sdq-model-sync.sh",
        bucket="models",
        prefix="team a/models",
        cache_dir="/mnt/k8s-disks/0/sdq-models",
        region=None,
        execution_timeout_seconds=1200,
        delivery_timeout_seconds=300,
    )
    change = ObjectChange("models", "team a/models/x.pt", ChangeKind.CREATED, "ObjectCreated:Put")
    command = node_command(spec, [change] * 200)
    [line] = command.commands
    assert shlex.split(line) == [
        "/opt/sdq/sdq-model-sync.sh",
        "--bucket",
        "models",
        "--dest",
        "/mnt/k8s-disks/0/sdq-models",
        "--prefix",
        "team a/models/",
    ]
    assert command.comment == "sdq model sync: +200 -0 in s3://models/team a/models/"
    assert len(command.comment) <= 100
    assert (command.execution_timeout_seconds, command.delivery_timeout_seconds) == (1200, 300)


def test_spans_cover_event_handling_node_lookup_and_each_ssm_send(spans) -> None:
    ids = tuple(f"i-{n}" for n in range(60))
    ModelSync(SPEC, FakeNodes(ids), FakeSender()).run({"Records": [record("a.pt")]})
    finished = spans.get_finished_spans()
    root = next(s for s in finished if s.name == "model_sync.handle")
    assert root.attributes["sdq.targeted"] == 60
    children = [s for s in finished if s.parent and s.parent.span_id == root.context.span_id]
    assert [s.name for s in children] == [
        "ec2.find_gpu_nodes",
        "ssm.send_command",
        "ssm.send_command",
    ]
    assert [s.attributes["sdq.instances"] for s in children[1:]] == [50, 10]
    assert {s.context.trace_id for s in finished} == {root.context.trace_id}
