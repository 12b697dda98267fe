"""``cache_request_lookups`` gives moto's answers: the same backend per host, the same method
names per class, the same update-expression trees, and a kept tree is never changed by use."""

from __future__ import annotations

import copy
import importlib
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import responses
from moto.dynamodb.parsing import expressions
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from sdq_moto.lookups import cache_request_lookups

pytestmark = pytest.mark.unit

UpdateExpressionParser = expressions.UpdateExpressionParser  # type: ignore[attr-defined]

HOSTS = [
    None,
    "moto_api",
    "sqs",
    "dynamodb.us-west-2.amazonaws.com",
    "sqs.us-west-2.amazonaws.com",
    "sns.us-west-2.amazonaws.com",
    "s3.us-west-2.amazonaws.com",
    "bucket.s3.us-west-2.amazonaws.com",
    "ssm.us-west-2.amazonaws.com",
    "nothing.example",
]
EXPRESSIONS = [
    "SET #n = if_not_exists(#n, :zero) + :one, #s = :s REMOVE #gone",
    "SET l = list_append(l, :more)",
    "ADD c :one",
]


@pytest.fixture(autouse=True)
def _cached() -> None:
    cache_request_lookups()


def test_same_backend_per_host() -> None:
    app = DomainDispatcherApplication(create_backend_app)
    lookup = DomainDispatcherApplication.get_backend_for_host.__wrapped__  # type: ignore[attr-defined]
    for host in HOSTS + HOSTS:  # the second round answers from what was kept
        assert app.get_backend_for_host(host) == lookup(app, host)


def test_same_method_names_per_class() -> None:
    cached: Any = responses.method_names_from_class  # type: ignore[attr-defined]
    for clazz in (responses.BaseResponse, DomainDispatcherApplication):
        first = cached(clazz)
        first.append("changed by a caller")
        assert cached(clazz) == cached.__wrapped__(clazz)


def shape(node: object) -> object:
    """A parse tree as nested tuples: node type, its ``type`` attribute, children; leaves as
    their repr."""
    children = getattr(node, "children", None)
    if not hasattr(node, "children"):
        return repr(node)
    parts = children if isinstance(children, list | tuple) else [children]
    return (type(node).__name__, getattr(node, "type", None), tuple(shape(c) for c in parts))


def tree(expression: str) -> object:
    return shape(UpdateExpressionParser.make(expression))


def test_same_trees_and_errors() -> None:
    make = UpdateExpressionParser.make.__wrapped__  # type: ignore[attr-defined]
    for expression in EXPRESSIONS:
        assert tree(expression) == shape(make(expression))
    for _ in range(2):
        with pytest.raises(Exception, match="Invalid UpdateExpression"):
            UpdateExpressionParser.make("SET = nothing")


def test_kept_trees_survive_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    kept = {expression: tree(expression) for expression in EXPRESSIONS}
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-west-2")
        ddb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.put_item(TableName="t", Item={"pk": {"S": "a"}, "l": {"L": []}, "gone": {"S": "x"}})
        for _ in range(3):
            ddb.update_item(
                TableName="t",
                Key={"pk": {"S": "a"}},
                UpdateExpression=EXPRESSIONS[0],
                ExpressionAttributeNames={"#n": "n", "#s": "s", "#gone": "gone"},
                ExpressionAttributeValues={
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                    ":s": {"S": "y"},
                },
            )
            ddb.update_item(
                TableName="t",
                Key={"pk": {"S": "a"}},
                UpdateExpression=EXPRESSIONS[1],
                ExpressionAttributeValues={":more": {"L": [{"S": "z"}]}},
            )
            ddb.update_item(
                TableName="t",
                Key={"pk": {"S": "a"}},
                UpdateExpression=EXPRESSIONS[2],
                ExpressionAttributeValues={":one": {"N": "1"}},
            )
        item = ddb.get_item(TableName="t", Key={"pk": {"S": "a"}})["Item"]
    assert item == {
        "pk": {"S": "a"},
        "n": {"N": "3"},
        "s": {"S": "y"},
        "c": {"N": "3"},
        "l": {"L": [{"S": "z"}] * 3},
    }
    assert {expression: tree(expression) for expression in EXPRESSIONS} == kept


def test_copies_of_kept_trees_are_deep_copies() -> None:
    validators: Any = importlib.import_module("moto.dynamodb.parsing.validators")
    for expression in EXPRESSIONS:
        kept = UpdateExpressionParser.make(expression)
        first, second = validators.deepcopy(kept), validators.deepcopy(kept)
        assert shape(first) == shape(second) == shape(copy.deepcopy(kept))
        assert first is not kept and first.children[0] is not kept.children[0]
        assert first.children[0] is not second.children[0]


def test_kept_conditions_answer_as_parsed() -> None:
    comparisons: Any = importlib.import_module("moto.dynamodb.comparisons")
    dynamo_type: Any = importlib.import_module("moto.dynamodb.models.dynamo_type")
    parser = comparisons.ConditionExpressionParser
    condition = "#s = :v AND attribute_not_exists(#h) OR size(#l) > :n"
    names = {"#s": "s", "#h": "h", "#l": "l"}
    items = [
        dynamo_type.Item(dynamo_type.DynamoType({"S": "k"}), None, attrs)
        for attrs in (
            {"s": {"S": "a"}, "l": {"L": []}},
            {"s": {"S": "b"}, "l": {"L": [{"S": "x"}] * 3}},
            {"s": {"S": "a"}, "h": {"S": "y"}, "l": {"L": [{"S": "x"}]}},
        )
    ]
    for value in ("a", "b"):  # the same expression with other values is another condition
        values = {":v": {"S": value}, ":n": {"N": "2"}}
        answers = []
        for _ in range(3):  # parsed, then kept
            p = parser(condition, names, values)
            op = p.parse()
            answers.append(
                ([op.expr(i) for i in items], p.expr_attr_names_found, p.expr_attr_values_found)
            )
        fresh = parser(condition, names, values)
        fresh_op = parser.parse.__wrapped__(fresh)
        expected = (
            [fresh_op.expr(i) for i in items],
            fresh.expr_attr_names_found,
            fresh.expr_attr_values_found,
        )
        assert answers == [expected] * 3
    assert [op.expr(i) for i in items] == [False, True, False]
