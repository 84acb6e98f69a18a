"""What the benchmarks share: counters, the fake server, a fleet of triggers, statistics and the report.

- :mod:`.counters`: float64 slots in a file mapping, shared by the orchestrator, the server and the worker;
- :mod:`.server`: the fake server in its own process (every kind's API shape, keep-alive, TLS optional);
- :mod:`.fleet`: N triggers in one event loop, run as the triggerer runs them;
- :mod:`.report`: percentiles, medians, number formats, Markdown tables, the machine line.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: The repository's root: the processes a benchmark starts run ``python -m benchmarks...`` from there.
ROOT = Path(__file__).resolve().parents[2]


def module_command(module: str, *argv: str) -> list[str]:
    """The command that runs ``module`` with ``argv`` in this interpreter (start it with ``cwd=ROOT``)."""
    return [sys.executable, "-m", module, *argv]
