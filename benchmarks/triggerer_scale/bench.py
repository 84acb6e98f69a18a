"""The orchestrator's processes: fake servers and workers, each in its own process."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, module_command
from benchmarks.harness.counters import Counters
from benchmarks.harness.server import fake_server
from benchmarks.triggerer_scale.kinds import Kind


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    certfile: Path
    children: list[subprocess.Popen[str]] = field(default_factory=list)

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            argv,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.children.append(process)
        return process

    @contextlib.contextmanager
    def server(self, tls: bool) -> Iterator[tuple[Counters, int]]:
        with fake_server(self.certfile if tls else None, spawn=self.spawn) as (counters, port):
            yield counters, port

    def worker_env(self, kind: Kind, port: int, tls: bool) -> dict[str, str]:
        home = self.workdir / "airflow-home"
        home.mkdir(exist_ok=True)
        env = {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "PYTHONUNBUFFERED": "1",
            f"AIRFLOW_CONN_{kind.conn_id.upper()}": json.dumps(kind.connection(port, tls, self.args.ours_extra)),
        }
        if tls or kind.always_tls:
            env["SSL_CERT_FILE"] = str(self.certfile)
        return env

    def worker_argv(self, kind: Kind, round_name: str, counters: Counters, n: int, poll: float) -> list[str]:
        """The command of a worker process of ``round_name`` (this module with ``--work``)."""
        a = self.args
        return module_command(
            "benchmarks.triggerer_scale",
            "--work",
            round_name,
            "--kind",
            kind.name,
            "--counters",
            counters.name,
            "--n",
            str(n),
            "--poll",
            str(poll),
            "--window",
            str(poll * max(1, round(a.window / poll)) if a.window else poll),
            "--repeats",
            str(a.repeats if n <= 1000 else a.repeats_large),
            "--detect-spread",
            str(a.detect_spread),
            "--detect-timeout",
            str(a.detect_timeout if a.detect_timeout else poll * 1.5 + 5),
            "--setup-timeout",
            str(a.setup_timeout),
            "--error-seconds",
            str(a.error_seconds),
            "--recovery-seconds",
            str(a.recovery_seconds),
            "--fortnight-ages",
            ",".join(str(x) for x in a.fortnight_ages),
            "--ours-kwargs",
            json.dumps(a.ours_kwargs),
            "--log-level",
            a.log_level,
            *(["--stagger"] if a.stagger else []),
            "--check-dir",
            str(self.workdir),
        )

    def collect(self, process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
        try:
            out, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
            return {"error": f"worker timed out after {timeout:.0f} s"}
        for line in out.splitlines():
            if line.startswith("RESULT "):
                parsed: dict[str, Any] = json.loads(line[7:])
                return parsed
        return {"error": f"worker exited {process.returncode} without a result"}

    def run_worker(self, kind: Kind, round_name: str, n: int, poll: float, tls: bool) -> dict[str, Any]:
        with self.server(tls or kind.always_tls) as (counters, port):
            process = self.spawn(
                self.worker_argv(kind, round_name, counters, n, poll), self.worker_env(kind, port, tls)
            )
            result = self.collect(process, self.args.worker_timeout)
            result.update(kind=kind.name, n=n, poll=poll)
            return result

    def stop_children(self) -> None:
        for process in self.children:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
