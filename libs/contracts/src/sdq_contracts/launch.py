"""How each runtime type is started: the one list of launch arguments shared by the Kubernetes
components (k8s/components/<type>/runtime.yaml) and the real-runtime conformance suite.

Only two things differ between a pod and a test run, and both are parameters: where the server
listens (a pod binds every address so the kubelet can probe it; a test binds 127.0.0.1) and
where the model cache is. Device flags (CPU-only in tests) are added by the caller, never here.
Every flag below exists in the pinned runtime version (checked by the conformance suite, which
starts the real program with exactly these arguments).
"""

from __future__ import annotations

from dataclasses import dataclass

from sdq_contracts.config import RuntimeType

# Address a pod listens on; any other value is a single interface (tests use 127.0.0.1).
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - a pod must answer the kubelet's probes on its IP


# Where a pod's ComfyUI keeps its input/output folders (emptyDir volumes shared with the agent).
COMFYUI_DATA_DIR = "/comfyui-files"


@dataclass(frozen=True, slots=True)
class RuntimeLaunch:
    """The runtime's port, its launch arguments and the path that answers once it is ready."""

    port: int
    args: tuple[str, ...]
    health_path: str
    # Settings the runtime reads only from its environment (InvokeAI: host, port, ...).
    env: tuple[tuple[str, str], ...] = ()


def runtime_launch(
    runtime_type: RuntimeType,
    *,
    listen: str = ALL_INTERFACES,
    models_dir: str = "/models",
    config_dir: str = "/etc/sdq",
    data_dir: str = COMFYUI_DATA_DIR,
    port: int | None = None,
    state_dir: str = "/var/lib/sdq-runtime",
) -> RuntimeLaunch:
    """Launch arguments appended to the runtime image's entry point.

    ``models_dir`` is the node's model cache (SD WebUI folder layout); ``config_dir`` holds the
    files sdq gives a runtime (ComfyUI's ``extra_model_paths.yaml`` mapping its folders onto
    that cache). ``data_dir`` holds ComfyUI's ``input/`` and ``output/`` folders, shared with
    the queue agent (``SDQ_COMFYUI_DATA_DIR``) so that it can remove a task's files once they are
    in S3: ComfyUI has no API that deletes files. Both folders must exist before ComfyUI starts.
    ``port`` defaults to the runtime's usual one (a pod has its own network namespace; tests pick
    a free port). ``state_dir`` is a writable folder for a runtime that keeps state
    (InvokeAI's root: its database, image store and invokeai.yaml).
    """
    if runtime_type is RuntimeType.SDWEBUI:
        bind = ("--listen",) if listen == ALL_INTERFACES else (f"--server-name={listen}",)
        port = port or 7860
        return RuntimeLaunch(
            port=port,
            args=(
                "--api",
                "--nowebui",  # API only: /sdapi/v1/* without the Gradio UI
                *bind,
                f"--port={port}",  # --nowebui would otherwise default to 7861
                "--no-download-sd-model",  # never fetch a model at start-up
                "--skip-load-model-at-start",  # the agent loads the task's model on demand
                "--skip-version-check",
                f"--ckpt-dir={models_dir}/Stable-diffusion",
                f"--lora-dir={models_dir}/Lora",
                f"--vae-dir={models_dir}/VAE",
                f"--embeddings-dir={models_dir}/embeddings",
            ),
            # /internal/ping is 404 in API-only mode.
            health_path="/sdapi/v1/options",
        )
    if runtime_type is RuntimeType.COMFYUI:
        port = port or 8188
        return RuntimeLaunch(
            port=port,
            args=(
                f"--listen={listen}",
                f"--port={port}",
                "--disable-mmap",  # read safetensors whole: fast loads from instance-store NVMe
                "--disable-auto-launch",
                "--disable-api-nodes",  # no calls to paid cloud nodes from a private fleet
                f"--extra-model-paths-config={config_dir}/extra_model_paths.yaml",
                f"--input-directory={data_dir}/input",
                f"--output-directory={data_dir}/output",
            ),
            health_path="/system_stats",
        )
    if runtime_type is RuntimeType.INVOKEAI:
        # invokeai-web takes only --root and --config; everything else is invokeai.yaml or
        # INVOKEAI_* variables (pydantic-settings, which the yaml file does not override).
        port = port or 9090
        return RuntimeLaunch(
            port=port,
            args=(f"--root={state_dir}",),
            health_path="/api/v1/app/version",
            env=(
                ("INVOKEAI_HOST", listen),
                ("INVOKEAI_PORT", str(port)),
                # Models are installed in place from the node cache on every start (the root is
                # per pod): skip hashing multi-GB files, the cache is read-only and keyed by name.
                ("INVOKEAI_HASHING_ALGORITHM", "random"),
            ),
        )
    raise ValueError(f"no launch arguments for runtime type {runtime_type!r}")
