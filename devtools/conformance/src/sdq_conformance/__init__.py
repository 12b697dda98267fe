"""sdq conformance harness: the real runtimes (SD WebUI, ComfyUI) on CPU, for the case table."""
