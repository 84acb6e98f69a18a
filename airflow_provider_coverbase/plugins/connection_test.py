"""An Airflow plugin of the provider that makes the connection list's "Test" button work for Coverbase connections.

Why it exists: in Airflow 3.3.2 the connection list's Test button posts the stored connection back to
``POST /api/v2/connections/test`` with ``"port": Number(connection.port)``, which is ``0`` for a
connection without a port (every Coverbase connection: the form hides the port). The API compares
that ``0`` with the stored ``NULL``, finds "a different destination", and answers ``400 The host or
port to test differs from the stored connection`` before our ``test_connection`` is reached.
apache/airflow#73298 fixes this in the API (port ``0`` counts as no port) for a later release.

Until every supported Airflow has that fix, :class:`ConnectionTestPortMiddleware` removes
``"port": 0`` from test requests of ``coverbase`` connections, so the API keeps the stored port (none)
and runs the stored connection's test, exactly as with the fix. Nothing else is changed: other
connection types, other ports and other requests pass through untouched, and the API still refuses
to test a different host with the stored credentials.

Registered through the ``airflow.plugins`` entry point (loaded by every Airflow process under the
default settings, unlike a provider-info ``plugins`` entry). The module imports only Airflow's plugin
base class, so loading it is cheap.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from airflow.sdk.plugins_manager import AirflowPlugin

__all__ = ["ConnectionTestPortMiddleware", "CoverbaseConnectionTestPlugin", "drop_unaddressed_port"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONN_TYPE = "coverbase"
#: The public API route the UI's Test button posts to (behind any ``[api] base_url`` path prefix).
TEST_PATH = "/api/v2/connections/test"
#: Larger bodies are passed through unread: a connection test body is a few hundred bytes.
MAX_BODY = 1 << 20


def drop_unaddressed_port(body: bytes) -> bytes | None:
    """The test request ``body`` without ``"port": 0`` if it tests a Coverbase connection, else ``None``.

    ``None`` means "send the original body unchanged": not JSON, not an object, another connection
    type, or a port other than ``0`` (a real port is compared with the stored one as usual).
    """
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("conn_type") != CONN_TYPE:
        return None
    port = data.get("port")
    if "port" not in data or isinstance(port, bool) or port != 0:
        return None
    del data["port"]
    return json.dumps(data).encode()


class ConnectionTestPortMiddleware:
    """ASGI middleware that applies :func:`drop_unaddressed_port` to connection test requests."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass everything through, except a Coverbase connection test request with ``"port": 0``."""
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope.get("path", "").endswith(TEST_PATH):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to test
                return
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more_body = bool(message.get("more_body", False))
            if size > MAX_BODY:
                break
        body = b"".join(chunks)
        fixed = None if more_body else drop_unaddressed_port(body)
        if fixed is not None:
            body = fixed
            headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
            scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": more_body}
            return await receive()

        await self.app(scope, replay, send)


class CoverbaseConnectionTestPlugin(AirflowPlugin):
    """Adds :class:`ConnectionTestPortMiddleware` to Airflow's API server."""

    name = "coverbase_connection_test"
    fastapi_root_middlewares = [
        {"name": "Coverbase connection test: port 0 means no port", "middleware": ConnectionTestPortMiddleware}
    ]
