"""The test fixture's moto server (``ThreadedMotoServer``, DynamoDB isolated by the plugin) keeps
every UpdateItem while refused transactions run beside them.

Without ``isolate_dynamodb`` moto's ``transact_write_items`` puts back deep copies of the tables
it touched when a condition fails, undoing writes other request threads made meanwhile, and its
deep copy races the other threads' writes (``RuntimeError: dictionary changed size during
iteration``, a 500). Measured on an unpatched ``ThreadedMotoServer`` (moto 5.2.5, this exact
shape, 10 runs): every run failed this test twice over, 1 to 10 of the 240 updates lost and 3 to
23 transactions answered 500. Isolated: 0 lost, 0 errors in every run (about 7 s a run). Bounded:
240 updates, and the transactions sent while they run.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sdq_moto import isolate_dynamodb
from sdq_moto.isolation import is_dynamodb_isolated

pytestmark = pytest.mark.integration

TABLE = "isolation"
FILLER = 200  # rows the refused transactions' table snapshots copy (the size of the bench's)
UPDATES = 240
UPDATERS = 8
TRANSACTORS = 4


def lost_writes(endpoint_url: str, region: str) -> tuple[list[str], int]:
    """Rows whose UpdateItem is missing afterwards, and how many transactions were refused."""
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(max_pool_connections=UPDATERS + TRANSACTORS, retries={"max_attempts": 1}),
    )
    client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for start in range(0, FILLER, 25):
        client.batch_write_item(
            RequestItems={
                TABLE: [
                    {"PutRequest": {"Item": {"pk": {"S": f"filler-{i}"}, "n": {"N": "0"}}}}
                    for i in range(start, min(start + 25, FILLER))
                ]
            }
        )
    client.put_item(TableName=TABLE, Item={"pk": {"S": "guard"}})
    updating = threading.Event()
    updating.set()
    refused = [0] * TRANSACTORS

    def update(worker: int) -> None:
        for i in range(worker, UPDATES, UPDATERS):
            client.update_item(
                TableName=TABLE,
                Key={"pk": {"S": f"row-{i}"}},
                UpdateExpression="SET v = :v",
                ExpressionAttributeValues={":v": {"N": str(i)}},
            )

    def transact(worker: int) -> None:
        # An Update applied first, then a condition that fails: moto rolls the table back.
        while updating.is_set():
            try:
                client.transact_write_items(
                    TransactItems=[
                        {
                            "Update": {
                                "TableName": TABLE,
                                "Key": {"pk": {"S": f"filler-{worker}"}},
                                "UpdateExpression": "SET n = n + :one",
                                "ExpressionAttributeValues": {":one": {"N": "1"}},
                            }
                        },
                        {
                            "ConditionCheck": {
                                "TableName": TABLE,
                                "Key": {"pk": {"S": "guard"}},
                                "ConditionExpression": "attribute_not_exists(pk)",
                            }
                        },
                    ]
                )
            except ClientError as error:
                if error.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                refused[worker] += 1

    with ThreadPoolExecutor(TRANSACTORS) as transactors:
        running = [transactors.submit(transact, w) for w in range(TRANSACTORS)]
        try:
            with ThreadPoolExecutor(UPDATERS) as updaters:
                for done in [updaters.submit(update, w) for w in range(UPDATERS)]:
                    done.result(timeout=60)
        finally:
            updating.clear()
        for future in running:
            future.result(timeout=60)

    rows: dict[str, str] = {}
    pages = client.get_paginator("scan").paginate(TableName=TABLE, ConsistentRead=True)
    for page in pages:
        for item in page["Items"]:
            if "v" in item:
                rows[item["pk"]["S"]] = item["v"]["N"]
    lost = [f"row-{i}" for i in range(UPDATES) if rows.get(f"row-{i}") != str(i)]
    return lost, sum(refused)


def test_refused_transactions_undo_no_other_write(aws) -> None:
    assert is_dynamodb_isolated() or not aws.emulated
    lost, refused = lost_writes(aws.endpoint_url, aws.region)
    assert refused > 0  # the transactions ran beside the updates
    assert lost == []


@pytest.mark.unit
def test_isolating_twice_wraps_once() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    isolate_dynamodb()
    call = DomainDispatcherApplication.__call__
    isolate_dynamodb()
    assert DomainDispatcherApplication.__call__ is call
    assert is_dynamodb_isolated()
