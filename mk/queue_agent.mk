# Queue agent benchmark (devtools/bench): GPU duty cycle, throughput, overhead, latency, RSS.
BENCH_ARGS ?=

.PHONY: bench bench-json

bench: setup ## benchmarks: the queue agent (GPU duty cycle, throughput, overhead, RSS) and the API handler
	@$(PY) devtools/bench/sdq_bench.py $(BENCH_ARGS)
	@$(PY) -m sdq_local.bench_api

bench-json: setup ## the benchmarks as one JSON object per scenario
	@$(PY) devtools/bench/sdq_bench.py --json $(BENCH_ARGS)
	@$(PY) -m sdq_local.bench_api --json
