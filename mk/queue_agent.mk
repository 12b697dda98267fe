# Benchmarks (devtools/bench, package sdq_bench): GPU duty cycle, throughput, overhead, latency, RSS.
BENCH_ARGS ?=

.PHONY: bench bench-json

bench: setup ## benchmarks: the queue agent (GPU duty cycle, throughput, overhead, RSS) and the API handler
	@$(PY) -m sdq_bench.agent $(BENCH_ARGS)
	@$(PY) -m sdq_bench.api

bench-json: setup ## the benchmarks as one JSON object per scenario
	@$(PY) -m sdq_bench.agent --json $(BENCH_ARGS)
	@$(PY) -m sdq_bench.api --json
