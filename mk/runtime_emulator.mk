# sdq runtime EMULATOR (dev/test only: fake SD WebUI + ComfyUI APIs, placeholder images).
.PHONY: emulator test-emulator

EMULATOR_PORT ?= 7860
EMULATOR_FLAGS ?= --generation-latency-s 1.0

emulator: setup ## run the runtime emulator on 127.0.0.1:$(EMULATOR_PORT) (EMULATOR_FLAGS=...)
	@$(PY) -m sdq_runtime_emulator --host 127.0.0.1 --port $(EMULATOR_PORT) $(EMULATOR_FLAGS)

test-emulator: setup ## the runtime emulator's fidelity tests
	@$(PY) -m pytest -q devtools/runtime_emulator
