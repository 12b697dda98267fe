"""sdq queue agent: the sidecar that feeds queued tasks to one SD WebUI or ComfyUI runtime.

Entry point ``python -m sdq_queue_agent`` (or ``sdq-queue-agent``); see README.md.
"""

__version__ = "0.1.0"
