"""The real runtimes of one conformance run: one model cache, one config dir, one process each."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

from sdq_conformance.runtimes import (
    CHECKPOINT_NAME,
    COMFYUI,
    SDWEBUI,
    Provisioned,
    RealRuntime,
    RuntimeKind,
    prepare_models,
    runtime_env,
    write_comfy_model_paths,
)

# The checkpoint names the node cache offers. The examples and the seed guide name SD1.5's
# usual file; the suite gives the tiny checkpoint that name too, so they run as shipped.
MODEL_NAMES = (CHECKPOINT_NAME, "v1-5-pruned-emaonly")


class Fleet:
    def __init__(
        self, provisioned: Provisioned, run_dir: Path, kinds: tuple[RuntimeKind, ...]
    ) -> None:
        self.run_dir = run_dir
        self.models_dir = run_dir / "models"
        self.config_dir = run_dir / "etc"
        sdwebui_tree = provisioned.entries.get(SDWEBUI.name)
        if sdwebui_tree is None:
            raise ValueError("the model layout needs the SD WebUI build (its v1 config)")
        prepare_models(
            self.models_dir,
            provisioned.checkpoint,
            sdwebui_tree / "src" / SDWEBUI.tree,
            MODEL_NAMES,
        )
        write_comfy_model_paths(self.config_dir, self.models_dir)
        self.runtimes: dict[str, RealRuntime] = {
            kind.name: RealRuntime(
                kind=kind,
                entry=provisioned.entries[kind.name],
                models_dir=self.models_dir,
                config_dir=self.config_dir,
                log_path=run_dir / "logs" / f"{kind.name}.log",
                env=runtime_env(kind, provisioned.tokenizer_home),
            )
            for kind in kinds
        }

    def start(self) -> None:
        """Start all, wait for all (in parallel); on failure stop what started."""
        try:
            for runtime in self.runtimes.values():
                runtime.start()
            with concurrent.futures.ThreadPoolExecutor(len(self.runtimes)) as pool:
                for future in [pool.submit(r.wait_ready) for r in self.runtimes.values()]:
                    future.result()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for runtime in self.runtimes.values():
            runtime.stop()

    def urls(self) -> dict[str, str]:
        return {name: r.url for name, r in self.runtimes.items()}

    def get(self, kind: RuntimeKind) -> RealRuntime:
        return self.runtimes[kind.name]


__all__ = ["COMFYUI", "SDWEBUI", "Fleet"]
