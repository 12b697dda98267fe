"""The status row's state machine, defined once: which writer may move a row from which state
to which, as pure functions over the stored item (a plain mapping, as DynamoDB holds it).

The API creates rows (``queued``) and cancels queued ones; the agent claims, renews its lease
(recording the task's stage on the way), waits to retry, releases, and ends rows
(``completed``/``failed``/``cancelled``).

Who announces an ended row (the one final notification): each final write by the agent
records the SQS ``MessageId`` of the message whose handling wrote it (:data:`SETTLED_BY`), and
that message is deleted only after the notification is published. So a message that finds its
task ended announces it again only when it is that very message (its settle was cut short:
the agent died between the final write and the delete); any other copy of the task (an SNS or
SQS duplicate) is deleted silently. SQS may also deliver a second copy of the *same* message
(same ``MessageId``, another receipt handle): after its publish the settling message marks the
row ``announced: true`` (in a batch, with its delete), so such a copy finds the mark and is
deleted silently; one that finds no mark while the original may still be between its publish
and its mark is handed back until that window has passed (``wait``). A row ended without an owner (the API's cancel of a queued
task, rows of older agents) carries ``announced: false`` until a receiving agent adopts it
(:func:`adopt`, a conditional write: one copy wins) and then follows the same rule.
See :func:`announcement`.

The in-memory fakes apply these functions; the DynamoDB adapters express the same conditions,
and one scenario suite runs against both, so a fake never accepts what DynamoDB refuses.

Each function returns the new item, or ``None`` when the transition is refused (DynamoDB's
``ConditionalCheckFailedException``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sdq_contracts.messages import TaskState

Item = dict[str, Any]
Announce = Literal["announce", "adopt", "wait", "none"]

# Bookkeeping attributes of the row (not in the public view).
# False on a row ended without an owner (the API's cancel of a queued task; final states
# written by older agents) until an agent adopts its announcement; True once the message that
# settled the row published its notification (:func:`mark_announced`, written in a batch with
# that message's delete).
ANNOUNCED = "announced"
SETTLED_BY = "settled_by"  # the SQS MessageId whose handling wrote the final state
HOLDER = "holder"  # the receive that holds a running task
LEASE_UNTIL = "lease_until"  # epoch seconds; the holder renews it while it works
PUBLISH_LEASE_UNTIL = "publish_lease_until"  # epoch seconds; the API request publishing it
RETRY_AT = "retry_at"  # ISO time a task waiting out a retry backoff runs again
WAITING_TO_RETRY = "waiting_to_retry"  # the stage of a task between two attempts
_ENDED = (TaskState.COMPLETED.value, TaskState.CANCELLED.value)
_FINAL = (*_ENDED, TaskState.FAILED.value)
# The stage the claim records (inputs being fetched); the heartbeat's renew records the later
# ones (the agent's phases), so a task shorter than one heartbeat writes no other stage.
CLAIMED_STAGE = "preparing"
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
    new = _without(base | filled, "error", RETRY_AT)
    return new | {
        "status": TaskState.RUNNING.value,
        "attempts": int(base.get("attempts", 0)) + 1,
        "started_at": stamp,
        "updated_at": stamp,
        "stage": CLAIMED_STAGE,
        HOLDER: holder,
        LEASE_UNTIL: lease_until,
    }


def renew(
    item: Item | None, *, holder: str, lease_until: int, stage: str, stamp: str
) -> Item | None:
    """The heartbeat's one status write: extend the lease and record the stage. The new item
    also tells the holder whether a cancel was asked (no separate read)."""
    if item is None or _status(item) != TaskState.RUNNING.value or item.get(HOLDER) != holder:
        return None
    return item | {LEASE_UNTIL: lease_until, "stage": stage, "updated_at": stamp}


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


def _settled_by_other(item: Item, settled_by: str) -> bool:
    """Ended by the handling of another message (a duplicate copy of the task)."""
    owner = item.get(SETTLED_BY)
    return _status(item) in _FINAL and owner is not None and owner != settled_by


def _settle(item: Item, state: TaskState, stamp: str, settled_by: str) -> Item:
    return _without(item, "stage", HOLDER, LEASE_UNTIL, RETRY_AT, ANNOUNCED) | {
        "status": state.value,
        "finished_at": stamp,
        "updated_at": stamp,
        SETTLED_BY: settled_by,
    }


def complete(
    item: Item | None,
    *,
    holder: str,
    outputs: list[str],
    stamp: str,
    settled_by: str,
    files: list[Item] | None = None,
) -> Item | None:
    """Only the receive holding the task completes it (refused once cancelled or taken over).
    ``files``: each output's metadata (``OutputObject`` as JSON, no links), in ``outputs``' order."""
    if item is None or _status(item) != TaskState.RUNNING.value or item.get(HOLDER) != holder:
        return None
    return _settle(_without(item, "error"), TaskState.COMPLETED, stamp, settled_by) | {
        "outputs": outputs,
        "files": files or [],
    }


def fail(
    item: Item | None, *, error: Item, stamp: str, defaults: Item | None, settled_by: str
) -> Item | None:
    """A final failure. Without ``defaults`` (a poison message: no task to describe the row)
    only an existing row is updated; with them a missing row is created whole. Refused once
    the task completed or was cancelled, or another message's handling failed it."""
    if item is None and defaults is None:
        return None
    if item is not None and (_status(item) in _ENDED or _settled_by_other(item, settled_by)):
        return None
    base = dict(defaults or {}) if item is None else item
    filled = {k: v for k, v in (defaults or {}).items() if k not in base}
    return _settle(base | filled, TaskState.FAILED, stamp, settled_by) | {"error": error}


def cancelled(item: Item | None, *, stamp: str, settled_by: str) -> Item | None:
    """Refused once completed, or cancelled by anyone but this message's handling."""
    if item is None or _status(item) == TaskState.COMPLETED.value:
        return None
    if _status(item) == TaskState.CANCELLED.value and item.get(SETTLED_BY) != settled_by:
        return None
    return _settle(item, TaskState.CANCELLED, stamp, settled_by)


def adopt(item: Item | None, *, settled_by: str, stamp: str | None = None) -> Item | None:
    """A receiving agent takes over the announcement of a row ended without an owner; one
    copy of the task wins. ``stamp`` (now) starts the window of :func:`announcement`."""
    if announcement(item, settled_by) != "adopt" or item is None:
        return None
    adopted = _without(item, ANNOUNCED) | {SETTLED_BY: settled_by}
    return adopted if stamp is None else adopted | {"updated_at": stamp}


def mark_announced(item: Item | None, *, settled_by: str) -> Item | None:
    """The message that settled the row published its notification: refused unless the row is
    final and settled by that message."""
    if item is None or _status(item) not in _FINAL or item.get(SETTLED_BY) != settled_by:
        return None
    return item | {ANNOUNCED: True}


def settled_seconds_ago(item: Item, now: datetime) -> float | None:
    """Seconds since the row's last write by the agent (its final write, or the adoption of its
    announcement); None when the row has no readable stamp."""
    stamp = item.get("updated_at") or item.get("finished_at")
    if not isinstance(stamp, str):
        return None
    try:
        then = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if then.tzinfo is None or now.tzinfo is None:
        return None
    return (now - then).total_seconds()


def announcement(
    item: Item | None, message_id: str, *, now: datetime | None = None, window: float = 0.0
) -> Announce:
    """What a message that finds its task ended owes: ``announce`` (it is the message whose
    handling ended the task and the row carries no ``announced`` mark: its settle was cut
    short, publish again, then delete), ``wait`` (the same, but settled less than ``window``
    seconds before ``now``: the original handling may still be marking it, hand this copy back
    until then), ``adopt`` (nobody owns the announcement yet: :func:`adopt`, and announce if
    that write wins) or ``none`` (delete silently: another message owns it, or it was
    announced)."""
    if item is None or _status(item) not in _FINAL:
        return "none"
    owner = item.get(SETTLED_BY)
    if owner is not None:
        if owner != message_id or item.get(ANNOUNCED) is True:
            return "none"
        age = None if now is None else settled_seconds_ago(item, now)
        return "wait" if age is not None and age < window else "announce"
    return "adopt" if item.get(ANNOUNCED) is False else "none"
