"""The worker process: N triggers of one kind in one event loop, one round, one JSON line of figures."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness.counters import (
    ACCEPTED,
    FLIP_SPREAD,
    FLIP_START,
    MODE,
    MODE_HTTP_500,
    MODE_NORMAL,
    MODE_REFUSED,
    N_RUNS,
    PORT,
    REQUESTS,
    STARTED_AT,
    VIRTUAL_NOW,
    Counters,
    flip_time,
)
from benchmarks.harness.fleet import (
    Fleet,
    build_trigger,
    drive,
    lag_monitor,
    rss_mb,
    start_fleet,
    stop_fleet,
    wait_until,
)
from benchmarks.harness.report import percentile
from benchmarks.triggerer_scale.kinds import KINDS


async def worker_scale(args: argparse.Namespace, counters: Counters) -> dict[str, Any]:
    kind = KINDS[args.kind]
    n, poll = args.n, args.poll
    monitor = asyncio.create_task(lag_monitor(fleet_holder := Fleet(0)))
    await asyncio.sleep(0.2)
    gc.collect()
    rss_before = rss_mb()
    cpu0, wall0, perf0 = time.process_time(), time.time(), time.perf_counter()
    counters[STARTED_AT] = wall0
    fleet = await start_fleet(kind, n, poll, counters, args.ours_kwargs, poll if args.stagger else 0.0)
    fleet.lag = fleet_holder.lag
    all_polled = await wait_until(lambda: counters[REQUESTS] >= n or fleet.finished() >= n, args.setup_timeout)
    all_polled = all_polled and counters[REQUESTS] >= n
    first_cpu = time.process_time() - cpu0
    setup_wall = time.time() - wall0
    perf_setup_end = time.perf_counter()
    setup_lag = [lag for at, lag in fleet.lag if perf0 <= at <= perf_setup_end]
    result: dict[str, Any] = {
        "kind": kind.name,
        "n": n,
        "poll": poll,
        "all_polled": all_polled,
        "setup_wall_s": setup_wall,
        "setup_lag_max_ms": max(setup_lag, default=0.0) * 1000,
        "first_round_cpu_s": first_cpu,
    }
    if not all_polled:
        result["error"] = (
            f"only {int(counters[REQUESTS])} of {n} triggers polled within {args.setup_timeout:.0f} s; "
            f"outcomes {fleet.outcomes()}"
        )
        monitor.cancel()
        await stop_fleet(fleet)
        return result
    # Windows of whole poll intervals: triggers started together poll together, so a shorter window
    # could hold no poll at all.
    await asyncio.sleep(min(1.0, poll / 5))
    cpu_per_k, conns_per_k, polls, window_lag = [], [], 0, []
    for _ in range(args.repeats):
        c0, r0, a0, p0 = time.process_time(), counters[REQUESTS], counters[ACCEPTED], time.perf_counter()
        await asyncio.sleep(args.window)
        c1, r1, a1, p1 = time.process_time(), counters[REQUESTS], counters[ACCEPTED], time.perf_counter()
        if r1 > r0:
            cpu_per_k.append((c1 - c0) / (r1 - r0) * 1000)
            conns_per_k.append((a1 - a0) / (r1 - r0) * 1000)
        polls += int(r1 - r0)
        window_lag += [lag for at, lag in fleet.lag if p0 <= at <= p1]
    gc.collect()
    rss_after = rss_mb()
    cpu_per_poll = statistics.median(cpu_per_k) / 1000 if cpu_per_k else math.nan
    result.update(
        cpu_s_per_1k_polls=statistics.median(cpu_per_k) if cpu_per_k else math.nan,
        cpu_s_per_1k_polls_all=cpu_per_k,
        new_conns_per_1k_polls=statistics.median(conns_per_k) if conns_per_k else math.nan,
        polls_measured=polls,
        rss_base_mb=rss_before,
        rss_mb=rss_after,
        rss_mb_per_1k=(rss_after - rss_before) / n * 1000,
        lag_p99_ms=percentile(window_lag, 0.99) * 1000,
        lag_max_ms=max(window_lag, default=math.nan) * 1000,
        setup_ms_per_trigger=max(0.0, first_cpu / n - cpu_per_poll) * 1000 if cpu_per_k else math.nan,
        first_poll_ms_per_trigger=first_cpu / n * 1000,
    )
    # Detection: runs turn terminal one after the other over `spread` seconds.
    spread = args.detect_spread
    counters[N_RUNS] = n
    counters[FLIP_SPREAD] = spread
    counters[FLIP_START] = time.time() + 0.2
    await wait_until(lambda: fleet.finished() >= n, spread + args.detect_timeout + 0.2)
    delays = []
    for i in range(n):
        flip = flip_time(counters, i)
        if fleet.done_at[i] and flip is not None:
            delays.append(fleet.done_at[i] - flip)
    result.update(
        detect_p50_s=percentile(delays, 0.5),
        detect_p95_s=percentile(delays, 0.95),
        detected=len(delays),
        outcomes=fleet.outcomes(),
    )
    monitor.cancel()
    await stop_fleet(fleet)
    return result


async def worker_setup(args: argparse.Namespace, counters: Counters) -> dict[str, Any]:
    """Setting up alone: CPU from creating ``n`` triggers until the loop is idle again.

    The poll interval is long (``--setup-poll``), so ours does not poll yet (its first poll comes at
    a random point of the first interval) and the figure is its setup only: building the trigger,
    the hook, the async connection lookup, the parsed settings, acquiring the shared client and
    preparing the request. The peers poll at once when they start, so theirs includes that first
    request (the table shows requests per trigger). Idle: a quarter second in which the process used
    at most 2% of a CPU more than before the triggers (the loop-lag ticker's own CPU) and no request
    reached the server. Not counted: that last quarter second, and the idle CPU over the wall time.
    """
    kind = KINDS[args.kind]
    n = args.n
    monitor = asyncio.create_task(lag_monitor(holder := Fleet(0)))
    await asyncio.sleep(0.2)
    gc.collect()
    c = time.process_time()
    await asyncio.sleep(1.0)
    idle_rate = time.process_time() - c  # CPU seconds per second with no trigger (the ticker)
    cpu0, wall0, perf0 = time.process_time(), time.monotonic(), time.perf_counter()
    fleet = await start_fleet(kind, n, args.poll, counters, args.ours_kwargs)
    quiet = 0.25
    while True:
        c, r = time.process_time(), counters[REQUESTS]
        await asyncio.sleep(quiet)
        last = time.process_time() - c
        if last <= (idle_rate + 0.02) * quiet and counters[REQUESTS] == r:
            break
        if time.monotonic() - wall0 > args.setup_timeout:
            monitor.cancel()
            await stop_fleet(fleet)
            return {"error": f"the loop did not go idle within {args.setup_timeout:.0f} s"}
    wall = time.monotonic() - wall0 - quiet
    cpu = time.process_time() - cpu0 - last - idle_rate * wall
    perf_end = time.perf_counter() - quiet
    stall = max((lag for at, lag in holder.lag if perf0 <= at <= perf_end), default=0.0)
    result = {
        "setup_cpu_ms_per_trigger": cpu / n * 1000,
        "setup_requests_per_trigger": counters[REQUESTS] / n,
        "setup_wall_s": wall,
        "setup_stall_max_ms": stall * 1000,
        "idle_cpu_per_s": idle_rate,
        "ended_early": fleet.finished(),
    }
    monitor.cancel()
    await stop_fleet(fleet)
    return result


async def worker_errors(args: argparse.Namespace, counters: Counters) -> dict[str, Any]:
    kind = KINDS[args.kind]
    n, poll, seconds = args.n, args.poll, args.error_seconds
    fleet = await start_fleet(kind, n, poll, counters, args.ours_kwargs)
    all_polled = await wait_until(lambda: counters[REQUESTS] >= n, args.setup_timeout)
    await asyncio.sleep(poll)
    result: dict[str, Any] = {"kind": kind.name, "n": n, "poll": poll, "all_polled": all_polled}
    # HTTP 500 for `seconds`.
    r0 = counters[REQUESTS]
    counters[MODE] = MODE_HTTP_500
    await asyncio.sleep(seconds)
    result["http500_req_per_trigger_s"] = (counters[REQUESTS] - r0) / n / seconds
    result["after_http500"] = fleet.outcomes()
    # Connection refused for `seconds`: count connection attempts (audit events of socket.connect).
    port = int(counters[PORT])
    attempts = [0]

    def audit(event: str, event_args: tuple[Any, ...]) -> None:
        if event == "socket.connect" and isinstance(event_args[1], tuple) and event_args[1][1:2] == (port,):
            attempts[0] += 1

    sys.addaudithook(audit)
    counters[MODE] = MODE_REFUSED
    await asyncio.sleep(seconds)
    result["refused_attempts_per_trigger_s"] = attempts[0] / n / seconds
    result["after_refused"] = fleet.outcomes()
    # Back: every run ends now; how many triggers notice within the recovery window?
    counters[MODE] = MODE_NORMAL
    counters[N_RUNS], counters[FLIP_SPREAD], counters[FLIP_START] = n, 0.0, time.time()
    began = time.time()
    await wait_until(lambda: fleet.finished() >= n, args.recovery_seconds)
    result["recovery_seconds"] = args.recovery_seconds
    result["after_recovery"] = fleet.outcomes()
    done = [t - began for t, o in zip(fleet.done_at, fleet.outcome, strict=True) if o and t >= began]
    result["recovered_p50_s"] = percentile(done, 0.5)
    await stop_fleet(fleet)
    return result


async def worker_fortnight(args: argparse.Namespace, counters: Counters) -> dict[str, Any]:
    """One trigger per run length on a simulated clock: ``time.time`` and ``asyncio.sleep`` are virtual."""
    kind = KINDS["ours"]
    clock = [1_800_000_000.0]
    real_sleep = asyncio.sleep

    async def virtual_sleep(delay: float, result: Any = None) -> Any:
        clock[0] += max(0.0, float(delay))
        counters[VIRTUAL_NOW] = clock[0]
        await real_sleep(0)
        return result

    time.time = lambda: clock[0]  # type: ignore[assignment]  # the simulated clock, for this process only
    asyncio.sleep = virtual_sleep  # type: ignore[assignment]
    rows = []
    for age in args.fortnight_ages:
        counters[VIRTUAL_NOW] = clock[0]
        counters[STARTED_AT] = clock[0]
        counters[N_RUNS], counters[FLIP_SPREAD], counters[FLIP_START] = 1, 0.0, clock[0] + age + 0.001
        r0 = counters[REQUESTS]
        fleet = Fleet(1)
        kwargs = kind.kwargs(0, 0.0, args.ours_kwargs)
        kwargs.pop("poll_interval")  # the trigger's default poll interval (and its other defaults)
        await drive(build_trigger(kind.classpath, kwargs), 0, fleet)
        rows.append(
            {
                "age_s": age,
                "gets": int(counters[REQUESTS] - r0),
                "delay_s": fleet.done_at[0] - (counters[FLIP_START]),
                "outcome": fleet.outcome[0],
            }
        )
    return {"kind": "ours", "rows": rows}


async def worker_limit(args: argparse.Namespace) -> dict[str, Any]:
    kind = KINDS["ours"]
    run_ids = args.run_ids
    fleet = Fleet(len(run_ids))
    # From the start, as after a triggerer restart: every trigger wants its first poll at once. The
    # emulator's clock is Unix time at speed 1, so the window is in the same seconds as its request log.
    begin = time.time()
    for i, run_id in enumerate(run_ids):
        kwargs = {**kind.kwargs(i, args.poll, args.ours_kwargs), "workflow_run_id": run_id}
        fleet.tasks.append(asyncio.create_task(drive(build_trigger(kind.classpath, kwargs), i, fleet)))
    await asyncio.sleep(args.limit_seconds)
    end = time.time()
    outcomes = fleet.outcomes()
    await stop_fleet(fleet)
    return {"window_begin": begin, "window_end": end, "outcomes": outcomes}


def worker_main(args: argparse.Namespace) -> None:
    """Entry point of the worker process: print one JSON line with the figures."""
    import logging

    if args.check_dir:
        sys.path.insert(0, args.check_dir)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        stream=open(os.devnull, "w"),  # noqa: SIM115 - lives as long as the process
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # Import what the triggers need before the baseline RSS is taken.
    importlib.import_module(KINDS[args.kind].classpath.rpartition(".")[0])
    import airflow.triggers.base  # noqa: F401

    counters = Counters(args.counters)
    try:
        round_fn = {
            "scale": worker_scale,
            "setup": worker_setup,
            "errors": worker_errors,
            "fortnight": worker_fortnight,
        }[args.round]
        result = asyncio.run(round_fn(args, counters))
    finally:
        counters.close()
    print("RESULT " + json.dumps(result), flush=True)


def limit_main(args: argparse.Namespace) -> dict[str, Any]:
    import logging

    logging.basicConfig(level=getattr(logging, args.log_level), stream=open(os.devnull, "w"))  # noqa: SIM115
    args.run_ids = json.loads(Path(args.ids_file).read_text())
    return asyncio.run(worker_limit(args))
