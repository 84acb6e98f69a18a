"""Helpers for the emulator tests: authenticated httpx clients and a loopback webhook receiver."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from airflow_provider_coverbase.testing import CoverbaseEmulator


def client_for(emulator: CoverbaseEmulator, api_key: str | None = None) -> httpx.Client:
    key = emulator.api_key if api_key is None else api_key
    return httpx.Client(base_url=emulator.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=5)


@pytest.fixture(params=["legacy", "current"])
def emulator_of_each_dialect(request: pytest.FixtureRequest) -> CoverbaseEmulator:
    """The test runs once per dialect, on the fresh emulator of that dialect (``emu.dialect`` says which)."""
    name = "coverbase_emulator" if request.param == "legacy" else "coverbase_emulator_current"
    emulator: CoverbaseEmulator = request.getfixturevalue(name)
    return emulator


@pytest.fixture
def client(coverbase_emulator: CoverbaseEmulator) -> Iterator[httpx.Client]:
    with client_for(coverbase_emulator) as c:
        yield c


@pytest.fixture
def current_client(coverbase_emulator_current: CoverbaseEmulator) -> Iterator[httpx.Client]:
    with client_for(coverbase_emulator_current) as c:
        yield c


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    """A tiny HTTP server on loopback that records deliveries and fails the first ``fail_first``."""

    url: str = ""
    fail_first: int = 0
    #: The status of the failed answers.
    fail_status: int = 500
    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                status = state.fail_status if len(state.deliveries) < state.fail_first else 200
                state.deliveries.append(Delivery({k.lower(): v for k, v in self.headers.items()}, body, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
