"""Exit codes scripts can rely on, and the one exception type that carries them."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    ERROR = 1  # sdq or the CLI failed unexpectedly (5xx, bug)
    USAGE = 2  # bad flags or local input: missing file, invalid workflow JSON
    REFUSED = 3  # the API refused the request (400, 404, 405, 409, 413, 415)
    AUTH = 4  # no API key, or a key the API does not accept (401, 403)
    THROTTLED = 5  # 429: retry after the time given
    UNREACHABLE = 6  # the endpoint did not answer
    TASK_FAILED = 7  # the task ended failed or cancelled
    TIMEOUT = 8  # --wait gave up before the task finished


class CliError(Exception):
    def __init__(self, message: str, code: Exit = Exit.ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
