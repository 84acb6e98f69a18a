"""Counters shared by the orchestrator, the fake server and the worker: float64 slots in a file mapping.

The server counts what it accepted and answered; the orchestrator and the worker set its mode (normal,
HTTP 500, refused) and when runs turn terminal.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

SLOTS = 16


ACCEPTED, REQUESTS, ERRORS_SERVED, MODE, FLIP_START, FLIP_SPREAD, N_RUNS, STARTED_AT = range(8)


VIRTUAL_NOW, TERMINAL_SERVED, PORT, ALIVE = range(8, 12)


MODE_NORMAL, MODE_HTTP_500, MODE_REFUSED = 0.0, 1.0, 2.0


class Counters:
    """A few float64 slots in a shared file mapping, seen by the orchestrator, the server and the worker."""

    def __init__(self, path: str | None = None) -> None:
        if path is None:
            handle, path = tempfile.mkstemp(prefix="triggerer-scale-counters-")
            os.write(handle, bytes(8 * SLOTS))
            os.close(handle)
            self.owner = True
        else:
            self.owner = False
        self.path = path
        with open(path, "r+b") as file:
            self.map = mmap.mmap(file.fileno(), 8 * SLOTS)
        self.view = memoryview(self.map).cast("d")

    @property
    def name(self) -> str:
        return self.path

    def __getitem__(self, slot: int) -> float:
        return float(self.view[slot])

    def __setitem__(self, slot: int, value: float) -> None:
        self.view[slot] = value

    def add(self, slot: int, amount: float = 1.0) -> None:
        self.view[slot] += amount

    def close(self) -> None:
        self.view.release()
        self.map.close()
        if self.owner:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


@contextlib.contextmanager
def serving(process: subprocess.Popen[Any], counters: Counters) -> Iterator[int]:
    """The port of the fake server ``process`` once it has written it to ``counters``; stop it after.

    The server watches the ``ALIVE`` slot and exits when it turns negative; ``counters`` is closed.
    Used through :func:`benchmarks.harness.server.fake_server`.
    """
    try:
        deadline = time.monotonic() + 20
        while counters[PORT] == 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the fake server did not start")
            time.sleep(0.02)
        yield int(counters[PORT])
    finally:
        counters[ALIVE] = -1
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        counters.close()


def flip_time(counters: Counters, index: int) -> float | None:
    """When run ``index`` turns terminal (Unix seconds, or virtual seconds), or None."""
    start = counters[FLIP_START]
    if start <= 0:
        return None
    n = max(1.0, counters[N_RUNS])
    return start + counters[FLIP_SPREAD] * (index % n) / n
