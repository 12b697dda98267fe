"""Runtime control for the real runtimes behind a stack (crash, restart, files on disk)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdq_conformance.fleet import Fleet
from sdq_conformance.harness import files_under
from sdq_conformance.runtimes import RealRuntime, RuntimeKind

COMFY_FOLDERS = ("input", "output", "temp")


class RealControl:
    """Stack runtime names map onto the real processes (several SD WebUI runtimes of the
    deployment share one SD WebUI process: the cases run one at a time)."""

    def __init__(self, fleet: Fleet | None, kinds: Mapping[str, RuntimeKind]) -> None:
        self._fleet = fleet
        self._kinds = kinds

    def _runtime(self, runtime: str) -> RealRuntime:
        if self._fleet is None:
            raise AssertionError(
                "this case crashes and restarts the runtime: it needs runtimes the suite "
                "started itself (unset SDQ_CONFORMANCE_*_URL)"
            )
        return self._fleet.get(self._kinds[runtime])

    def crash(self, runtime: str) -> None:
        self._runtime(runtime).kill()

    def restart(self, runtime: str) -> float:
        real = self._runtime(runtime)
        real.start()
        return real.wait_ready()

    def set_knobs(self, runtime: str, knobs: Mapping[str, Any]) -> None:
        """Real runtimes have no knobs: a case makes them slow with its own body."""

    def files(self, runtime: str) -> frozenset[str]:
        if self._fleet is None:
            return frozenset()
        real = self._fleet.get(self._kinds[runtime])
        tree = real.entry / "src" / real.kind.tree
        return files_under([tree / f for f in COMFY_FOLDERS])


def emulator_files(state_dir: Path, runtime: str) -> frozenset[str]:
    data = state_dir / "runtime" / runtime
    return files_under([data / f for f in COMFY_FOLDERS])
