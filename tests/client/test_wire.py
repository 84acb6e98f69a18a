"""``WireTransport``: the shared async client's HTTP/1.1 transport, against real servers on loopback.

Each test runs an asyncio server in the test's own loop that answers with scripted bytes, so the
framing the transport must read (lengths, chunks, close-delimited bodies, interim answers, early
closes) is exactly what a server can send.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_coverbase.client import _wire
from airflow_provider_coverbase.client._wire import WireTransport

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{"ok": true}'

#: What the server does with one request: the bytes to send (a list: sent one by one, with a pause;
#: a ``None`` in it closes the connection there), ``None`` to close without answering, or ``"hang"``
#: to never answer.
Reply = bytes | list[bytes | None] | None | str
Script = Callable[[int, int, bytes], Reply]


class ScriptedServer:
    """Reads requests (head and ``Content-Length`` body) and sends what ``script(conn, n, request)`` says."""

    def __init__(self, script: Script, ssl_context: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.ssl_context = ssl_context
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        port = self._server.sockets[0].getsockname()[1]
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = self.connections
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        self._writers.append(writer)
        try:
            number = 0
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + (await reader.readexactly(length) if length else b"")
                self.requests.append(request)
                reply = self.script(conn, number, request)
                number += 1
                if reply is None:
                    return
                if reply == "hang":
                    await asyncio.sleep(3600)
                parts = [reply] if isinstance(reply, bytes) else list(reply)
                for part in parts:
                    if part is None:
                        return
                    assert isinstance(part, bytes)
                    writer.write(part)
                    await writer.drain()
                    if len(parts) > 1:
                        await asyncio.sleep(0.001)
        finally:
            self.open -= 1
            writer.close()

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class Servers:
    """Starts scripted servers (``await serve(script)`` gives the URL); ``last`` is the newest."""

    def __init__(self) -> None:
        self.started: list[ScriptedServer] = []

    async def __call__(self, script: Script, ssl_context: ssl.SSLContext | None = None) -> str:
        server = ScriptedServer(script, ssl_context)
        self.started.append(server)
        return await server.start()

    @property
    def last(self) -> ScriptedServer:
        return self.started[-1]


@pytest.fixture
async def serve() -> AsyncIterator[Servers]:
    servers = Servers()
    yield servers
    for server in servers.started:
        await server.close()


@pytest.fixture
async def transport() -> AsyncIterator[WireTransport]:
    wire = WireTransport(max_connections=4)
    yield wire
    await wire.aclose()


TIMEOUTS = {"timeout": {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}}


async def get(transport: WireTransport, url: str, **kwargs: Any) -> httpx.Response:
    extensions = kwargs.pop("extensions", TIMEOUTS)
    return await transport.handle_async_request(httpx.Request("GET", url, extensions=extensions, **kwargs))


def always(reply: Reply) -> Script:
    return lambda conn, number, request: reply


async def test_a_length_delimited_answer_and_the_connection_reused(serve: Servers, transport: WireTransport) -> None:
    url = await serve(always(OK))

    answers = [await get(transport, f"{url}/v1/workflows/runs/wr_{i}?x=1", headers={"X-A": "b"}) for i in range(3)]

    assert [a.json() for a in answers] == [{"ok": True}] * 3
    assert answers[0].status_code == 200
    assert answers[0].headers["content-type"] == "application/json"
    assert answers[0].reason_phrase == "OK"
    assert answers[0].http_version == "HTTP/1.1"
    assert answers[0].request.url.path == "/v1/workflows/runs/wr_0"
    server = serve.last
    assert server.connections == 1
    first = server.requests[0].split(b"\r\n")
    assert first[0] == b"GET /v1/workflows/runs/wr_0?x=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{url.rsplit(':', 1)[1]}".encode() in first
    assert b"X-A: b" in first
    assert transport.connections_opened == 1


async def test_a_request_body_is_sent_after_its_head(serve: Servers, transport: WireTransport) -> None:
    url = await serve(always(OK))

    request = httpx.Request("POST", f"{url}/v1/workflows/run", json={"a": 1}, extensions=TIMEOUTS)
    answer = await transport.handle_async_request(request)

    assert answer.status_code == 200
    sent = serve.last.requests[0]
    assert sent.startswith(b"POST /v1/workflows/run HTTP/1.1\r\n")
    assert b"Content-Length: 7\r\n" in sent
    assert sent.endswith(b'\r\n\r\n{"a":1}')


async def test_a_chunked_answer_in_small_pieces(serve: Servers, transport: WireTransport) -> None:
    body = b'{"workflow_run_id": "wr_1", "status": "running"}'
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b"a;ext=1\r\n" + body[:10] + b"\r\n" + b"%x\r\n" % (len(body) - 10) + body[10:] + b"\r\n"
    chunked += b"0\r\nX-Trailer: t\r\n\r\n"
    pieces = [chunked[i : i + 3] for i in range(0, len(chunked), 3)]
    url = await serve(always(pieces))

    first = await get(transport, f"{url}/a")
    second = await get(transport, f"{url}/b")

    assert first.content == body
    assert second.content == body
    assert serve.last.connections == 1  # a chunked answer leaves the connection reusable


async def test_an_answer_ended_by_the_close_is_read_whole_and_not_reused(
    serve: Servers, transport: WireTransport
) -> None:
    url = await serve(always([b"HTTP/1.1 200 OK\r\n\r\n", b"all of ", b"it", None]))

    first = await get(transport, f"{url}/a")
    second = await get(transport, f"{url}/b")

    assert first.content == second.content == b"all of it"
    assert serve.last.connections == 2


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_answers_that_end_the_connection_are_not_reused(
    serve: Servers, transport: WireTransport, head: bytes
) -> None:
    url = await serve(always(head))

    for _ in range(2):
        assert (await get(transport, f"{url}/a")).content == b"hi"

    assert serve.last.connections == 2


async def test_http_1_0_keep_alive_is_reused(serve: Servers, transport: WireTransport) -> None:
    url = await serve(always(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi"))

    for _ in range(2):
        await get(transport, f"{url}/a")

    assert serve.last.connections == 1


async def test_interim_answers_are_skipped(serve: Servers, transport: WireTransport) -> None:
    url = await serve(always([b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n", OK]))

    answer = await get(transport, f"{url}/a")

    assert answer.status_code == 200
    assert answer.json() == {"ok": True}


@pytest.mark.parametrize("status", [204, 304])
async def test_bodiless_statuses(serve: Servers, transport: WireTransport, status: int) -> None:
    url = await serve(always(b"HTTP/1.1 %d Nothing\r\nContent-Length: 5\r\n\r\n" % status))

    answers = [await get(transport, f"{url}/a") for _ in range(2)]

    assert [a.status_code for a in answers] == [status, status]
    assert answers[0].content == b""
    assert serve.last.connections == 1


async def test_head_has_no_body(serve: Servers, transport: WireTransport) -> None:
    url = await serve(always(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"))

    answer = await transport.handle_async_request(httpx.Request("HEAD", f"{url}/a", extensions=TIMEOUTS))
    again = await transport.handle_async_request(httpx.Request("HEAD", f"{url}/a", extensions=TIMEOUTS))

    assert answer.content == b"" and again.status_code == 200
    assert serve.last.connections == 1


async def test_content_encoding_is_decoded(serve: Servers, transport: WireTransport) -> None:
    packed = gzip.compress(b'{"ok": true}')
    url = await serve(
        always(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(packed), packed))
    )

    assert (await get(transport, f"{url}/a")).json() == {"ok": True}


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"HTTP/1.1 2000 OK\r\n\r\n", "malformed status line"),
        (b"SMTP ready\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiXX", "chunk not followed by CRLF"),
    ],
)
async def test_malformed_answers_are_protocol_errors(
    serve: Servers, transport: WireTransport, reply: bytes, message: str
) -> None:
    url = await serve(always([reply, b""]))

    with pytest.raises(httpx.RemoteProtocolError, match=message) as caught:
        await get(transport, f"{url}/a")

    assert caught.value.request.url.path == "/a"


async def test_a_head_too_large_is_a_protocol_error(
    serve: Servers, transport: WireTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_wire, "MAX_HEAD_BYTES", 100)
    url = await serve(always(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 50))

    with pytest.raises(httpx.RemoteProtocolError, match="response head too large"):
        await get(transport, f"{url}/a")


async def test_a_fresh_connection_closed_without_an_answer_is_not_retried(
    serve: Servers, transport: WireTransport
) -> None:
    url = await serve(always(None))

    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await get(transport, f"{url}/a")

    assert len(serve.last.requests) == 1


async def test_a_body_cut_short_is_a_protocol_error(serve: Servers, transport: WireTransport) -> None:
    url = await serve(
        lambda conn, n, request: [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"] if n == 0 else None
    )

    first = asyncio.create_task(get(transport, f"{url}/a"))
    await asyncio.sleep(0.05)
    await serve.last.close()

    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        await first


async def test_a_reused_connection_closed_under_a_request_is_retried_once(
    serve: Servers, transport: WireTransport
) -> None:
    # The server answers the first request of each connection, then closes on the second: the race of
    # a keep-alive connection the server drops just as the client sends on it.
    url = await serve(lambda conn, n, request: OK if n == 0 else None)

    await get(transport, f"{url}/a")
    answer = await get(transport, f"{url}/b")

    assert answer.json() == {"ok": True}
    server = serve.last
    assert server.connections == 2
    assert [r.split(b" ")[1] for r in server.requests] == [b"/a", b"/b", b"/b"]


async def test_an_idle_connection_the_server_closed_is_not_used(serve: Servers, transport: WireTransport) -> None:
    url = await serve(always(OK))

    await get(transport, f"{url}/a")
    for writer in serve.last._writers:
        writer.close()
    await asyncio.sleep(0.05)
    await get(transport, f"{url}/b")

    server = serve.last
    assert server.connections == 2
    assert len(server.requests) == 2  # nothing was sent on the closed connection


async def test_a_silent_server_is_a_read_timeout_and_the_connection_dropped(
    serve: Servers, transport: WireTransport
) -> None:
    url = await serve(lambda conn, n, request: "hang" if conn == 0 else OK)
    quick = {"timeout": {"connect": 2.0, "read": 0.05, "write": 2.0, "pool": 2.0}}

    with pytest.raises(httpx.ReadTimeout):
        await get(transport, f"{url}/a", extensions=quick)
    answer = await get(transport, f"{url}/b")

    assert answer.status_code == 200
    assert serve.last.connections == 2


async def test_a_refused_connection_is_a_connect_error(transport: WireTransport) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()

    with pytest.raises(httpx.ConnectError):
        await get(transport, f"http://127.0.0.1:{port}/a")
    assert transport.connections() == 0


async def test_an_unsupported_scheme(transport: WireTransport) -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        await get(transport, "ftp://127.0.0.1/a")


async def test_at_most_max_connections_and_the_rest_wait_their_turn(serve: Servers) -> None:
    url = await serve(always([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", b"h", b"i"]))
    wire = WireTransport(max_connections=2)
    try:
        answers = await asyncio.gather(*(get(wire, f"{url}/{i}") for i in range(10)))
    finally:
        await wire.aclose()

    assert [a.content for a in answers] == [b"hi"] * 10
    server = serve.last
    assert server.connections == 2
    assert server.most_open <= 2
    assert len(server.requests) == 10


async def test_waiting_for_a_connection_times_out(serve: Servers) -> None:
    url = await serve(lambda conn, n, request: "hang")
    wire = WireTransport(max_connections=1)
    quick = {"timeout": {"connect": 2.0, "read": 5.0, "write": 2.0, "pool": 0.05}}
    try:
        holder = asyncio.create_task(get(wire, f"{url}/a", extensions=quick))
        await asyncio.sleep(0.02)
        with pytest.raises(httpx.PoolTimeout):
            await get(wire, f"{url}/b", extensions=quick)
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder
        assert wire.connections() == 0  # the cancelled request's connection was closed, not kept
    finally:
        await wire.aclose()


async def test_a_failed_connection_lets_a_waiter_open_its_own(serve: Servers) -> None:
    url = await serve(lambda conn, n, request: None if conn == 0 else OK)
    wire = WireTransport(max_connections=1)
    try:
        first, second = await asyncio.gather(get(wire, f"{url}/a"), get(wire, f"{url}/b"), return_exceptions=True)
    finally:
        await wire.aclose()

    assert isinstance(first, httpx.RemoteProtocolError)
    assert isinstance(second, httpx.Response) and second.status_code == 200


async def test_idle_connections_expire(serve: Servers) -> None:
    now = [0.0]
    url = await serve(always(OK))
    wire = WireTransport(keepalive_expiry=60.0, clock=lambda: now[0])
    try:
        await get(wire, f"{url}/a")
        now[0] = 59.0
        await get(wire, f"{url}/b")  # idle 59 s: reused
        now[0] = 120.0
        await get(wire, f"{url}/c")  # idle 61 s: a new connection
    finally:
        await wire.aclose()

    assert serve.last.connections == 2


async def test_bytes_after_the_answer_make_the_connection_unusable(serve: Servers, transport: WireTransport) -> None:
    url = await serve(always(OK + b"garbage"))

    for _ in range(2):
        assert (await get(transport, f"{url}/a")).json() == {"ok": True}

    assert serve.last.connections == 2


async def test_a_closed_transport_refuses_and_closes_its_connections(serve: Servers) -> None:
    url = await serve(always(OK))
    wire = WireTransport()
    await get(wire, f"{url}/a")

    await wire.aclose()
    await asyncio.sleep(0.05)

    assert serve.last.open == 0
    with pytest.raises(RuntimeError, match="closed"):
        await get(wire, f"{url}/b")


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1 and a client context that trusts it."""
    from benchmarks.triggerer_scale import make_certificate  # the benchmark's TLS rounds use the same one

    pem = make_certificate(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(pem)
    client = ssl.create_default_context(cafile=str(pem))
    return server, client


async def test_tls_with_a_trusted_certificate_and_not_with_an_unknown_one(serve: Servers, tmp_path: Path) -> None:
    server_context, client_context = _self_signed(tmp_path)
    url = await serve(always(OK), ssl_context=server_context)

    trusting = WireTransport(ssl_context=client_context)
    default = WireTransport()  # the process's context: public roots only
    try:
        assert (await get(trusting, f"{url}/a")).json() == {"ok": True}
        assert (await get(trusting, f"{url}/b")).status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await get(default, f"{url}/a")
    finally:
        await trusting.aclose()
        await default.aclose()
    assert serve.last.connections == 1  # the trusting client's, reused (a failed handshake never gets this far)
