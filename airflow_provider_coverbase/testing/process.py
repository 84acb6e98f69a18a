"""The emulator in a process of its own, started as a user starts it: ``python -m airflow_provider_coverbase.testing``.

For load generators and demos that must not share the emulator's GIL, and for tests of the command
itself. :func:`start_emulator_process` reads the banner the command prints on start (base URL, API
keys, the connection line, the admin API) and hands back what it said.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Self

__all__ = ["EmulatorProcess", "start_emulator_process"]

#: The banner's last line starts so (see ``__main__.main``).
_LAST_BANNER_LINE = "Admin API: "
_CONNECTION_LINE = "export AIRFLOW_CONN_COVERBASE_DEFAULT="


@dataclass
class EmulatorProcess:
    """A running ``coverbase-emulator`` and the banner it printed (its lines, without line ends)."""

    process: subprocess.Popen[str]
    banner: list[str]

    def said(self, label: str) -> str:
        """The value of the banner line ``"<label>: <value>"``, e.g. ``said("Base URL")``."""
        prefix = f"{label}: "
        for line in self.banner:
            if line.startswith(prefix):
                return line.removeprefix(prefix).strip()
        raise LookupError(f"the emulator's banner has no {label!r} line: {self.banner}")

    @property
    def base_url(self) -> str:
        return self.said("Base URL")

    @property
    def api_key(self) -> str:
        """The first org's API key."""
        return self.said("API key")

    @property
    def connection(self) -> str:
        """The ``AIRFLOW_CONN_COVERBASE_DEFAULT`` value the banner tells the user to export."""
        line = next(line for line in self.banner if line.startswith(_CONNECTION_LINE))
        return shlex.split(line.removeprefix("export "))[0].split("=", 1)[1]

    def wait_until_serving(self, timeout: float = 15.0) -> None:
        """Return once ``GET /_emulator`` answers (the banner is printed just before serving starts)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.base_url}/_emulator", timeout=timeout):  # noqa: S310 - loopback
                    return
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process and wait for it."""
        self.process.terminate()
        self.process.wait(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_emulator_process(
    args: Sequence[str] = (),
    *,
    python: str = sys.executable,
    stderr: int | IO[str] | None = None,
    echo: bool = False,
) -> EmulatorProcess:
    """Start ``python -m airflow_provider_coverbase.testing [args]`` and read its banner.

    ``--port 0`` (a free port) is added unless ``args`` name a port. ``echo`` prints each banner line
    as it comes (``[emulator] ...``). Raises :class:`RuntimeError` if the process ends before its
    banner is complete (a bad config or a port in use: the command said why on its stderr).
    """
    command = [python, "-m", "airflow_provider_coverbase.testing", *args]
    if "--port" not in args:
        command[3:3] = ["--port", "0"]
    process = subprocess.Popen(  # noqa: S603 - our own module, run by the given interpreter
        command, stdout=subprocess.PIPE, stderr=stderr, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    assert process.stdout is not None
    banner: list[str] = []
    while not (banner and banner[-1].startswith(_LAST_BANNER_LINE)):
        line = process.stdout.readline()
        if not line:
            process.kill()
            process.wait()
            raise RuntimeError(f"the Coverbase emulator exited before it started serving: {command}")
        banner.append(line.rstrip("\n"))
        if echo:
            print(f"[emulator] {banner[-1]}", flush=True)
    return EmulatorProcess(process, banner)
