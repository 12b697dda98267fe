# Queue agent benchmark (scripts/bench): GPU duty cycle, throughput, overhead, latency, RSS.
BENCH_ARGS ?=

.PHONY: bench-json

bench: setup ## queue-agent benchmark: moto + runtime emulator + agent, prints a table
	@$(PY) scripts/bench/sdq_bench.py $(BENCH_ARGS)

bench-json: setup ## the benchmark as one JSON object per scenario
	@$(PY) scripts/bench/sdq_bench.py --json $(BENCH_ARGS)
