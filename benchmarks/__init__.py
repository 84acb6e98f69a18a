"""Benchmarks: figures side by side with the alternatives, in one process run each (``python -m benchmarks.X``).

- :mod:`benchmarks.triggerer_scale`: N waiting triggers in one event loop, ours beside the peer
  providers' (``make bench-triggers``);
- :mod:`benchmarks.transport_cpu`: what the shared async client's transport costs, against the others;
- :mod:`benchmarks.emulator_load`: the emulator's requests/s and latencies (``make bench``).

:mod:`benchmarks.harness` is what they share: the fake server, the counters, the fleet of triggers,
the statistics and the report. No test imports a benchmark.
"""
