"""The 429 round (ours against the emulator's request budget) and the simulated fortnight."""

from __future__ import annotations

import itertools
import json
import math
import urllib.request
from collections import Counter, defaultdict
from typing import Any

from airflow_provider_coverbase.testing.process import EmulatorProcess, start_emulator_process
from benchmarks.harness import module_command
from benchmarks.harness.report import fmt, human_duration, percentile, print_table
from benchmarks.triggerer_scale.bench import Bench
from benchmarks.triggerer_scale.kinds import KINDS


def start_emulator(bench: Bench, log_limit: int) -> EmulatorProcess:
    config = bench.workdir / "emulator.json"
    config.write_text(json.dumps({"request_log_limit": log_limit}))
    emulator = start_emulator_process(["--config", str(config)])
    bench.children.append(emulator.process)
    return emulator


def emulator_call(base_url: str, method: str, path: str, body: Any = None, key: str | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base_url + path, data=data, method=method)  # noqa: S310 - loopback
    request.add_header("content-type", "application/json")
    if key:
        request.add_header("authorization", f"Bearer {key}")
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback emulator
        raw = response.read()
    return json.loads(raw) if raw else None


def round_limit(bench: Bench) -> dict[str, Any]:
    """Ours against the emulator's per-org request budget."""
    args = bench.args
    from airflow_provider_coverbase.testing import DEFAULT_ORG1_KEY

    n, poll, seconds = args.limit_n, args.poll_large, args.limit_seconds
    print(
        f"\n### 429 round: {n:,} triggers of one connection, poll {poll:g} s, emulator budget "
        f"{args.limit_rate:g} requests/s, measured for {seconds:g} s from the triggers' start; "
        f"connection extra {json.dumps(args.limit_extra)}\n",
        flush=True,
    )
    with start_emulator(bench, log_limit=max(100_000, int(n * seconds))) as emulator:
        base_url = emulator.base_url
        import concurrent.futures

        def start_run(_: int) -> str:
            created = emulator_call(
                base_url, "POST", "/v1/workflows/stalled-forever/run", {"input": {}}, DEFAULT_ORG1_KEY
            )
            return str(created["workflow_run_id"])

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            run_ids = list(pool.map(start_run, range(n)))
        emulator_call(base_url, "DELETE", "/_emulator/requests")
        emulator_call(
            base_url, "POST", "/_emulator/limits", {"requests_per_window": int(args.limit_rate), "window_seconds": 1.0}
        )
        ids_file = bench.workdir / "limit-run-ids.json"
        ids_file.write_text(json.dumps(run_ids))
        conn = {"conn_type": "coverbase", "host": base_url, "password": DEFAULT_ORG1_KEY, "extra": args.limit_extra}
        env = {
            "AIRFLOW_HOME": str(bench.workdir / "airflow-home"),
            "PYTHONUNBUFFERED": "1",
            "AIRFLOW_CONN_COVERBASE_BENCH": json.dumps(conn),
        }
        (bench.workdir / "airflow-home").mkdir(exist_ok=True)
        worker = bench.spawn(
            module_command(
                "benchmarks.triggerer_scale",
                "--work",
                "limit",
                "--kind",
                "ours",
                "--n",
                str(n),
                "--poll",
                str(poll),
                "--limit-seconds",
                str(seconds),
                "--ids-file",
                str(ids_file),
                "--ours-kwargs",
                json.dumps(args.ours_kwargs),
                "--log-level",
                args.log_level,
                "--setup-timeout",
                str(args.setup_timeout),
            ),
            env,
        )
        result = bench.collect(worker, args.worker_timeout)
        log = emulator_call(base_url, "GET", "/_emulator/requests")["data"]
    begin, end = result.get("window_begin"), result.get("window_end")
    if begin is None or end is None:
        print(f"429 round failed: {result.get('error')}\n")
        return result
    gets = [e for e in log if e["method"] == "GET" and e["path"].startswith("/v1/workflows/runs/")]
    window = [e for e in gets if begin <= e["time"] <= end]
    limited = [e for e in window if e["status"] == 429]
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in gets:
        by_run[e["path"]].append(e)
    gaps = []
    for entries in by_run.values():
        entries.sort(key=lambda e: e["time"])
        for before, after in itertools.pairwise(entries):
            if before["status"] == 429 and begin <= before["time"] <= end:
                gaps.append(after["time"] - before["time"])
    per_run = Counter(e["path"] for e in window)
    summary = {
        "answers": len(window),
        "answers_429": len(limited),
        "share_429": len(limited) / len(window) if window else math.nan,
        "requests_per_s": len(window) / (end - begin),
        "gap_after_429_min_s": min(gaps, default=math.nan),
        "gap_after_429_p50_s": percentile(gaps, 0.5),
        "max_requests_per_trigger": max(per_run.values(), default=0),
        **result,
    }
    print_table(
        [
            "answers",
            "429 answers",
            "share 429",
            "requests/s",
            "gap after a 429: min / p50 s",
            "most requests by one trigger",
        ],
        [
            [
                f"{summary['answers']:,}",
                f"{summary['answers_429']:,}",
                f"{summary['share_429']:.2%}",
                fmt(summary["requests_per_s"], 1),
                f"{fmt(summary['gap_after_429_min_s'], 1)} / {fmt(summary['gap_after_429_p50_s'], 1)}",
                str(summary["max_requests_per_trigger"]),
            ]
        ],
    )
    return summary


def round_fortnight(bench: Bench) -> dict[str, Any]:
    args = bench.args
    with bench.server(args.tls) as (counters, port):
        process = bench.spawn(
            bench.worker_argv(KINDS["ours"], "fortnight", counters, 1, 30.0),
            {
                **bench.worker_env(KINDS["ours"], port, False),
                "AIRFLOW_CONN_COVERBASE_BENCH": json.dumps(KINDS["ours"].connection(port, False, args.fortnight_extra)),
            },
        )
        result = bench.collect(process, args.worker_timeout)
    print(
        "\n### One run per length on a simulated clock, ours with its default settings "
        f"(trigger kwargs {json.dumps(args.ours_kwargs)}, connection extra {json.dumps(args.fortnight_extra)}); "
        "each run ends just after a poll (the worst case of fixed polling)\n"
    )
    rows = []
    for row in result.get("rows", []):
        age = row["age_s"]
        rows.append(
            [
                human_duration(age),
                f"{row['gets']:,}",
                f"{int(age // 30) + 1:,}",
                fmt(row["delay_s"], 1),
                f"{row['delay_s'] / age:.2%}",
                row["outcome"],
            ]
        )
    if not rows:
        print(f"fortnight round failed: {result.get('error')}\n")
    else:
        print_table(
            ["run length", "GETs", "GETs at a fixed 30 s", "detection delay s", "delay / run length", "event"],
            rows,
        )
    return result
