"""sdq benchmarks (``make bench``): the queue agent (:mod:`sdq_bench.agent`: GPU duty cycle,
throughput, overhead, latency, RSS) and the API handler (:mod:`sdq_bench.api`: cold start,
warm request latency). Each prints a table, or JSON lines with ``--json``."""
