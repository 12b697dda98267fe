"""moto's TransactWriteItems without its whole-table deep copies (the bench's moto server).

moto 5.2.5's ``DynamoDBBackend.transact_write_items`` (``moto/dynamodb/models/__init__.py``)
prepares its rollback by deep-copying the table of EVERY item of the transaction, once per item
(a transaction of ten marks on a 200-row status table deep-copies 2,000 items: ≈ 200 ms of CPU in
the bench), and rolls back by putting those copies in place of the tables. Once DynamoDB
requests are served one at a time (``sdq_moto.isolate_dynamodb``) nothing else writes while a
transaction runs, so its rollback only needs the items it names.

``item_snapshot_transactions()`` wraps that method:

1. it finds the item each operation names (its ``Key``; a ``Put``'s key attributes) and
   deep-copies those items (or notes that they are absent);
2. it runs moto's own method unchanged (conditions, errors, cancellation reasons are moto's),
   except that while it runs, the deep copies moto takes of a table *in
   ``moto.dynamodb.models``* return the live table, so moto's own rollback (putting "the copy"
   back) changes nothing;
3. when moto's method raises (a condition failed, a duplicate item, a validation error, ...), it
   puts the noted items back: each one as it was, absent ones removed. Nothing else can have
   changed: moto's transaction writes only through ``put_item``/``update_item``/``delete_item``
   on the items it names, and those change only ``Table.items`` and the table's stream.

It falls back to moto's whole-table copies, unchanged, when an item cannot be named (a malformed
operation, a table not found by its name: moto reports them) or a table has a stream (records of
rolled-back writes would stay).
It also rolls back on the error moto leaves half-applied (more than one operation in one item:
moto raises before its rollback; DynamoDB applies nothing). Applied where sdq runs moto as a
server: the bench, the test fixture and the local stack; ``libs/moto/tests`` holds it to moto's
results on the same transactions.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import importlib
import threading
from typing import Any

from sdq_moto.isolation import isolate_dynamodb

_MARK = "_sdq_item_snapshots"
_PATCHING = threading.Lock()
# Set while the wrapped transaction runs (in its own thread): table deep copies return the table.
_ITEMS_SNAPSHOTTED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "sdq_items_snapshotted", default=False
)

# (table, hash key, range key or None, the item as it was or None)
Snapshot = list[tuple[Any, Any, Any, Any]]


class _CopyModule:
    """Stands in for the ``copy`` module inside ``moto.dynamodb.models`` (its only deep copy of
    a table is the transaction's rollback copy)."""

    def __init__(self, table_class: type) -> None:
        self._table_class = table_class

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        if _ITEMS_SNAPSHOTTED.get() and isinstance(value, self._table_class):
            return value
        return copy.deepcopy(value, memo)


def _named_items(backend: Any, transact_items: Any) -> Snapshot | None:
    """The items the transaction names, deep-copied; None when one cannot be named or a table
    has a stream."""
    from moto.dynamodb.models.dynamo_type import DynamoType  # noqa: PLC0415 - moto is heavy

    snapshot: Snapshot = []
    try:
        for entry in transact_items:
            op_type, op = next(iter(entry.items()))
            table = backend.tables.get(op.get("TableName"))
            if table is None or table.stream_shard is not None:
                return None  # not named as moto's own snapshot names it (an ARN?), or streamed
            attrs = op["Item"] if op_type == "Put" else op["Key"]
            hash_key = DynamoType(attrs[table.hash_key_attr])
            range_key = None
            if table.range_key_attr is not None:
                range_key = DynamoType(attrs[table.range_key_attr])
                item = table.items.get(hash_key, {}).get(range_key)
            else:
                item = table.items.get(hash_key)
            snapshot.append((table, hash_key, range_key, copy.deepcopy(item)))
    except (AttributeError, KeyError, IndexError, TypeError, ValueError, StopIteration):
        return None
    return snapshot


def _put_back(snapshot: Snapshot) -> None:
    for table, hash_key, range_key, item in reversed(snapshot):
        if range_key is None:
            if item is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = item
        elif item is None:
            rows = table.items.get(hash_key)
            if rows is not None:
                rows.pop(range_key, None)
        else:
            table.items[hash_key][range_key] = item


def _item_snapshots(transact: Any) -> Any:
    @functools.wraps(transact)
    def transact_write_items(self: Any, transact_items: Any) -> Any:
        snapshot = _named_items(self, transact_items)
        if snapshot is None:
            return transact(self, transact_items)
        token = _ITEMS_SNAPSHOTTED.set(True)
        try:
            return transact(self, transact_items)
        except BaseException:
            _put_back(snapshot)
            raise
        finally:
            _ITEMS_SNAPSHOTTED.reset(token)

    setattr(transact_write_items, _MARK, True)
    return transact_write_items


def item_snapshot_transactions() -> None:
    """Roll moto's failed DynamoDB transactions back by item instead of by whole-table copies.
    Isolates DynamoDB requests first (the item snapshot is only valid if nothing else writes
    meanwhile). Idempotent; call it before the server starts."""
    isolate_dynamodb()
    # moto is heavy to import; imported as Any: its modules do not export what is patched
    models: Any = importlib.import_module("moto.dynamodb.models")
    table: Any = importlib.import_module("moto.dynamodb.models.table")

    with _PATCHING:
        backend = models.DynamoDBBackend
        if getattr(backend.transact_write_items, _MARK, False):
            return
        models.copy = _CopyModule(table.Table)
        backend.transact_write_items = _item_snapshots(backend.transact_write_items)
