"""sdq runtime EMULATOR (dev/test only): fake SD WebUI, ComfyUI and InvokeAI HTTP APIs.

It runs no model: every "generated" image is a placeholder PNG that says
"sdq runtime emulator - placeholder image" (with an en dash). It reproduces the shapes, status codes and
quirks of /work/shared/RUNTIME_APIS.md, with knobs for latency and faults.

Entry points: ``python -m sdq_runtime_emulator``, :func:`create_app`,
:func:`running_emulator` (in-process) and :class:`EmulatorProcess` (subprocess).
"""

from sdq_runtime_emulator.app import create_app
from sdq_runtime_emulator.harness import EmulatorProcess, RunningEmulator, running_emulator
from sdq_runtime_emulator.knobs import KnobError, Knobs
from sdq_runtime_emulator.render import BANNER

__all__ = [
    "BANNER",
    "EmulatorProcess",
    "KnobError",
    "Knobs",
    "RunningEmulator",
    "create_app",
    "running_emulator",
]
