# Conformance suite (tests/conformance, devtools/conformance): the case table run through the local
# stack against the REAL runtimes (SD WebUI v1.10.1, ComfyUI v0.8.0, on CPU) and against the
# runtime emulator, asserting the same outcome on both.
#   SDQ_RUNTIME_SOURCES=<dir>  pinned source archives (CI: ../shared/runtimes); unset: git clone
#   SDQ_RUNTIME_CACHE=<dir>    where runtime venvs, the tiny checkpoint and the tokenizer are cached
#                              (default ~/.cache/sdq/runtimes; reused by every clone on the machine)
# The runtimes are started with sdq_contracts.launch.runtime_launch's arguments (the k8s ones) plus
# CPU-only device flags, on free 127.0.0.1 ports, and stopped when the run ends.
# Report: the case table at the end of the output and build/conformance/report.json.
export SDQ_RUNTIME_SOURCES SDQ_RUNTIME_CACHE
CONFORMANCE_ARGS ?=

.PHONY: conformance conformance-prepare

conformance-prepare: setup ## build the real runtimes (cached venvs), the tiny checkpoint (once), the tokenizer cache
	@$(PY) -m sdq_conformance prepare

conformance: conformance-prepare ## the case table against real SD WebUI + ComfyUI and the emulator (CONFORMANCE_ARGS=-k ...)
	@start=$$(date +%s); \
	status=0; $(PY) -m pytest -q -m conformance tests/conformance $(CONFORMANCE_ARGS) || status=$$?; \
	echo "conformance: pytest wall time $$(( $$(date +%s) - start )) s"; exit $$status

.PHONY: conformance-invokeai
conformance-invokeai: setup ## the InvokeAI cases against the real InvokeAI 6.14.2 (built by scripts/runtimes/build.sh invokeai)
	@bash scripts/runtimes/build.sh invokeai >/dev/null
	@$(PY) -m pytest -q -m conformance services/queue_agent/tests/test_invokeai_conformance.py $(CONFORMANCE_ARGS)
