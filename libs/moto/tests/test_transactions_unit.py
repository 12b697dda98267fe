"""``item_snapshot_transactions`` keeps moto's transaction semantics: the same transactions give
the same table contents and the same errors (cancellation reasons included) as moto's own
whole-table rollback, in moto in-process (no server: one thread)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb import models

from sdq_moto.transactions import item_snapshot_transactions

pytestmark = pytest.mark.unit

REGION = "us-west-2"


@pytest.fixture(autouse=True)
def _patched(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    item_snapshot_transactions()


def moto_own() -> Any:
    """moto's transact_write_items as shipped (whole-table copies)."""
    return models.DynamoDBBackend.transact_write_items.__wrapped__  # type: ignore[attr-defined]


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def setup_tables(ddb: Any) -> None:
    ddb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.create_table(
        TableName="r",
        KeySchema=[
            {"AttributeName": "h", "KeyType": "HASH"},
            {"AttributeName": "k", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "h", "AttributeType": "S"},
            {"AttributeName": "k", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for i in range(5):
        ddb.put_item(TableName="t", Item={"pk": s(f"r{i}"), "n": n(i), "l": {"L": [s("x")]}})
        ddb.put_item(TableName="r", Item={"h": s("h1"), "k": s(f"k{i}"), "n": n(i)})


def update(key: dict[str, Any], table: str = "t", condition: str | None = None) -> dict:
    op: dict[str, Any] = {
        "TableName": table,
        "Key": key,
        "UpdateExpression": "SET n = n + :one, m = :one",
        "ExpressionAttributeValues": {":one": n(1)},
    }
    if condition:
        op["ConditionExpression"] = condition
    return {"Update": op}


def put(item: dict[str, Any], table: str = "t") -> dict:
    return {"Put": {"TableName": table, "Item": item}}


def delete(key: dict[str, Any], table: str = "t") -> dict:
    return {"Delete": {"TableName": table, "Key": key}}


def check_absent(key: dict[str, Any], table: str = "t") -> dict:
    return {
        "ConditionCheck": {
            "TableName": table,
            "Key": key,
            "ConditionExpression": "attribute_not_exists(n)",
        }
    }


FAILS_LAST = [
    update({"pk": s("r0")}),  # applied by moto before the condition below fails
    put({"pk": s("r9"), "n": n(9)}),
    delete({"pk": s("r1")}),
    update({"pk": s("new")}),
    check_absent({"pk": s("r3")}),
]
FAILS_IN_THE_MIDDLE = [
    update({"pk": s("r0")}),
    update({"pk": s("r3")}, condition="n = :one"),  # r3 has n = 3
    put({"pk": s("r8"), "n": n(8)}),
    delete({"pk": s("r2")}),
]
SUCCEEDS = [
    update({"pk": s("r0")}),
    put({"pk": s("r7"), "n": n(7)}),
    delete({"pk": s("r4")}),
    update({"h": s("h1"), "k": s("k1")}, table="r"),
    put({"h": s("h2"), "k": s("k0"), "n": n(0)}, table="r"),
]
RANGE_TABLE_FAILS = [
    put({"h": s("h2"), "k": s("k9"), "n": n(9)}, table="r"),
    put({"h": s("h1"), "k": s("k9"), "n": n(9)}, table="r"),
    update({"h": s("h1"), "k": s("k1")}, table="r"),
    delete({"h": s("h1"), "k": s("k2")}, table="r"),
    update({"pk": s("r0")}),
    check_absent({"h": s("h1"), "k": s("k3")}, table="r"),
]
SAME_ITEM_TWICE = [update({"pk": s("r0")}), put({"pk": s("r5")}), update({"pk": s("r0")})]
MISSING_TABLE = [update({"pk": s("r0")}), update({"pk": s("r1")}, table="nope")]
TWO_OPERATIONS_IN_ONE = [
    update({"pk": s("r0")}),
    {**put({"pk": s("r6")}), **delete({"pk": s("r1")})},
]
CASES = {
    "fails_last": FAILS_LAST,
    "fails_in_the_middle": FAILS_IN_THE_MIDDLE,
    "succeeds": SUCCEEDS,
    "range_table_fails": RANGE_TABLE_FAILS,
    "same_item_twice": SAME_ITEM_TWICE,
    "missing_table": MISSING_TABLE,
}


def contents(ddb: Any) -> dict[str, list[dict]]:
    def key(item: dict) -> str:
        return repr(sorted(item.items()))

    return {
        table: sorted(ddb.scan(TableName=table, ConsistentRead=True)["Items"], key=key)
        for table in ("t", "r")
    }


def outcome(items: list[dict]) -> tuple[dict[str, list[dict]], Any]:
    """Table contents after the transaction, and its error (code, message, reasons) if any."""
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        setup_tables(ddb)
        error: Any = None
        try:
            ddb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            error = (
                exc.response["Error"]["Code"],
                exc.response["Error"]["Message"],
                exc.response.get("CancellationReasons"),
            )
        return contents(ddb), error


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_contents_and_errors_as_moto(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ours = outcome(CASES[name])
    monkeypatch.setattr(models.DynamoDBBackend, "transact_write_items", moto_own())
    assert outcome(CASES[name]) == ours


def test_a_failed_transaction_rolls_back_every_item() -> None:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        setup_tables(ddb)
        before = contents(ddb)
        backend = models.dynamodb_backends["123456789012"][REGION]
        table = backend.tables["t"]
        for items in (FAILS_LAST, FAILS_IN_THE_MIDDLE, RANGE_TABLE_FAILS, SAME_ITEM_TWICE):
            with pytest.raises(ClientError):
                ddb.transact_write_items(TransactItems=items)
            assert contents(ddb) == before
        assert backend.tables["t"] is table  # rolled back by item, not by a copy of the table


def test_a_successful_transaction_applies_every_item() -> None:
    _, error = outcome(SUCCEEDS)
    assert error is None
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        setup_tables(ddb)
        ddb.transact_write_items(TransactItems=SUCCEEDS)
        t = {i["pk"]["S"]: i for i in ddb.scan(TableName="t")["Items"]}
        r = {(i["h"]["S"], i["k"]["S"]): i for i in ddb.scan(TableName="r")["Items"]}
    assert t["r0"]["n"] == n(1) and t["r0"]["m"] == n(1)
    assert t["r7"]["n"] == n(7)
    assert "r4" not in t
    assert r[("h1", "k1")]["n"] == n(2)
    assert ("h2", "k0") in r


def test_two_operations_in_one_item_apply_nothing() -> None:
    """moto raises before its rollback there (the first Update stays); DynamoDB and the item
    snapshot apply nothing."""
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        setup_tables(ddb)
        before = contents(ddb)
        with pytest.raises(ClientError):
            ddb.transact_write_items(TransactItems=TWO_OPERATIONS_IN_ONE)
        assert contents(ddb) == before


def test_patching_twice_wraps_once() -> None:
    wrapped = models.DynamoDBBackend.transact_write_items
    item_snapshot_transactions()
    assert models.DynamoDBBackend.transact_write_items is wrapped
