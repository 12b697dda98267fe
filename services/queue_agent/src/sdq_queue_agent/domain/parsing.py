"""SQS body → :class:`TaskMessage`. Anything that is not a task is a :class:`PoisonMessage`."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from sdq_contracts.config import NAME_PATTERN
from sdq_contracts.messages import TaskMessage

_ID = re.compile(NAME_PATTERN)


class PoisonMessage(Exception):
    """The body is not a task message; ``task_id`` is set when an id could still be read."""

    def __init__(self, reason: str, task_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.task_id = task_id


def parse_task(body: str) -> TaskMessage:
    """Parse a raw SNS message (raw delivery) or, defensively, an SNS notification envelope."""
    try:
        data: Any = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PoisonMessage(
            f"body is not JSON: {exc.msg if hasattr(exc, 'msg') else exc}"
        ) from None
    if (
        isinstance(data, dict)
        and data.get("Type") == "Notification"
        and isinstance(data.get("Message"), str)
    ):
        try:
            data = json.loads(data["Message"])
        except json.JSONDecodeError as exc:
            raise PoisonMessage(f"SNS envelope message is not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise PoisonMessage(f"body is a JSON {type(data).__name__}, not an object")
    try:
        return TaskMessage.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raw_id = data.get("id")
        task_id = raw_id if isinstance(raw_id, str) and _ID.match(raw_id) else None
        raise PoisonMessage(
            f"not a task message ({exc.error_count()} errors; {where}: {first['msg']})", task_id
        ) from None
