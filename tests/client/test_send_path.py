"""The clients send straight to their transport, skipping ``httpx.Client.send``: what that must keep.

Each scenario runs on the sync client (httpx's transport) and the async client (its default
:class:`AiohttpTransport`, as in the shared client), against a raw HTTP/1.1 server on loopback (it records every
request head and the connections it accepted) or an ``httpx.MockTransport``: timeouts still apply, a
refused connection is still a connection error, answers are read whole (the connection is reused),
``response.request`` is set, a 3xx is an answer (never followed), the proxy from the environment is
still used, and a closed client refuses to send.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_coverbase.client import RetryPolicy
from airflow_provider_coverbase.exceptions import (
    CoverbaseAPIError,
    CoverbaseConnectionError,
    CoverbaseResponseValidationError,
    CoverbaseTimeoutError,
)
from tests.dual_client import DualClient
from tests.fake_api import API_KEY
from tests.ports import free_port

AUTH_OK = json.dumps({"msg": "Auth successful"}).encode()


class RawServer:
    """A loopback HTTP/1.1 server in a thread: answers every request with ``AUTH_OK``, or never (``silent``)."""

    def __init__(self, *, silent: bool = False) -> None:
        self.silent = silent
        self.heads: list[str] = []
        self.connections = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        buffer = b""
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                buffer += chunk
                while b"\r\n\r\n" in buffer:  # our requests here are GETs: no body
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    self.heads.append(head.decode("latin-1"))
                    if not self.silent:
                        conn.sendall(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n%s" % (len(AUTH_OK), AUTH_OK)
                        )

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._sock.close()


@pytest.fixture
def server() -> Iterator[RawServer]:
    raw = RawServer()
    yield raw
    raw.close()


@pytest.fixture
def silent_server() -> Iterator[RawServer]:
    raw = RawServer(silent=True)
    yield raw
    raw.close()


@pytest.fixture
async def make_client(kind: str) -> AsyncIterator[Any]:
    """Clients with their default transports: httpx's (sync), aiohttp's (async, as the shared client)."""
    made: list[DualClient] = []

    def factory(base_url: str, **kwargs: Any) -> DualClient:
        kwargs.setdefault("retry", RetryPolicy(max_attempts=1))
        client = DualClient(kind, API_KEY, base_url=base_url, **kwargs)
        made.append(client)
        return client

    yield factory
    for client in made:
        await client.close()


def closed_port_url() -> str:
    """A loopback URL nobody listens on."""
    return f"http://127.0.0.1:{free_port()}"


async def test_silent_server_times_out(make_client: Any, silent_server: RawServer) -> None:
    api = make_client(silent_server.url, timeout=0.2)

    with pytest.raises(CoverbaseTimeoutError, match="did not answer in time") as caught:
        await api("check_auth")

    assert caught.value.attempts == 1
    assert len(silent_server.heads) == 1  # the request was sent; the answer never came


async def test_refused_connection_is_a_connection_error(make_client: Any) -> None:
    api = make_client(closed_port_url())

    with pytest.raises(CoverbaseConnectionError, match="could not reach Coverbase") as caught:
        await api("check_auth")

    assert not isinstance(caught.value, CoverbaseTimeoutError)
    assert "ConnectError on GET /v1/utils/authtest" in str(caught.value)


async def test_answers_are_read_whole_and_the_connection_reused(make_client: Any, server: RawServer) -> None:
    api = make_client(server.url)

    messages = [await api("check_auth") for _ in range(5)]

    assert messages == ["Auth successful"] * 5
    assert server.connections == 1
    assert len(server.heads) == 5
    head = server.heads[0].lower()
    assert head.startswith("get /v1/utils/authtest http/1.1")
    assert f"authorization: bearer {API_KEY}".lower() in head


async def test_response_names_its_request(make_client: Any) -> None:
    """A body we cannot read is reported with the method and path of ``response.request``."""
    unreadable = httpx.MockTransport(lambda request: httpx.Response(200, text="not json"))
    api = make_client("https://api.coverbase.test", transport=unreadable)

    with pytest.raises(CoverbaseResponseValidationError) as caught:
        await api("get_workflow_run", "wr_1")

    assert "GET /v1/workflows/runs/wr_1" in str(caught.value)


async def test_redirect_is_an_answer_never_followed(kind: str) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"Location": "https://elsewhere.test/steal"}, json={"detail": "moved"})

    api = DualClient(
        kind,
        API_KEY,
        base_url="https://api.coverbase.test",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(max_attempts=3, jitter=0.0),
    )
    try:
        with pytest.raises(CoverbaseAPIError, match="answered 302") as caught:
            await api("get_workflow_run", "wr_1")
    finally:
        await api.close()

    assert caught.value.status_code == 302
    assert caught.value.attempts == 1  # not retried
    assert seen == ["https://api.coverbase.test/v1/workflows/runs/wr_1"]  # Location never requested


async def test_proxy_from_the_environment_is_used(
    kind: str, server: RawServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an injected transport, HTTP(S)_PROXY still routes the requests, as httpx's client did."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", server.url)
    api = DualClient(
        kind, API_KEY, base_url="http://coverbase.test", allow_insecure_http=True, retry=RetryPolicy(max_attempts=1)
    )
    try:
        assert await api("check_auth") == "Auth successful"
    finally:
        await api.close()

    assert server.heads[0].startswith("GET http://coverbase.test/v1/utils/authtest HTTP/1.1")


async def test_closed_client_refuses_to_send(make_client: Any, server: RawServer) -> None:
    api = make_client(server.url)
    await api("check_auth")
    await api.close()

    with pytest.raises(RuntimeError, match="client has been closed"):
        await api("check_auth")
    assert len(server.heads) == 1
