"""What the async transport under the shared client costs: aiohttp (ours) vs httpx-aiohttp, httpcore, none.

N ``CoverbaseWorkflowRunTrigger`` wait in one event loop of a worker process (one connection, so one
shared ``AsyncCoverbaseClient``), polling a never-finishing run every ``--poll`` seconds (fixed
polling). The server is the benchmarks' fake server (:mod:`benchmarks.harness.server`) in its own
process (keep-alive, counts the TCP connections it accepts and the requests it answers), so the
worker's CPU is the client's.

Each transport runs in a fresh worker; the transports alternate, ``--repeats`` times, and the table
shows the median of each figure:

- CPU s per 1,000 polls: ``time.process_time()`` of the worker over ``--windows`` whole poll
  intervals, divided by the requests the server answered in them;
- new connections per 1,000 polls: connections the server accepted in those windows;
- MB RSS per 1,000 triggers: the worker's RSS after the windows minus before the triggers started;
- loop lag p99: how late a 20 ms ``asyncio.sleep`` woke up during the windows.

Transports: ``aiohttp`` is the default
(:class:`~airflow_provider_coverbase.client.AiohttpTransport`: one aiohttp session, at most 32
connections); ``httpx-aiohttp`` is ``httpx_aiohttp.AiohttpTransport`` over one aiohttp session set up
the same way (the ``bench`` extra installs it); ``httpcore`` is httpx's own ``AsyncHTTPTransport``
with the same 32 connections kept alive; ``none`` answers inside the worker without any I/O (the
fake server's answer, made there): the floor of the trigger, our client and ``httpx.Response``.
Suffix ``+own-wake`` wakes each trigger at its own time instead of on the shared 0.25 s grid. The
connection's request budget is off (``max_requests_per_second: 0``), so the figures are the
transport's cost, not the budget's pacing.

    .venv-bench/bin/python -m benchmarks.transport_cpu [--n 1000] [--poll 5] [--repeats 3] [--transports aiohttp,none]

Measured on 2026-12-02 (2 shared CPUs, load average 8 to 10 from other jobs; aiohttp 3.14.5, httpx
0.28.1; N=1,000, 5 s polls, 2 poll intervals per worker, median of 3 workers each,
``--transports aiohttp,httpx-aiohttp,httpcore,none``), CPU s per 1,000 polls: **aiohttp 0.435**,
httpx-aiohttp 0.445, httpcore 3.96 (it also fell behind: about 800 of the 2,000 polls answered, 9.3
new connections per 1,000 polls), none 0.156. MB RSS per 1,000 triggers 7.2 / 7.4 / 10.7 / 5.0. An
earlier run of the same command with one worker each read 0.37 / 0.42 / 3.55 / 0.16. So aiohttp costs
about 0.2-0.3 ms of CPU per poll above the floor, a tenth of httpcore's cost; our adapter and
httpx-aiohttp cost the same within this machine's noise, and ours is kept for what httpx-aiohttp 0.2.0
gets wrong (see ``client/_transport.py``). The hand-made HTTP/1.1 transport it replaced read 0.21
against 0.17 with no I/O in the same benchmark (issue 14).

Until 2026-12-02 the fake server stamped each answer with the time of the request when its caller
set no run start (this benchmark did not), so every poll's body differed and the trigger parsed it
twice; the server now starts the runs at its first request. With a stable answer, on a
quiet machine (load average under 1, median of 3 workers): **aiohttp 0.392**, none 0.144 (the
fake server's answer, made in the worker, is about 0.03 of that). aiohttp is then about two thirds
of the trigger's CPU per poll.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from benchmarks.harness import ROOT, module_command
from benchmarks.harness.counters import ACCEPTED, REQUESTS, Counters
from benchmarks.harness.fleet import Fleet, lag_monitor, rss_mb, start_fleet, stop_fleet
from benchmarks.harness.report import median_of, percentile
from benchmarks.harness.server import answer, fake_server
from benchmarks.triggerer_scale.kinds import KINDS

OWN_WAKE = "own-wake"
#: Our trigger, as the trigger benchmark runs it (its connection, kwargs and class).
OURS = KINDS["ours"]


# ---------------------------------------------------------------------------------------------
# The worker process: N triggers, one transport.


def _no_network_class() -> type[Any]:
    import httpx

    class NoNetwork(httpx.AsyncBaseTransport):
        """Answers in the worker, without I/O: the floor that no transport can go below."""

        def __init__(self, counters: Counters) -> None:
            self.counters = counters

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            # The fake server's answer (it counts the request, as the server does), made in this process.
            head, _, body = answer(self.counters, "GET", request.url.path, b"").partition(b"\r\n\r\n")
            headers = [tuple(line.split(b": ", 1)) for line in head.split(b"\r\n")[1:]]
            return httpx.Response(200, headers=headers, content=body)

    return NoNetwork


def _NoNetwork(counters: Counters) -> Any:  # a class, made on first use
    return _no_network_class()(counters)


def transport_factory(name: str) -> Callable[[], Any]:
    """The factory of the shared client's transport called ``name``."""
    if name == "none":
        return _no_network_class()
    if name == "httpcore":
        import httpx

        from airflow_provider_coverbase.client._http import connection_limits, shared_ssl_context
        from airflow_provider_coverbase.defaults import DEFAULT_KEEPALIVE_EXPIRY

        limits = connection_limits(32, DEFAULT_KEEPALIVE_EXPIRY)
        return lambda: httpx.AsyncHTTPTransport(verify=shared_ssl_context(), limits=limits)
    if name == "aiohttp":
        from airflow_provider_coverbase.client._transport import DEFAULT_MAX_CONNECTIONS, AiohttpTransport
        from airflow_provider_coverbase.defaults import DEFAULT_KEEPALIVE_EXPIRY

        return lambda: AiohttpTransport(DEFAULT_MAX_CONNECTIONS, DEFAULT_KEEPALIVE_EXPIRY)
    if name == "httpx-aiohttp":
        return _aiohttp_factory()
    raise SystemExit(f"unknown transport {name!r}")


def _aiohttp_factory() -> Callable[[], Any]:
    try:
        import aiohttp
        from httpx_aiohttp import AiohttpTransport
    except ImportError:
        raise SystemExit("the aiohttp transport needs: .venv/bin/pip install httpx-aiohttp") from None

    from airflow_provider_coverbase.client._http import shared_ssl_context
    from airflow_provider_coverbase.defaults import DEFAULT_KEEPALIVE_EXPIRY

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=32, limit_per_host=0, keepalive_timeout=DEFAULT_KEEPALIVE_EXPIRY, ssl=shared_ssl_context()
        )
        return aiohttp.ClientSession(connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar())

    return lambda: AiohttpTransport(verify=shared_ssl_context(), trust_env=False, client=session)


def split_transport(name: str) -> tuple[str, set[str]]:
    """``"aiohttp+own-wake"`` -> ``("aiohttp", {"own-wake"})``: the transport and its suffixes."""
    transport, *suffixes = name.split("+")
    unknown = set(suffixes) - {OWN_WAKE}
    if unknown:
        raise SystemExit(f"unknown suffix {sorted(unknown)} in {name!r} (only +{OWN_WAKE})")
    return transport, set(suffixes)


def _wake_on_own_time() -> None:
    """Make every trigger wake at its own time, as before polls were put on a shared grid."""
    from airflow_provider_coverbase.triggers import coverbase

    coverbase.coalesced_delay = lambda now, pause, tick=0.0: pause  # type: ignore[assignment]


async def _work(args: argparse.Namespace, counters: Counters) -> dict[str, Any]:
    from airflow_provider_coverbase.client._shared_clients import shared_clients

    transport, suffixes = split_transport(args.transport)
    if OWN_WAKE in suffixes:
        _wake_on_own_time()
    if transport == "none":
        shared_clients._transport_factory = lambda: _NoNetwork(counters)
    else:
        shared_clients._transport_factory = transport_factory(transport)
    lag = Fleet(0)  # the loop lag's samples, taken from before the triggers start
    lag_task = asyncio.create_task(lag_monitor(lag))
    await asyncio.sleep(0.2)
    gc.collect()
    rss_before = rss_mb()
    # Spread over one poll interval, yielding between two, as a triggerer does; fixed polling.
    fleet = await start_fleet(OURS, args.n, args.poll, counters, {"max_poll_interval": args.poll}, stagger=args.poll)
    deadline = time.monotonic() + 120
    while counters[REQUESTS] < args.n * 2 and time.monotonic() < deadline:  # noqa: ASYNC110 - another process counts
        await asyncio.sleep(0.05)
    ended_early = fleet.finished()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    c0, r0, a0, p0 = time.process_time(), counters[REQUESTS], counters[ACCEPTED], time.perf_counter()
    await asyncio.sleep(args.poll * args.windows)
    c1, r1, a1, p1 = time.process_time(), counters[REQUESTS], counters[ACCEPTED], time.perf_counter()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(f"{args.profile}.{args.transport}")
    gc.collect()
    rss_after = rss_mb()
    lag_task.cancel()
    await stop_fleet(fleet)
    polls = r1 - r0
    window_lags = [late for at, late in lag.lag if p0 <= at <= p1]
    return {
        "transport": args.transport,
        "polls": int(polls),
        "ended_early": ended_early,
        "cpu_s_per_1k_polls": (c1 - c0) / polls * 1000 if polls else math.nan,
        "new_conns_per_1k_polls": (a1 - a0) / polls * 1000 if polls else math.nan,
        "conns_total": int(a1),
        "rss_mb_per_1k_triggers": (rss_after - rss_before) / args.n * 1000,
        "lag_p99_ms": percentile(window_lags, 0.99) * 1000,
    }


def work_main(args: argparse.Namespace) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, stream=open(os.devnull, "w"))  # noqa: SIM115 - process-long
    import airflow.triggers.base  # noqa: F401 - imported before the baseline RSS

    import airflow_provider_coverbase.triggers.coverbase  # noqa: F401

    transport_factory(split_transport(args.transport)[0])  # import the transport's modules before the baseline RSS too
    counters = Counters(args.counters)
    try:
        result = asyncio.run(_work(args, counters))
    finally:
        counters.close()
    print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------
# The orchestrator.


def run_worker(args: argparse.Namespace, transport: str, home: str) -> dict[str, Any]:
    with fake_server() as (counters, port):
        connection = OURS.connection(port, False, {"max_requests_per_second": 0})  # the transport, not the budget
        env = {
            **os.environ,
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            f"AIRFLOW_CONN_{OURS.conn_id.upper()}": json.dumps(connection),
        }
        argv = module_command(
            "benchmarks.transport_cpu", "--work", "--transport", transport, "--counters", counters.path
        )
        argv += ["--n", str(args.n), "--poll", str(args.poll), "--windows", str(args.windows)]
        argv += ["--profile", args.profile] if args.profile else []
        process = subprocess.run(  # noqa: S603 - our own interpreter and module
            argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
        )
        for line in process.stdout.splitlines():
            if line.startswith("RESULT "):
                result: dict[str, Any] = json.loads(line[7:])
                return result
        return {"transport": transport, "error": (process.stderr or process.stdout)[-2000:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="triggers in the worker's event loop")
    parser.add_argument("--poll", type=float, default=5.0, help="poll interval, seconds")
    parser.add_argument("--windows", type=int, default=2, help="poll intervals measured per worker")
    parser.add_argument("--repeats", type=int, default=3, help="fresh workers per transport (median)")
    parser.add_argument(
        "--transports",
        default="aiohttp,httpx-aiohttp,httpcore,none",
        help=(
            "comma-separated, of: aiohttp (the default transport), httpx-aiohttp, httpcore, none (no "
            "I/O: the floor); suffix +own-wake (e.g. aiohttp+own-wake) wakes each trigger at its own "
            "time instead of on the shared grid"
        ),
    )
    parser.add_argument("--profile", help="cProfile the measured windows into PROFILE.<transport> (slows them)")
    parser.add_argument("--work", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--transport", help=argparse.SUPPRESS)
    parser.add_argument("--counters", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.work:
        work_main(args)
        return
    transports = [t for t in args.transports.split(",") if t]
    results: dict[str, list[dict[str, Any]]] = {t: [] for t in transports}
    with tempfile.TemporaryDirectory(prefix="transport-cpu-") as home:
        for repeat in range(args.repeats):
            for transport in transports:
                result = run_worker(args, transport, home)
                results[transport].append(result)
                if "error" in result:
                    print(f"repeat {repeat + 1} {transport}: ERROR {result['error']}", flush=True)
                else:
                    print(f"repeat {repeat + 1} {transport}: {json.dumps(result)}", flush=True)
    keys = [
        ("cpu_s_per_1k_polls", "CPU s / 1,000 polls", 3),
        ("new_conns_per_1k_polls", "new conns / 1,000 polls", 1),
        ("rss_mb_per_1k_triggers", "MB RSS / 1,000 triggers", 1),
        ("lag_p99_ms", "loop lag p99 ms", 1),
    ]
    print(f"\nN={args.n} triggers, {args.poll:g} s polls, {args.windows} poll intervals per worker, median of")
    print(f"{args.repeats} fresh workers per transport (Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)\n")
    header = ["transport", *(label for _, label, _ in keys)]
    rows = []
    for transport in transports:
        ok = [r for r in results[transport] if "error" not in r]
        row = [transport]
        for key, _, digits in keys:
            value = median_of(ok, key)
            row.append("n/a" if math.isnan(value) else f"{value:.{digits}f}")
        rows.append(row)
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
