"""The scale, setup and error rounds: workers per N and kind, then the tables and the targets."""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from collections import defaultdict
from typing import Any

from benchmarks.harness.report import fmt, median_of, print_table
from benchmarks.triggerer_scale.bench import Bench
from benchmarks.triggerer_scale.kinds import KINDS

SCALE_KEYS = (
    "cpu_s_per_1k_polls",
    "rss_mb_per_1k",
    "rss_mb",
    "new_conns_per_1k_polls",
    "lag_p99_ms",
    "setup_lag_max_ms",
    "detect_p50_s",
    "detect_p95_s",
    "setup_ms_per_trigger",
    "polls_measured",
)


def poll_for(n: int, args: argparse.Namespace) -> float:
    return float(args.poll_small if n <= 1000 else args.poll_large)


def round_scale(bench: Bench) -> dict[int, dict[str, dict[str, Any]]]:
    args = bench.args
    table: dict[int, dict[str, dict[str, Any]]] = {}
    for n in args.n:
        poll = poll_for(n, args)
        runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for _ in range(args.process_repeats):
            for name in args.kinds:
                began = time.monotonic()
                result = bench.run_worker(KINDS[name], "scale", n, poll, args.tls)
                runs[name].append(result)
                note = result.get("error") or (
                    f"cpu/1k {fmt(result.get('cpu_s_per_1k_polls'))} s, rss/1k {fmt(result.get('rss_mb_per_1k'), 1)} MB"
                )
                print(f"  [scale] N={n:,} {name}: {note} ({time.monotonic() - began:.0f} s)", flush=True)
        merged: dict[str, dict[str, Any]] = {}
        for name, results in runs.items():
            merged[name] = {key: median_of(results, key) for key in SCALE_KEYS}
            merged[name]["errors"] = [r["error"] for r in results if r.get("error")]
            merged[name]["cpu_windows"] = [x for r in results for x in r.get("cpu_s_per_1k_polls_all", [])]
        table[n] = merged
        print_scale_table(n, poll, merged, args)
    return table


def print_scale_table(n: int, poll: float, merged: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    windows = args.repeats if n <= 1000 else args.repeats_large
    print(
        f"\n### N = {n:,} waiting triggers, poll every {poll:g} s "
        f"(median of {windows} windows x {args.process_repeats} process(es))\n"
    )
    headers = [
        "kind",
        "CPU s / 1,000 polls",
        "MB RSS / 1,000 triggers",
        "RSS total MB",
        "new conns / 1,000 polls",
        "loop lag p99 ms",
        "max stall at start ms",
        "detect p50 / p95 s",
        "setup CPU ms / trigger",
        "polls measured",
    ]
    rows = []
    for name, m in merged.items():
        if m["errors"] and math.isnan(m["cpu_s_per_1k_polls"]):
            rows.append([KINDS[name].label, "; ".join(m["errors"]), *[""] * 8])
            continue
        rows.append(
            [
                KINDS[name].label,
                fmt(m["cpu_s_per_1k_polls"]),
                fmt(m["rss_mb_per_1k"], 1),
                fmt(m["rss_mb"], 0),
                fmt(m["new_conns_per_1k_polls"], 0),
                fmt(m["lag_p99_ms"], 1),
                fmt(m["setup_lag_max_ms"], 0),
                f"{fmt(m['detect_p50_s'], 1)} / {fmt(m['detect_p95_s'], 1)}",
                fmt(m["setup_ms_per_trigger"], 2),
                fmt(m["polls_measured"], 0),
            ]
        )
    print_table(headers, rows)
    ours = merged.get("ours")
    peers = [name for name in merged if name != "ours"]
    if ours and peers:
        print(f"Ours relative to each peer at N = {n:,} (below 1 is better for ours):\n")
        ratio_rows = []
        for name in peers:
            peer = merged[name]

            def ratio(key: str, peer: dict[str, Any] = peer) -> str:
                a, b = ours[key], peer[key]
                if math.isnan(a) or math.isnan(b) or b == 0:
                    return "n/a"
                return f"{a / b:.2f}x"

            ratio_rows.append(
                [
                    KINDS[name].label,
                    ratio("cpu_s_per_1k_polls"),
                    ratio("rss_mb_per_1k"),
                    ratio("new_conns_per_1k_polls"),
                    ratio("setup_ms_per_trigger"),
                ]
            )
        print_table(["ours / peer", "CPU per poll", "RSS per trigger", "new conns per poll", "setup CPU"], ratio_rows)


def print_targets(table: dict[int, dict[str, dict[str, Any]]]) -> None:
    """The issue's targets, met or not, from this run's figures."""
    lines = []

    def mark(ok: bool | None, *measured: float | None) -> str:
        if ok is None or any(m is None or math.isnan(m) for m in measured):
            return "n/a"
        return "met" if ok else "NOT met"

    for n in (1000, 5000):
        merged = table.get(n)
        if not merged or "ours" not in merged:
            continue
        ours = merged["ours"]
        peers = {k: v for k, v in merged.items() if k != "ours"}
        best_rss = min((v["rss_mb_per_1k"] for v in peers.values() if not math.isnan(v["rss_mb_per_1k"])), default=None)
        best_cpu = min(
            (v["cpu_s_per_1k_polls"] for v in peers.values() if not math.isnan(v["cpu_s_per_1k_polls"])), default=None
        )
        rss, cpu, conns = ours["rss_mb_per_1k"], ours["cpu_s_per_1k_polls"], ours["new_conns_per_1k_polls"]
        lines.append(
            [
                f"N={n:,}: RSS per trigger <= best peer's",
                f"{fmt(rss, 1)} vs {fmt(best_rss, 1)} MB/1,000",
                mark(None if best_rss is None else rss <= best_rss, rss, best_rss),
            ]
        )
        lines.append(
            [
                f"N={n:,}: CPU per poll <= half the best peer's",
                f"{fmt(cpu)} vs {fmt(best_cpu)} s/1,000",
                mark(None if best_cpu is None else cpu <= best_cpu / 2, cpu, best_cpu),
            ]
        )
        lines.append([f"N={n:,}: <= 10 new connections per 1,000 polls", fmt(conns, 0), mark(conns <= 10, conns)])
    if 5000 in table and "ours" in table[5000]:
        lag = table[5000]["ours"]["lag_p99_ms"]
        lines.append(["N=5,000 (30 s poll): loop lag p99 < 100 ms", f"{fmt(lag, 1)} ms", mark(lag < 100, lag)])
    if 10000 in table and "ours" in table[10000]:
        total = table[10000]["ours"]["rss_mb"]
        lines.append(["N=10,000: process RSS < 1 GB", f"{fmt(total, 0)} MB", mark(total < 1000, total)])
    if lines:
        print("\n### Targets of issue 8 (ours)\n")
        print_table(["target", "measured", "status"], lines)


SETUP_KEYS = ("setup_cpu_ms_per_trigger", "setup_requests_per_trigger", "setup_wall_s", "setup_stall_max_ms")


def round_setup(bench: Bench) -> dict[int, dict[str, dict[str, Any]]]:
    """Setup CPU per trigger measured directly (see :func:`worker_setup`), per N and kind."""
    args = bench.args
    table: dict[int, dict[str, dict[str, Any]]] = {}
    for n in args.n:
        runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for _ in range(args.process_repeats):
            for name in args.kinds:
                result = bench.run_worker(KINDS[name], "setup", n, args.setup_poll, args.tls)
                runs[name].append(result)
                note = result.get("error") or f"{fmt(result.get('setup_cpu_ms_per_trigger'))} ms CPU per trigger"
                print(f"  [setup] N={n:,} {name}: {note}", flush=True)
        merged = {name: {key: median_of(results, key) for key in SETUP_KEYS} for name, results in runs.items()}
        table[n] = merged
        print(
            f"\n### Setting up N = {n:,} triggers (first poll {args.setup_poll:g} s away; "
            f"median of {args.process_repeats} process(es))\n"
        )
        rows = [
            [
                KINDS[name].label,
                fmt(m["setup_cpu_ms_per_trigger"], 3),
                fmt(m["setup_requests_per_trigger"], 2),
                fmt(m["setup_wall_s"], 1),
                fmt(m["setup_stall_max_ms"], 0),
            ]
            for name, m in merged.items()
        ]
        headers = ["kind", "setup CPU ms / trigger", "requests / trigger meanwhile", "wall s", "max loop stall ms"]
        print_table(headers, rows)
    return table


def round_errors(bench: Bench) -> list[dict[str, Any]]:
    args = bench.args
    print(
        f"\n### Error round: {args.error_n} triggers per kind, poll {args.poll_small:g} s; "
        f"HTTP 500 for {args.error_seconds:g} s, then connection refused for {args.error_seconds:g} s, "
        f"then the server is back and every run ends (watched for {args.recovery_seconds:g} s)\n",
        flush=True,
    )
    results = []
    with contextlib.ExitStack() as stack:
        started = []
        for name in args.kinds:
            kind = KINDS[name]
            counters, port = stack.enter_context(bench.server(args.tls or kind.always_tls))
            process = bench.spawn(
                bench.worker_argv(kind, "errors", counters, args.error_n, args.poll_small),
                bench.worker_env(kind, port, args.tls),
            )
            started.append((kind, process))
        for kind, process in started:
            result = bench.collect(process, args.worker_timeout)
            result["kind"] = kind.name
            results.append(result)

    def outcome(counts: Any) -> str:
        if not isinstance(counts, dict):
            return "n/a"
        return ", ".join(f"{v} {k}" for k, v in counts.items())

    rows = [
        [
            KINDS[r["kind"]].label,
            fmt(r.get("http500_req_per_trigger_s")),
            outcome(r.get("after_http500")),
            fmt(r.get("refused_attempts_per_trigger_s")),
            outcome(r.get("after_refused")),
            outcome(r.get("after_recovery")),
            r.get("error", ""),
        ]
        for r in results
    ]
    print_table(
        [
            "kind",
            "requests / trigger / s (HTTP 500)",
            "after the 500s",
            "connects / trigger / s (refused)",
            "after refused",
            "after recovery (runs ended)",
            "",
        ],
        rows,
    )
    return results
