"""Scripted servers on loopback for the transport tests: each answers as its script says, byte for byte.

A script is an async function given the connection's number (0, 1, ...) and its stream pair; it
reads requests with :func:`read_request` and writes whatever bytes the case needs (malformed framing,
a trickle, a hang-up, an extra answer). The server records every request head it read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from airflow_provider_coverbase.client import _http

Script = Callable[[int, asyncio.StreamReader, asyncio.StreamWriter, "Record"], Awaitable[None]]


@dataclass
class Record:
    """What a scripted server saw: the connections it accepted and the request heads it read."""

    connections: int = 0
    heads: list[str] = field(default_factory=list)

    def methods(self) -> list[str]:
        return [head.split(" ", 1)[0] for head in self.heads]


async def read_request(reader: asyncio.StreamReader, record: Record) -> tuple[str, bytes]:
    """One request: its head (recorded) and its body (by ``Content-Length``). ``("", b"")`` at EOF."""
    try:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    except (asyncio.IncompleteReadError, ConnectionError):
        return "", b""
    record.heads.append(head)
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return head, body


def answer(status: int = 200, body: Any = None, *, headers: str = "", raw: bytes | None = None) -> bytes:
    """An HTTP/1.1 answer with a JSON body (or ``raw`` bytes), its length, and extra header lines."""
    content = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
    return (
        f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\nContent-Length: {len(content)}\r\n{headers}\r\n"
    ).encode() + content


def run_body(run_id: str, status: str = "running") -> dict[str, Any]:
    """A current-contract run as ``GET /v1/workflows/runs/{id}`` answers it."""
    return {
        "workflow_run_id": run_id,
        "status": status,
        "workflow_name": "adhoc-campaign",
        "created_at": "2026-11-01T00:00:00Z",
    }


@contextlib.asynccontextmanager
async def scripted(script: Script, tls: ssl.SSLContext | None = None) -> AsyncIterator[tuple[str, Record]]:
    """Serve ``script`` on 127.0.0.1 (a free port; over TLS with ``tls``); yield the base URL and the record."""
    record = Record()
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = record.connections
        record.connections += 1
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await script(number, reader, writer, record)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}", record
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await server.wait_closed()


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes from ``reader`` to ``writer`` until EOF, then close ``writer``."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def relaying_to(host: str, port: int) -> Script:
    """A script that relays the connection's bytes to ``host:port`` and back (a TLS front for a plain server)."""

    async def script(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: Record) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    return script


async def _proxy(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: Record) -> None:
    """An HTTP proxy for ``CONNECT`` (what HTTPS goes through): tunnels to the target it names."""
    head, _ = await read_request(reader, record)
    method, target, _ = head.split(" ", 2)
    if method != "CONNECT":
        writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        return
    host, _, port = target.rpartition(":")
    upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


def connect_proxy() -> contextlib.AbstractAsyncContextManager[tuple[str, Record]]:
    """A real ``CONNECT`` proxy on loopback: yields its URL (for ``HTTPS_PROXY``) and the requests it tunnelled."""
    return scripted(_proxy)


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def proxy_environment(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """Set the proxy variables to ``values`` (``HTTPS_PROXY=...``, ``NO_PROXY=...``), all others unset."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(name="tls")
def tls_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """The ``tls`` fixture: a server TLS context for 127.0.0.1 whose throw-away CA the process trusts.

    Import it into a test module to use it (``SSL_CERT_FILE`` names the CA).

    The process's TLS context is made once (:func:`shared_ssl_context`): it is made again, from
    ``SSL_CERT_FILE``, for this test, and the one before is back afterwards.
    """
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    monkeypatch.setattr(_http, "_context", None)
    return server
