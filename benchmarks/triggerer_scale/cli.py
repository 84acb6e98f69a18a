"""The command line: parse the flags, then run the server, a worker, or the rounds."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import benchmarks.triggerer_scale as package
from benchmarks.harness.report import machine_line
from benchmarks.harness.server import make_certificate
from benchmarks.triggerer_scale.bench import Bench
from benchmarks.triggerer_scale.kinds import CHECK_MODULE, KINDS
from benchmarks.triggerer_scale.limit import round_fortnight, round_limit
from benchmarks.triggerer_scale.rounds import print_targets, round_errors, round_scale, round_setup
from benchmarks.triggerer_scale.workers import limit_main, worker_main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(package.__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=100,1000, 6 s windows, 20 s error phases")
    parser.add_argument("--n", type=_ints, default=None, help="comma-separated N values (default 100,1000,5000,10000)")
    parser.add_argument("--kinds", type=_names, default=list(KINDS), help="comma-separated: " + ",".join(KINDS))
    parser.add_argument(
        "--rounds",
        type=_rounds,
        default=["scale", "setup", "errors", "limit", "fortnight"],
        help="scale,setup,errors,limit,fortnight",
    )
    parser.add_argument(
        "--setup-poll", type=float, default=36000.0, help="setup round: poll interval (ours polls first within it)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="measurement windows per worker (median)")
    parser.add_argument("--repeats-large", type=int, default=1, help="windows per worker for N > 1,000")
    parser.add_argument("--process-repeats", type=int, default=1, help="fresh workers per kind and N (median)")
    parser.add_argument("--window", type=float, default=0.0, help="seconds per window (whole polls; default 1 poll)")
    parser.add_argument("--poll-small", type=float, default=5.0, help="poll interval for N <= 1,000")
    parser.add_argument("--poll-large", type=float, default=30.0, help="poll interval for N > 1,000")
    parser.add_argument("--detect-spread", type=float, default=5.0, help="runs end one after another over this")
    parser.add_argument("--detect-timeout", type=float, default=0.0, help="wait this long after (default 1.5 polls)")
    parser.add_argument("--setup-timeout", type=float, default=300.0, help="give up a worker whose triggers lag")
    parser.add_argument("--worker-timeout", type=float, default=900.0)
    parser.add_argument("--error-n", type=int, default=20, help="triggers per kind in the error round")
    parser.add_argument("--error-seconds", type=float, default=60.0)
    parser.add_argument("--recovery-seconds", type=float, default=60.0)
    parser.add_argument("--limit-n", type=int, default=5000)
    parser.add_argument("--limit-rate", type=float, default=50.0)
    parser.add_argument("--limit-seconds", type=float, default=60.0)
    parser.add_argument(
        "--fortnight-ages", type=_floats, default=[600.0, 3600.0, 86400.0, 14 * 86400.0], help="run lengths in seconds"
    )
    parser.add_argument("--tls", action="store_true", help="every kind over TLS (dbt always is)")
    parser.add_argument(
        "--stagger",
        action="store_true",
        help="scale round: start the triggers evenly over one poll interval instead of all at once",
    )
    parser.add_argument("--ours-kwargs", type=json.loads, default={}, help="extra trigger kwargs for ours (JSON)")
    parser.add_argument(
        "--ours-extra", type=json.loads, default={}, help="our connection's extra in the scale and error rounds (JSON)"
    )
    parser.add_argument(
        "--fortnight-extra",
        type=json.loads,
        default={},
        help="our connection's extra in the simulated-clock round (JSON; a budget there reads the real clock)",
    )
    parser.add_argument(
        "--limit-extra", type=json.loads, default={}, help="our connection's extra in the 429 round (default: none)"
    )
    parser.add_argument("--log-level", default="INFO", help="the worker's log level (lines go to /dev/null)")
    # Internal: the server and worker processes.
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--counters", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--poll", type=float, default=5.0, help=argparse.SUPPRESS)
    parser.add_argument("--check-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ids-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.n = args.n or [100, 1000]
        args.repeats = min(args.repeats, 2)
        args.error_seconds = min(args.error_seconds, 20.0)
        args.recovery_seconds = min(args.recovery_seconds, 30.0)
        args.limit_n = min(args.limit_n, 1000)
        args.limit_seconds = min(args.limit_seconds, 20.0)
    if args.n is None:
        args.n = [100, 1000, 5000, 10000]
    return args


def _ints(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _names(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = set(names) - set(KINDS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown kind(s) {sorted(unknown)}; choose from {list(KINDS)}")
    return names


def _rounds(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = set(names) - {"scale", "setup", "errors", "limit", "fortnight"}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown round(s) {sorted(unknown)}")
    return names


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.work:
        args.n = args.n[0]
        if args.work == "limit":
            result = limit_main(args)
            print("RESULT " + json.dumps(result), flush=True)
            return
        args.round = args.work
        worker_main(args)
        return
    workdir = Path(tempfile.mkdtemp(prefix="triggerer-scale-"))
    (workdir / f"{CHECK_MODULE}.py").write_text(
        "async def ready(response):\n    return response.json().get('ready') is True\n"
    )
    bench = Bench(args, workdir, make_certificate(workdir))
    began = time.monotonic()
    print(f"# Triggerer scale benchmark\n\nMachine: {machine_line()}")
    print(f"Command: {' '.join([Path(sys.executable).name, *sys.argv])}\n", flush=True)
    try:
        if "scale" in args.rounds:
            table = round_scale(bench)
            print_targets(table)
        if "setup" in args.rounds:
            round_setup(bench)
        if "errors" in args.rounds:
            round_errors(bench)
        if "limit" in args.rounds:
            round_limit(bench)
        if "fortnight" in args.rounds:
            round_fortnight(bench)
    finally:
        bench.stop_children()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"Total time: {time.monotonic() - began:.0f} s")
