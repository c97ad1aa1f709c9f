"""`ppg-mi bench`: throughput, latency and memory of the pipeline, against the limits of its parts.

Pure arithmetic and reporting live in :mod:`.stats` and :mod:`.report`; :mod:`.micro`
measures functions in this process, :mod:`.kafka_perf` runs Kafka's own performance
tools, :mod:`.pipeline` runs the services as real processes, :mod:`.runner` ties them
together and writes ``docs/performance.json`` and ``docs/performance.md``.
"""

from .runner import BenchOptions, run_bench

__all__ = ["BenchOptions", "run_bench"]
