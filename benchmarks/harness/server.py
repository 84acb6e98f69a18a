"""The fake server: raw HTTP/1.1 on asyncio (uvloop when installed), keep-alive, every kind's API shape.

It runs in its own process (``python -m benchmarks.harness.server``, started by :func:`fake_server`),
so the worker's CPU is the triggers' and their clients'. Runs are ``running`` until the counters say
when each turns terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, module_command
from benchmarks.harness.counters import (
    ACCEPTED,
    ALIVE,
    ERRORS_SERVED,
    MODE,
    MODE_HTTP_500,
    MODE_REFUSED,
    PORT,
    REQUESTS,
    STARTED_AT,
    TERMINAL_SERVED,
    VIRTUAL_NOW,
    Counters,
    flip_time,
    serving,
)


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
    started = counters[STARTED_AT]
    if not started:  # unset by the caller: the runs start at the first request, so a running run's
        # answer is the same bytes poll after poll, as a real one's is (not stamped anew each time)
        started = counters[STARTED_AT] = now
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


@contextlib.contextmanager
def fake_server(
    certfile: Path | None = None, spawn: Callable[[list[str]], subprocess.Popen[Any]] | None = None
) -> Iterator[tuple[Counters, int]]:
    """Start the fake server in its own process (over TLS with ``certfile``); yield its counters and port.

    ``spawn`` starts the process from its argv (the orchestrator's, to stop it with the others).
    """
    counters = Counters()
    argv = module_command("benchmarks.harness.server", "--counters", counters.name)
    if certfile is not None:
        argv += ["--certfile", str(certfile)]
    process = spawn(argv) if spawn is not None else subprocess.Popen(argv, cwd=ROOT)  # noqa: S603 - our own module
    with serving(process, counters) as port:
        yield counters, port


def main() -> None:
    parser = argparse.ArgumentParser(description="the benchmarks' fake server (started by fake_server)")
    parser.add_argument("--counters", required=True)
    parser.add_argument("--certfile", default=None)
    args = parser.parse_args()
    serve_main(args.counters, args.certfile)


if __name__ == "__main__":
    main()
