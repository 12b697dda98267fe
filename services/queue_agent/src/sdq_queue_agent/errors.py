"""What happens to a task's message when something goes wrong.

- :class:`PermanentTaskError`: retrying cannot help → status failed, one failed notification,
  message deleted.
- :class:`TransientTaskError`: retrying may help → message returned to the queue with backoff;
  on the last allowed receive a final failed notification, then SQS dead-letters it.
"""

from __future__ import annotations


class TaskFailure(Exception):
    """Base of every classified task failure; ``code`` ends up in the status row and notification."""

    code = "task_failed"
    permanent = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PermanentTaskError(TaskFailure):
    code = "permanent_failure"
    permanent = True


class TransientTaskError(TaskFailure):
    code = "transient_failure"
    permanent = False


# --- permanent -----------------------------------------------------------------------------


class InvalidTaskError(PermanentTaskError):
    """The task content cannot run (wrong task type, malformed body, missing claim check)."""

    code = "invalid_task"


class InputRefusedError(PermanentTaskError):
    """An input URL is not allowed (scheme, address, bucket) or is not an image."""

    code = "input_refused"


class InputTooLargeError(PermanentTaskError):
    code = "input_too_large"


class UnknownModelError(PermanentTaskError):
    code = "unknown_model"


class RuntimeRejectedError(PermanentTaskError):
    """The runtime refused the request (SD WebUI 4xx/422, ComfyUI 400) or the workflow failed."""

    code = "runtime_rejected"


class UnknownScriptError(RuntimeRejectedError):
    """An SD WebUI ``alwayson_scripts`` entry names a script the runtime does not have."""

    code = "unknown_script"


class WorkflowExecutionError(PermanentTaskError):
    """ComfyUI reported ``execution_error`` for a node."""

    code = "execution_error"


class OutputConversionError(PermanentTaskError):
    """An output could not be stored in the image format the task asked for."""

    code = "output_conversion_failed"


# --- transient -----------------------------------------------------------------------------


class RuntimeUnavailableError(TransientTaskError):
    """The runtime is unreachable, answered 5xx, or died during the request."""

    code = "runtime_unavailable"


class DeadlineExceededError(TransientTaskError):
    code = "deadline_exceeded"


class InputUnavailableError(TransientTaskError):
    """An input could not be downloaded for a reason that may pass (timeout, 5xx)."""

    code = "input_unavailable"


class AwsError(TransientTaskError):
    code = "aws_error"


class InterruptedByOtherError(TransientTaskError):
    """The runtime reports an interrupt the agent did not ask for."""

    code = "interrupted"


# --- not failures ---------------------------------------------------------------------------


class TaskCancelled(Exception):
    """The task's status row asked for cancellation while it ran."""


class TaskReleased(Exception):
    """The agent is shutting down and handed the task back to the queue."""


class StartupError(RuntimeError):
    """The agent cannot start: runtime never ready, static model missing, bad config."""
