"""What waiting costs: N deferred triggers in one process and one event loop, ours beside the peers.

A triggerer runs every deferred task's trigger in one asyncio loop. This script does the same: one
*worker* process per kind and N runs N triggers (built from their serialized form, as the triggerer
does) in one loop, against a fake server in *another* process that answers each kind's own API shape:

- ``ours``: ``CoverbaseWorkflowRunTrigger``, ``GET /v1/workflows/runs/{id}`` (legacy contract, ``running``);
- ``http-sensor``: ``HttpSensorTrigger`` (providers-http), 404 until ready;
- ``http-event``: ``HttpEventTrigger`` (providers-http), 200 ``{"ready": false}`` until ready;
- ``dbt``: ``DbtCloudRunJobTrigger`` (providers-dbt-cloud), ``GET /api/v2/accounts/{a}/runs/{id}/``,
  status 3 (running); over TLS with a throw-away certificate, because the dbt hook always builds an
  ``https://`` URL;
- ``databricks``: ``DatabricksExecutionTrigger`` (providers-databricks), ``GET /api/2.2/jobs/runs/get``
  with a JSON body, ``life_cycle_state`` RUNNING.

Connections come from ``AIRFLOW_CONN_*`` variables (JSON form). The peers come from the ``bench`` extra
(``make bench-triggers`` installs them with ``pip install -e '.[testing,bench]'`` in ``.venv-bench``).

Rounds (``--rounds``):

- ``scale``: per N and kind, in a fresh worker: CPU seconds of the worker per 1,000 polls (median of
  ``--repeats`` windows), MB RSS per 1,000 waiting triggers, new TCP connections per 1,000 polls (accepted
  by the server), event-loop lag p99 while waiting (a 20 ms ticker), the longest loop stall while the
  triggers start, detection delay p50/p95 (the server turns run ``i`` terminal at a known time; the worker
  notes when each trigger yields), and setup CPU per trigger (CPU until every trigger has polled once,
  less one steady poll: it also holds what a first poll costs more than a steady one, such as the
  log lines of a first reading, and the loop's idle CPU meanwhile). Then the ratios of ours to each
  peer, and the issue's targets.
- ``setup``: setting up alone, measured directly: per N and kind, in a fresh worker, the CPU from
  creating N triggers until the loop is idle again, with the poll interval ``--setup-poll`` (10 h)
  so that ours has not polled yet (its first poll comes at a random point of the first interval):
  the trigger, the hook, the async connection lookup, parsing the connection, acquiring the shared
  client, preparing the request. The peers poll as soon as they start, so their figure includes one
  request each (the table says how many requests were made meanwhile).
- ``errors``: every kind at once (request rates, not CPU, so they may share the cores): HTTP 500s for
  ``--error-seconds``, then connection refused for as long, then the server is back and every run ends:
  requests (or connection attempts) per trigger per second, and what the triggers did.
- ``limit``: ours against the real emulator with a budget of ``--limit-rate`` requests/s and
  ``--limit-n`` triggers: the share of answers that were 429 and the gap before a trigger's next request
  after a 429 (a hot loop shows as gaps near zero).
- ``fortnight``: one run that lasts 14 days, on a simulated clock: the GETs it costs with the trigger's
  default settings and how long after its end the trigger noticed; shorter runs too, for the delay bound.

    .venv/bin/python benchmarks/triggerer_scale.py            # everything (about 40 minutes on 2 cores)
    .venv/bin/python benchmarks/triggerer_scale.py --quick    # N=100 and 1,000, short rounds (about 10 minutes)
    .venv/bin/python benchmarks/triggerer_scale.py --n 1000 --kinds ours,databricks --rounds scale
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import importlib
import itertools
import json
import math
import mmap
import os
import platform
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------------------------
# Shared counters: one float64 slot each, written by the server (counts) or the worker (controls).

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
    Also used by ``transport_cpu.py``.
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


# ---------------------------------------------------------------------------------------------
# The fake server: raw HTTP/1.1 on asyncio (uvloop), keep-alive, every kind's API shape.


def _json_response(status: int, body: Any, reason: str = "OK") -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\nkeep-alive: timeout=120\r\n\r\n"
    )
    return head.encode() + payload


def _run_index(method: str, target: str, body: bytes) -> tuple[str, int] | None:
    """The kind-specific route and run index of a request, or None."""
    path, _, query = target.partition("?")
    parts = [p for p in path.split("/") if p]
    try:
        if path.startswith("/v1/workflows/runs/"):
            return "coverbase", int(parts[-1].rsplit("_", 1)[1])
        if path.startswith("/api/v2/accounts/") and len(parts) >= 6 and parts[4] == "runs":
            return "dbt", int(parts[5])
        if path.endswith("/jobs/runs/get"):
            if body:
                return "databricks", int(json.loads(body)["run_id"])
            for item in query.split("&"):
                key, _, value = item.partition("=")
                if key == "run_id":
                    return "databricks", int(value)
        if parts and parts[0] in ("sensor", "event"):
            return parts[0], int(parts[1])
    except (ValueError, KeyError, IndexError):
        return None
    return None


def answer(counters: Counters, method: str, target: str, body: bytes) -> bytes:
    """The response to one request, in the shape of the API the request belongs to."""
    counters.add(REQUESTS)
    if counters[MODE] == MODE_HTTP_500:
        counters.add(ERRORS_SERVED)
        return _json_response(500, {"error": "injected outage"}, "Internal Server Error")
    route = _run_index(method, target, body)
    if route is None:
        return _json_response(404, {"error": f"no route for {method} {target}"}, "Not Found")
    kind, index = route
    virtual = counters[VIRTUAL_NOW]
    now = virtual if virtual > 0 else time.time()
    flip = flip_time(counters, index)
    done = flip is not None and now >= flip
    if done:
        counters.add(TERMINAL_SERVED)
    started = counters[STARTED_AT] or now
    if kind == "coverbase":
        run = {
            "workflow_run_id": f"cbwfr_{index:08d}",
            "workflow_definition_id": "cbwf_bench",
            "workflow_name": "triggerer-scale",
            "status": "completed" if done else "running",
            "started_at": int(started),
            "completed_at": int(flip) if done and flip else None,
            "checkpoints_reached": ["vendors_selected"],
            "output": {"ok": True} if done else None,
        }
        return _json_response(200, run)
    if kind == "dbt":
        # dbt Cloud run statuses: 3 running, 10 success.
        return _json_response(200, {"status": {"code": 200}, "data": {"id": index, "status": 10 if done else 3}})
    if kind == "databricks":
        state = (
            {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS", "state_message": ""}
            if done
            else {"life_cycle_state": "RUNNING", "state_message": ""}
        )
        return _json_response(200, {"run_id": index, "state": state, "tasks": []})
    if kind == "sensor":
        return _json_response(200, {"ready": True}) if done else _json_response(404, {"ready": False}, "Not Found")
    return _json_response(200, {"ready": done})


class _HttpProtocol(asyncio.Protocol):
    def __init__(self, counters: Counters, open_transports: set[asyncio.Transport]) -> None:
        self.counters = counters
        self.open = open_transports
        self.buffer = b""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.open.add(transport)
        self.counters.add(ACCEPTED)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.open.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buffer[:end].decode("latin-1").split("\r\n")
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip())
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, target = lines[0].split(" ")[:2]
            self.transport.write(answer(self.counters, method, target, body))
            if close:
                self.transport.close()
                return


async def _serve(counters: Counters, certfile: str | None) -> None:
    loop = asyncio.get_running_loop()
    ssl_context: ssl.SSLContext | None = None
    if certfile:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(certfile)
    open_transports: set[asyncio.Transport] = set()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    async def listen(existing: socket.socket | None = None) -> asyncio.Server:
        if existing is None:
            existing = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            existing.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            existing.bind(("127.0.0.1", port))
        existing.listen(4096)
        return await loop.create_server(
            lambda: _HttpProtocol(counters, open_transports), sock=existing, ssl=ssl_context, backlog=4096
        )

    server: asyncio.Server | None = await listen(sock)
    counters[PORT] = port
    while counters[ALIVE] >= 0:
        refused = counters[MODE] == MODE_REFUSED
        if refused and server is not None:
            server.close()
            for transport in list(open_transports):
                transport.abort()
            await server.wait_closed()
            server = None
        elif not refused and server is None:
            server = await listen()
        await asyncio.sleep(0.02)
    if server is not None:
        server.close()


def serve_main(counters_name: str, certfile: str | None) -> None:
    """Entry point of the server process."""
    counters = Counters(counters_name)
    try:
        import uvloop

        uvloop.run(_serve(counters, certfile))
    except ImportError:
        asyncio.run(_serve(counters, certfile))
    finally:
        counters.close()


# ---------------------------------------------------------------------------------------------
# The kinds of trigger, with their connections.

BENCH_API_KEY = "ak_bench_0123456789abcdef0123456789abcdef"
CHECK_MODULE = "triggerer_scale_check"


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    classpath: str
    conn_id: str
    always_tls: bool = False

    def connection(self, port: int, tls: bool, ours_extra: dict[str, Any]) -> dict[str, Any]:
        scheme = "https" if tls or self.always_tls else "http"
        if self.name == "ours":
            return {
                "conn_type": "coverbase",
                "host": f"{scheme}://127.0.0.1:{port}",
                "password": BENCH_API_KEY,
                "extra": ours_extra,
            }
        if self.name.startswith("http-"):
            return {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": port,
                "schema": scheme,
                "login": "bench",
                "password": "bench-secret",
            }
        if self.name == "dbt":
            # The dbt hook builds https://{host}/api/...: the host carries the port.
            return {"conn_type": "dbt_cloud", "host": f"127.0.0.1:{port}", "login": "1", "password": "dbt-token"}
        return {"conn_type": "databricks", "host": "127.0.0.1", "port": port, "schema": scheme, "password": "dapi-x"}

    def kwargs(self, index: int, poll: float, ours_kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.name == "ours":
            return {
                "workflow_run_id": f"cbwfr_{index:08d}",
                "coverbase_conn_id": self.conn_id,
                "poll_interval": poll,
                **ours_kwargs,
            }
        if self.name == "http-sensor":
            return {
                "endpoint": f"sensor/{index}",
                "http_conn_id": self.conn_id,
                "method": "GET",
                "poke_interval": poll,
            }
        if self.name == "http-event":
            return {
                "response_check_path": f"{CHECK_MODULE}.ready",
                "http_conn_id": self.conn_id,
                "auth_type": "aiohttp.BasicAuth",  # its default (None) cannot send the connection's login
                "method": "GET",
                "endpoint": f"event/{index}",
                "poll_interval": poll,
            }
        if self.name == "dbt":
            return {
                "conn_id": self.conn_id,
                "run_id": index,
                "end_time": time.time() + 7 * 86400,
                "poll_interval": poll,
                "account_id": 1,
            }
        return {"run_id": index, "databricks_conn_id": self.conn_id, "polling_period_seconds": poll}


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "ours",
            "CoverbaseWorkflowRunTrigger (ours)",
            "airflow_provider_coverbase.triggers.coverbase.CoverbaseWorkflowRunTrigger",
            "coverbase_bench",
        ),
        Kind(
            "http-sensor", "HttpSensorTrigger", "airflow.providers.http.triggers.http.HttpSensorTrigger", "http_bench"
        ),
        Kind("http-event", "HttpEventTrigger", "airflow.providers.http.triggers.http.HttpEventTrigger", "http_bench"),
        Kind(
            "dbt",
            "DbtCloudRunJobTrigger",
            "airflow.providers.dbt.cloud.triggers.dbt.DbtCloudRunJobTrigger",
            "dbt_bench",
            always_tls=True,
        ),
        Kind(
            "databricks",
            "DatabricksExecutionTrigger",
            "airflow.providers.databricks.triggers.databricks.DatabricksExecutionTrigger",
            "databricks_bench",
        ),
    )
}


def make_certificate(directory: Path) -> Path:
    """A throw-away self-signed certificate for 127.0.0.1 (key and certificate in one PEM file)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    path = directory / "bench-cert.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    return path


# ---------------------------------------------------------------------------------------------
# The worker: N triggers in one event loop.


def rss_mb() -> float:
    """Resident set size of this process now (not the peak), in MB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summarize_event(payload: Any) -> str:
    if isinstance(payload, dict):
        if payload.get("status") == "error" and payload.get("message"):
            return f"error ({str(payload['message'])[:60]})"
        if "status" in payload:
            return str(payload["status"])
        if "run_state" in payload:
            return "success" if '"SUCCESS"' in str(payload["run_state"]) else "event"
        return "event"
    return "success" if payload is True else f"event {str(payload)[:20]}"


@dataclass
class Fleet:
    """The triggers of one worker and what became of them."""

    n: int
    done_at: list[float] = field(default_factory=list)
    outcome: list[str] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    lag: list[tuple[float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.done_at = [0.0] * self.n
        self.outcome = [""] * self.n

    def finished(self) -> int:
        return sum(1 for value in self.outcome if value)

    def outcomes(self) -> dict[str, int]:
        counts = Counter(value or "waiting" for value in self.outcome)
        return dict(sorted(counts.items()))


def build_trigger(classpath: str, kwargs: dict[str, Any]) -> Any:
    """Import the class and build the trigger from its kwargs, as the triggerer does."""
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)


async def drive(trigger: Any, index: int, fleet: Fleet) -> None:
    """Run one trigger until its first event (the triggerer's loop), then clean up."""
    events = trigger.run()
    try:
        async for event in events:
            fleet.done_at[index] = time.time()
            fleet.outcome[index] = summarize_event(event.payload)
            break
        else:
            fleet.outcome[index] = "ended without event"
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        fleet.done_at[index] = time.time()
        fleet.outcome[index] = f"raised {type(exc).__name__}"
    finally:
        with contextlib.suppress(Exception):
            await events.aclose()
        with contextlib.suppress(Exception):
            await trigger.cleanup()


async def lag_monitor(fleet: Fleet, tick: float = 0.02) -> None:
    """Record how late a 20 ms sleep wakes up: the loop's lag, with a timestamp."""
    while True:
        start = time.perf_counter()
        await asyncio.sleep(tick)
        now = time.perf_counter()
        fleet.lag.append((now, now - start - tick))


async def wait_until(predicate: Callable[[], bool], within: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


async def start_fleet(
    kind: Kind, n: int, poll: float, counters: Counters, ours_kwargs: dict[str, Any], stagger: float = 0.0
) -> Fleet:
    """Build and start ``n`` triggers: all at once (a triggerer restart), or spread over ``stagger`` s."""
    fleet = Fleet(n)
    specs = [(kind.classpath, kind.kwargs(i, poll, ours_kwargs)) for i in range(n)]
    began = time.monotonic()
    for i, (classpath, kwargs) in enumerate(specs):
        # Like the triggerer's create_triggers(): let the loop run between two new triggers.
        await asyncio.sleep(max(0.0, began + stagger * i / n - time.monotonic()) if stagger > 0 else 0)
        fleet.tasks.append(asyncio.create_task(drive(build_trigger(classpath, kwargs), i, fleet)))
    return fleet


async def stop_fleet(fleet: Fleet) -> None:
    for task in fleet.tasks:
        task.cancel()
    await asyncio.gather(*fleet.tasks, return_exceptions=True)


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


# ---------------------------------------------------------------------------------------------
# The orchestrator: servers and workers in their own processes, then the tables.


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    certfile: Path
    children: list[subprocess.Popen[str]] = field(default_factory=list)

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and this script
            [sys.executable, __file__, *argv],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.children.append(process)
        return process

    @contextlib.contextmanager
    def server(self, tls: bool) -> Iterator[tuple[Counters, int]]:
        counters = Counters()
        argv = ["--serve", "--counters", counters.name]
        if tls:
            argv += ["--certfile", str(self.certfile)]
        with serving(self.spawn(argv), counters) as port:
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
        a = self.args
        return [
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
        ]

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


def fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def median_of(results: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in results if isinstance(r.get(key), (int, float)) and not math.isnan(r[key])]
    return statistics.median(values) if values else math.nan


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


def start_emulator(bench: Bench, log_limit: int) -> tuple[subprocess.Popen[str], str]:
    config = bench.workdir / "emulator.json"
    config.write_text(json.dumps({"request_log_limit": log_limit}))
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "airflow_provider_coverbase.testing", "--port", "0", "--config", str(config)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    bench.children.append(process)
    assert process.stdout is not None
    base_url = ""
    while not base_url:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the emulator exited early")
        if line.startswith("Base URL:"):
            base_url = line.split(": ", 1)[1].strip()
    return process, base_url


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
    process, base_url = start_emulator(bench, log_limit=max(100_000, int(n * seconds)))
    try:
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
            [
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
            ],
            env,
        )
        result = bench.collect(worker, args.worker_timeout)
        log = emulator_call(base_url, "GET", "/_emulator/requests")["data"]
    finally:
        process.terminate()
        process.wait(10)
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
                _human(age),
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


def _human(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:g} days"
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def machine_line() -> str:
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = []
    from importlib.metadata import PackageNotFoundError, version

    for package in (
        "apache-airflow",
        "apache-airflow-providers-http",
        "apache-airflow-providers-dbt-cloud",
        "apache-airflow-providers-databricks",
        "httpx",
        "aiohttp",
    ):
        try:
            versions.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            versions.append(f"{package} missing")
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {', '.join(versions)}; "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
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
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--counters", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--certfile", default=None, help=argparse.SUPPRESS)
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
    if args.serve:
        serve_main(args.counters, args.certfile)
        return
    if args.work:
        args.n = args.n[0]
        if args.work == "limit":
            result = _limit_entry(args)
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


def _limit_entry(args: argparse.Namespace) -> dict[str, Any]:
    import logging

    logging.basicConfig(level=getattr(logging, args.log_level), stream=open(os.devnull, "w"))  # noqa: SIM115
    args.run_ids = json.loads(Path(args.ids_file).read_text())
    return asyncio.run(worker_limit(args))


if __name__ == "__main__":
    main()
