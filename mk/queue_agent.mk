# Benchmarks (devtools/bench, package sdq_bench): GPU duty cycle, AWS calls and request cost per task,
# agent CPU and RSS, and whether the agent or the AWS emulator was the bottleneck.
# Three consecutive runs: make bench BENCH_ARGS="--repeat 3"
BENCH_ARGS ?=

.PHONY: bench bench-json

bench: setup ## benchmarks: the queue agent (duty cycle, AWS calls and cost per task, CPU, RSS, verdict) and the API handler
	@$(PY) -m sdq_bench.agent $(BENCH_ARGS)
	@$(PY) -m sdq_bench.api

bench-json: setup ## the benchmarks as one JSON object per scenario
	@$(PY) -m sdq_bench.agent --json $(BENCH_ARGS)
	@$(PY) -m sdq_bench.api --json
