"""``CoverbaseEmulator``: the emulator served over real loopback HTTP from a daemon thread.

Use it as a context manager (or ``start()``/``stop()``), point a client at ``base_url`` with
``api_key``, and drive time, faults and limits through the methods below. The same controls exist
over HTTP under ``/_emulator/`` for out-of-process emulators (the CLI).

No Airflow imports, no client imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from airflow_provider_coverbase.testing.app import create_app
from airflow_provider_coverbase.testing.catalog import JSON
from airflow_provider_coverbase.testing.clock import EmulatorClock
from airflow_provider_coverbase.testing.config import (
    Checkpoint,
    ConfigError,
    ConflictShape,
    Dialect,
    EmulatorConfig,
    FinalStatus,
    Pause,
    RetryAfterPlacement,
    WorkflowDefinition,
)
from airflow_provider_coverbase.testing.controls import Fault
from airflow_provider_coverbase.testing.state import EmulatorState


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket; ``port=0`` picks a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_for(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def connection_value(base_url: str, api_key: str) -> str:
    """The ``AIRFLOW_CONN_COVERBASE_DEFAULT`` value (Airflow's JSON connection form)."""
    return json.dumps(
        {
            "conn_type": "coverbase",
            "host": base_url,
            "password": api_key,
            "extra": {"dashboard_url": f"{base_url}/_emulator"},
        }
    )


def counting_protocol(state: EmulatorState) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, counting each accepted and closed TCP connection in ``state``.

    Clients that reuse connections show few accepted connections for many requests; the count is
    read with :meth:`CoverbaseEmulator.connections` or ``GET /_emulator/connections``.
    """

    class CountingHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            state.connection_opened()
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            state.connection_closed()
            super().connection_lost(exc)

    return CountingHttpToolsProtocol


def uvicorn_config(
    app: Any, log_level: str = "warning", *, access_log: bool = False, state: EmulatorState | None = None
) -> uvicorn.Config:
    """uvicorn settings tuned for throughput: uvloop, httptools, no access log.

    With ``state``, the server counts the TCP connections it accepts there.
    """
    return uvicorn.Config(
        app,
        loop="uvloop",
        http=counting_protocol(state) if state is not None else "httptools",
        lifespan="on",
        log_level=log_level,
        access_log=access_log,
        timeout_keep_alive=30,
        backlog=2048,
    )


class CoverbaseEmulator:
    """A running Coverbase Workflows API emulator on loopback.

    ``dialect`` picks the contract: ``"legacy"`` (V0: ``running``/``cancelled``,
    ``checkpoints_reached``, ``output``, ``cbwfr_`` IDs, 409 ``idempotency_conflict``) or
    ``"current"`` (``started``/``canceled``, ``steps[]``, ``cbwr_`` IDs, 502, ``request_id``).
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        dialect: Dialect = "legacy",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float | None = None,
    ) -> None:
        config = config or EmulatorConfig()
        if speed is not None:
            config = dataclasses.replace(config, speed=speed)
        self.config = config
        self.dialect: Dialect = dialect
        self.state = EmulatorState(config, dialect, EmulatorClock(config.speed))
        self._host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> CoverbaseEmulator:
        """Serve in a daemon thread and return once the server accepts connections."""
        if self._server is not None:
            return self
        sock = bind_socket(self._host, self._port)
        self._base_url = url_for(sock)
        server = uvicorn.Server(uvicorn_config(create_app(self.state), state=self.state))
        self._server = server

        def serve() -> None:
            with contextlib.suppress(Exception):
                server.run(sockets=[sock])
            sock.close()

        self._thread = threading.Thread(target=serve, name="coverbase-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Coverbase emulator did not start")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down and wait for its thread."""
        if self._server is None:
            return
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = None
        self._thread = None

    def __enter__(self) -> CoverbaseEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses and keys

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash, no ``/v1``)."""
        if self._base_url is None:
            raise RuntimeError("the emulator is not started")
        return self._base_url

    @property
    def api_key(self) -> str:
        """API key of org 1."""
        return self.config.orgs[0].api_key

    @property
    def other_api_key(self) -> str:
        """API key of org 2, for cross-org isolation tests."""
        if len(self.config.orgs) < 2:
            raise RuntimeError("the configuration has a single org")
        return self.config.orgs[1].api_key

    @property
    def org_id(self) -> str:
        return self.config.orgs[0].org_id

    @property
    def other_org_id(self) -> str:
        """``org_id`` of org 2 (the org of :attr:`other_api_key`)."""
        if len(self.config.orgs) < 2:
            raise RuntimeError("the configuration has a single org")
        return self.config.orgs[1].org_id

    @property
    def conn_uri(self) -> str:
        """The Airflow connection (JSON form) for org 1: the value of ``AIRFLOW_CONN_COVERBASE_DEFAULT``."""
        return connection_value(self.base_url, self.api_key)

    def conn_env(self, conn_id: str = "coverbase_default") -> dict[str, str]:
        """Environment variables that point Airflow's ``conn_id`` at this emulator."""
        return {f"AIRFLOW_CONN_{conn_id.upper()}": self.conn_uri}

    def dashboard_url(self, workflow_run_id: str) -> str:
        """A local page for one run (what the provider's extra link can open)."""
        return f"{self.base_url}/_emulator/runs/{workflow_run_id}"

    # ------------------------------------------------------------------ controls

    def reset(self) -> None:
        """Forget runs, idempotency keys, webhooks, faults, limits and the request log."""
        self.state.reset()

    def advance(self, seconds: float) -> float:
        """Move emulated time forward; returns the new emulated Unix time."""
        return self.state.clock.advance(seconds)

    def set_speed(self, factor: float) -> None:
        """Emulated seconds per real second (0 freezes time; use ``advance()``)."""
        self.state.clock.set_speed(factor)

    def now(self) -> float:
        return self.state.clock.now()

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        retry_after: int | None = None,
        path_prefix: str = "/v1/",
        message: str = "Injected fault.",
    ) -> None:
        """Answer the next ``n`` ``/v1`` requests under ``path_prefix`` with ``status``.

        Nothing is committed for a failed request."""
        with self.state.lock:
            self.state.faults.fail.append(Fault(n, status, path_prefix, retry_after, message))

    def drop_next_response_after_commit(self, n: int = 1) -> None:
        """The next ``n`` successful run POSTs create the run, then close the socket unanswered."""
        with self.state.lock:
            self.state.faults.drop_after_commit = n

    def fail_next_dispatch(self, n: int = 1) -> None:
        """Current dialect: the next ``n`` run POSTs create a run, then answer 502.

        The 502 is ``workflow_dispatch_failed``; the run exists and never progresses."""
        with self.state.lock:
            self.state.faults.dispatch_fail_next = n

    def delay(self, seconds: float) -> None:
        """Delay every ``/v1`` response by ``seconds`` of real time (0 to stop)."""
        with self.state.lock:
            self.state.faults.delay_seconds = seconds

    def set_variants(
        self,
        *,
        conflict_shape: ConflictShape | None = None,
        retry_after: RetryAfterPlacement | None = None,
        sparse_get_bodies: bool | None = None,
        legacy_v2_endpoints: bool | None = None,
    ) -> None:
        """Switch answer variants until ``reset()`` (see :class:`EmulatorConfig`); ``None`` keeps one.

        ``conflict_shape``: how a legacy 409 replay carries the run (``detail``, ``bare``, ``flat``,
        ``nested``, ``none``). ``retry_after``: where a 429 puts its hint (``both``, ``header``,
        ``top_level``, ``detail``, ``string``). ``sparse_get_bodies``: GET run bodies without
        ``workflow_run_id``/``workflow_name``. ``legacy_v2_endpoints``: legacy also serves list runs.
        """
        changes = {
            "conflict_shape": conflict_shape,
            "retry_after": retry_after,
            "sparse_get_bodies": sparse_get_bodies,
            "legacy_v2_endpoints": legacy_v2_endpoints,
        }
        self.state.set_variants(**{name: value for name, value in changes.items() if value is not None})

    def clear_faults(self) -> None:
        self.state.faults.clear()

    def set_limits(
        self,
        *,
        requests_per_window: int | None = None,
        window_seconds: float | None = None,
        max_concurrent_runs: int | None = None,
        org_id: str | None = None,
    ) -> None:
        """Per-org limits (every org unless ``org_id``); ``None`` lifts a limit."""
        limits = {"requests_per_window": requests_per_window, "max_concurrent_runs": max_concurrent_runs}
        self.state.accounts.set_limits(org_id, {**limits, "window_seconds": window_seconds})

    def add_workflow(
        self,
        name: str,
        checkpoints: Iterable[tuple[str, float] | Checkpoint | str] = (),
        *,
        input_schema: JSON | None = None,
        final_status: FinalStatus = "completed",
        output: JSON | None = None,
        pending_seconds: float = 0.0,
        pause: tuple[str, float] | None = None,
        never_finishes: bool = False,
        enabled: bool = True,
        dispatch_fails: bool = False,
        failure_message: str = "Workflow step failed.",
        definition_id: str | None = None,
        org: str | None = None,
    ) -> WorkflowDefinition:
        """Add (or replace) a workflow definition; checkpoints are ``(name, duration_seconds)``.

        ``org`` (an ``org_id`` or org name) makes it that org's alone; by default every org has it.
        """
        if org is not None and not any(org in (o.org_id, o.name) for o in self.config.orgs):
            raise ConfigError(f"org {org!r} is no configured org_id or name")
        cps: list[Checkpoint] = []
        for item in checkpoints:
            if isinstance(item, Checkpoint):
                cps.append(item)
            elif isinstance(item, str):
                cps.append(Checkpoint(item))
            else:
                cps.append(Checkpoint(item[0], float(item[1])))
        definition = WorkflowDefinition(
            name=name,
            checkpoints=tuple(cps),
            id=definition_id,
            input_schema=input_schema,
            pending_seconds=pending_seconds,
            pause=Pause(*pause) if pause else None,
            final_status=final_status,
            output=output,
            failure_message=failure_message,
            never_finishes=never_finishes,
            enabled=enabled,
            dispatch_fails=dispatch_fails,
            org=org,
        )
        self.state.accounts.add_workflow(definition)
        return definition

    def definition_id(self, workflow_name: str) -> str:
        """The ID of a workflow in this emulator's dialect (for ``POST /v1/workflows/runs``)."""
        return self.state.accounts.workflows[workflow_name].definition_id(self.dialect)

    # ------------------------------------------------------------------ inspection

    @property
    def requests(self) -> list[JSON]:
        """Logged ``/v1`` requests, oldest first: method, path, query, headers (key masked), body, status."""
        return list(self.state.request_log)

    def clear_requests(self) -> None:
        self.state.request_log.clear()

    @property
    def runs(self) -> dict[str, int]:
        """Number of runs per org ID (every configured org is present)."""
        with self.state.lock:
            return {org_id: len(runs) for org_id, runs in self.state.run_store.by_org.items()}

    def run_count(self, api_key: str | None = None) -> int:
        """Runs created by the org of ``api_key`` (org 1 by default)."""
        org = self.state.accounts.authenticate(f"Bearer {api_key or self.api_key}")
        if org is None:
            raise KeyError("unknown API key")
        return self.runs[org.org_id]

    def connections(self) -> JSON:
        """TCP connections the server accepted since start (or ``reset()``), and those open now.

        ``{"accepted": n, "open": m}``: a client that reuses its connections keeps ``accepted`` far
        below the number of requests it sent.
        """
        return self.state.connections_view()

    def get_run(self, workflow_run_id: str) -> JSON | None:
        """The run as the API shows it now (any org), or None."""
        run = self.state.run_store.get(None, workflow_run_id)
        return None if run is None else self.state.run_view(run)

    @property
    def webhook_deliveries(self) -> list[JSON]:
        """Every delivery attempt (webhook_id, event_id, event_type, attempt, status, response_status,
        payload, and ``signature``: ``valid``, ``none`` or ``secret`` as sent), oldest first."""
        with self.state.lock:
            return list(self.state.webhooks.deliveries)

    # ------------------------------------------------------------------ webhook test controls

    def _admin(self, method: str, path: str, body: JSON | None = None) -> Any:
        """Call the ``/_emulator`` admin API (for controls that must run on the server's loop)."""
        import httpx

        with httpx.Client(base_url=self.base_url, trust_env=False, timeout=30) as client:
            response = client.request(method, path, json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"emulator admin {method} {path}: {response.status_code} {response.text}")
        return response.json()

    @property
    def webhook_events(self) -> list[JSON]:
        """Every event raised for a subscription: event_id, event_type, webhook_id, workflow_run_id, data."""
        return list(self._admin("GET", "/_emulator/webhooks/events")["data"])

    def redeliver(self, event_id: str, *, signature: str = "valid", secret: str | None = None) -> JSON:
        """Send a raised event again, once, now, and return the attempt (Coverbase delivers at least once).

        ``signature``: ``"valid"``, ``"none"`` (no ``Coverbase-Signature`` header) or ``"secret"``
        (signed with ``secret`` instead of the subscription's)."""
        body: JSON = {"event_id": event_id, "signature": signature}
        if secret is not None:
            body["secret"] = secret
        return dict(self._admin("POST", "/_emulator/webhooks/redeliver", body))

    def sign_next_deliveries(self, count: int = 1, *, signature: str = "none", secret: str | None = None) -> None:
        """Send the next ``count`` delivery attempts unsigned (``"none"``) or signed with ``secret``."""
        body: JSON = {"count": count, "signature": signature}
        if secret is not None:
            body["secret"] = secret
        self._admin("POST", "/_emulator/webhooks/signing", body)

    def hold_deliveries(self) -> None:
        """Keep due deliveries back until :meth:`release_deliveries` (to deliver out of order)."""
        self._admin("POST", "/_emulator/webhooks/hold")

    @property
    def held_deliveries(self) -> list[JSON]:
        return list(self._admin("GET", "/_emulator/webhooks/held")["data"])

    def release_deliveries(self, order: str | list[str] = "reverse") -> list[JSON]:
        """Deliver the held events one after the other: ``"reverse"``, ``"fifo"`` or a list of event IDs.

        Returns the released events in the order they were sent (first attempts are made before this
        returns; retries go on in the background)."""
        return list(self._admin("POST", "/_emulator/webhooks/release", {"order": order})["data"])

    def wait_for(self, predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.01) -> None:
        """Block until ``predicate()`` is truthy (real time), or raise ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            time.sleep(interval)


def serve_forever(state: EmulatorState, sock: socket.socket, log_level: str = "info") -> None:
    """Serve in the calling thread until interrupted (used by the CLI)."""
    logging.getLogger("uvicorn.error").setLevel(log_level.upper())
    server = uvicorn.Server(uvicorn_config(create_app(state), log_level, state=state))
    server.run(sockets=[sock])
