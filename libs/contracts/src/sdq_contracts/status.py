"""The status row's state machine, defined once: which writer may move a row from which state
to which, as pure functions over the stored item (a plain mapping, as DynamoDB holds it).

The API creates rows (``queued``) and cancels queued ones; the agent claims, renews its lease,
records stages, waits to retry, releases, and ends rows (``completed``/``failed``/``cancelled``).
The in-memory fakes apply these functions; the DynamoDB adapters express the same conditions,
and one scenario suite runs against both, so a fake never accepts what DynamoDB refuses.

Each function returns the new item, or ``None`` when the transition is refused (DynamoDB's
``ConditionalCheckFailedException``).
"""

from __future__ import annotations

from typing import Any

from sdq_contracts.messages import TaskState

Item = dict[str, Any]

# Bookkeeping attributes of the row (not in the public view).
ANNOUNCED = "announced"  # False from a final state until its notification is published
HOLDER = "holder"  # the receive that holds a running task
LEASE_UNTIL = "lease_until"  # epoch seconds; the holder renews it while it works
PUBLISH_LEASE_UNTIL = "publish_lease_until"  # epoch seconds; the API request publishing it
RETRY_AT = "retry_at"  # ISO time a task waiting out a retry backoff runs again
WAITING_TO_RETRY = "waiting_to_retry"  # the stage of a task between two attempts
_ENDED = (TaskState.COMPLETED.value, TaskState.CANCELLED.value)
# Attributes the claim and a final failure write when they must create the row.
REQUIRED = ("runtime", "tasktype", "output_location", "created_at", "expires_at")


def _status(item: Item) -> str:
    return str(item.get("status", ""))


def _permanently_failed(item: Item) -> bool:
    error = item.get("error")
    return (
        _status(item) == TaskState.FAILED.value
        and isinstance(error, dict)
        and bool(error.get("permanent"))
    )


def _held_by_other(item: Item, holder: str, now: int) -> bool:
    other = item.get(HOLDER)
    return (
        _status(item) == TaskState.RUNNING.value
        and other is not None
        and other != holder
        and int(item.get(LEASE_UNTIL, 0)) >= now
    )


def _without(item: Item, *names: str) -> Item:
    return {k: v for k, v in item.items() if k not in names}


# --------------------------------------------------------------------------- API


def create(item: Item | None, new: Item) -> Item | None:
    """The API's insert of a queued row; refused if any row has the id."""
    return None if item is not None else dict(new)


def take_publish_lease(item: Item | None, now: int, lease_until: int) -> Item | None:
    """A replay takes over publishing only from a creator whose publish lease has expired."""
    if item is None or _status(item) != TaskState.QUEUED.value or "published_at" in item:
        return None
    if int(item.get(PUBLISH_LEASE_UNTIL, 0)) >= now:
        return None
    return item | {PUBLISH_LEASE_UNTIL: lease_until}


def mark_published(item: Item | None, stamp: str) -> Item | None:
    if item is None:
        return None
    return _without(item, PUBLISH_LEASE_UNTIL) | {"published_at": stamp}


def cancel_if_queued(item: Item | None, stamp: str) -> Item | None:
    """Cancelled before any agent ran it: the agent that receives its message announces it."""
    if item is None or _status(item) != TaskState.QUEUED.value:
        return None
    return item | {
        "status": TaskState.CANCELLED.value,
        "finished_at": stamp,
        "updated_at": stamp,
        ANNOUNCED: False,
    }


def request_cancel_if_running(item: Item | None, stamp: str) -> Item | None:
    if item is None or _status(item) != TaskState.RUNNING.value:
        return None
    return item | {"cancel_requested": True, "updated_at": stamp}


# --------------------------------------------------------------------------- agent


def claim(
    item: Item | None, *, holder: str, now: int, lease_until: int, stamp: str, defaults: Item
) -> Item | None:
    """Mark the task running (attempts + 1) under ``holder``'s lease, unless it ended, a cancel
    was asked, or another receive holds a live lease. ``defaults`` fill a missing row (and any
    of :data:`REQUIRED` a row lacks), so no row is ever partial."""
    if item is not None and (
        _status(item) in _ENDED
        or item.get("cancel_requested") is True
        or _permanently_failed(item)
        or _held_by_other(item, holder, now)
    ):
        return None
    base = {"id": defaults["id"], "attempts": 0} if item is None else item
    filled = {k: v for k, v in defaults.items() if k not in base}
    new = _without(base | filled, "error", "stage", RETRY_AT)
    return new | {
        "status": TaskState.RUNNING.value,
        "attempts": int(base.get("attempts", 0)) + 1,
        "started_at": stamp,
        "updated_at": stamp,
        HOLDER: holder,
        LEASE_UNTIL: lease_until,
    }


def renew(item: Item | None, *, holder: str, lease_until: int) -> Item | None:
    if item is None or _status(item) != TaskState.RUNNING.value or item.get(HOLDER) != holder:
        return None
    return item | {LEASE_UNTIL: lease_until}


def release(item: Item | None, *, holder: str, stamp: str) -> Item | None:
    """The holder hands the task back (shutdown, unexpected error): the next receive claims it."""
    if item is None or _status(item) != TaskState.RUNNING.value or item.get(HOLDER) != holder:
        return None
    return _without(item, HOLDER, LEASE_UNTIL, "stage") | {"updated_at": stamp}


def wait_to_retry(
    item: Item | None, *, holder: str, error: Item, retry_at: str, stamp: str
) -> Item | None:
    """A transient failure: the row shows the attempt, the last error and when it runs again."""
    released = release(item, holder=holder, stamp=stamp)
    if released is None:
        return None
    return released | {"stage": WAITING_TO_RETRY, "error": error, RETRY_AT: retry_at}


def stage(item: Item | None, *, name: str, stamp: str) -> Item | None:
    if item is None or _status(item) != TaskState.RUNNING.value:
        return None
    return item | {"stage": name, "updated_at": stamp}


def complete(
    item: Item | None,
    *,
    holder: str,
    outputs: list[str],
    stamp: str,
    files: list[Item] | None = None,
) -> Item | None:
    """Only the receive holding the task completes it (refused once cancelled or taken over).
    ``files``: each output's metadata (``OutputObject`` as JSON, no links), in ``outputs``' order."""
    if item is None or _status(item) != TaskState.RUNNING.value or item.get(HOLDER) != holder:
        return None
    return _without(item, "error", "stage", HOLDER, LEASE_UNTIL, RETRY_AT) | {
        "status": TaskState.COMPLETED.value,
        "outputs": outputs,
        "files": files or [],
        "finished_at": stamp,
        "updated_at": stamp,
        ANNOUNCED: False,
    }


def fail(item: Item | None, *, error: Item, stamp: str, defaults: Item | None) -> Item | None:
    """A final failure. Without ``defaults`` (a poison message: no task to describe the row)
    only an existing row is updated; with them a missing row is created whole."""
    if item is None and defaults is None:
        return None
    if item is not None and _status(item) in _ENDED:
        return None
    base = dict(defaults or {}) if item is None else item
    filled = {k: v for k, v in (defaults or {}).items() if k not in base}
    return _without(base | filled, "stage", HOLDER, LEASE_UNTIL, RETRY_AT) | {
        "status": TaskState.FAILED.value,
        "error": error,
        "finished_at": stamp,
        "updated_at": stamp,
        ANNOUNCED: False,
    }


def cancelled(item: Item | None, *, stamp: str) -> Item | None:
    if item is None or _status(item) == TaskState.COMPLETED.value:
        return None
    return _without(item, "stage", HOLDER, LEASE_UNTIL, RETRY_AT) | {
        "status": TaskState.CANCELLED.value,
        "finished_at": stamp,
        "updated_at": stamp,
        ANNOUNCED: False,
    }


def announced(item: Item | None) -> Item | None:
    return None if item is None else item | {ANNOUNCED: True}
