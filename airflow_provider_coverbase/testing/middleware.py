"""The outer ASGI layer around the emulator's FastAPI app: faults, delays, the request log.

A pure ASGI middleware, not a Starlette ``BaseHTTPMiddleware``: it must see uvicorn's own ``send``
to drop a connection after a run was committed, and it answers injected faults before the app. For
``/v1`` requests it adds the current dialect's ``x-coverbase-request-id``, delays the answer, answers
an armed fault instead of the app, drops the connection when a route asks for it, and logs the
request in the order the answers left. ``/_emulator`` is answered for loopback clients only.

No Airflow imports, no client imports.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from airflow_provider_coverbase.testing.answers import DROP, REQUEST_ID, dumps, is_loopback, place_retry_after
from airflow_provider_coverbase.testing.catalog import JSON
from airflow_provider_coverbase.testing.controls import Fault
from airflow_provider_coverbase.testing.state import EmulatorState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_FAULT_CODES = {
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


class FaultsMiddleware:
    """Loopback-only admin, request log, injected faults and delays, dropped responses."""

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if not path.startswith("/v1/"):
            client = scope.get("client")
            if path.startswith("/_emulator") and not is_loopback(client[0] if client else None):
                await _send_raw(send, 403, dumps({"detail": "The admin API is loopback-only."}), [])
                return
            await self.app(scope, receive, send)
            return
        await self._v1(scope, receive, send)

    async def _v1(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        request_id = str(uuid.uuid4()) if state.dialect == "current" else None
        scope[REQUEST_ID] = request_id
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        unread: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay() -> Message:
            """The body read above, once; then whatever the server sends (a disconnect)."""
            return unread.pop() if unread else await receive()

        outcome: dict[str, Any] = {"status": None, "dropped": False, "logged": False}

        def log_once() -> None:
            # Logged before the client can see the answer, so the log is in the order answers left.
            if not outcome["logged"]:
                outcome["logged"] = True
                state.request_log.append(_log_entry(scope, body, outcome["status"], state.clock.now()))

        async def guarded_send(message: Message) -> None:
            if outcome["dropped"]:
                return
            if message["type"] == "http.response.start":
                outcome["status"] = message["status"]
                if scope.get(DROP):
                    outcome["dropped"] = True
                    outcome["status"] = "dropped"
                    log_once()
                    await _abort(send, message)
                    return
                log_once()
                if request_id is not None:
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"x-coverbase-request-id", request_id.encode()),
                    ]
            await send(message)

        try:
            delay = state.faults.delay_seconds
            if delay > 0:
                await asyncio.sleep(delay)
            fault = state.faults.take_fault(scope["path"])
            if fault is not None:
                outcome["status"] = fault.status
                await self._fault_response(guarded_send, fault, request_id)
            else:
                await self.app(scope, replay, guarded_send)
        finally:
            log_once()

    async def _fault_response(self, send: Send, fault: Fault, request_id: str | None) -> None:
        code = _FAULT_CODES.get(fault.status, "injected_fault")
        body: JSON = {"detail": {"code": code, "message": fault.message}}
        headers: list[tuple[bytes, bytes]] = []
        if fault.retry_after is not None:
            placed = place_retry_after(body, fault.retry_after, self.state.variants.retry_after)
            headers += [(name.lower().encode(), value.encode()) for name, value in placed.items()]
        if request_id is not None:
            body["request_id"] = request_id
        await _send_raw(send, fault.status, dumps(body), headers)


async def _send_raw(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _abort(send: Send, start: Message) -> None:
    """Close the connection without answering: the "committed but response lost" case.

    uvicorn's ``send`` is a bound method of its request cycle, which holds the transport; aborting
    it makes the client see a transport error. Fallback: send the headers, then fail mid-body.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None:
        transport.abort()
        for _ in range(5):  # let connection_lost() run so uvicorn knows the peer is gone
            await asyncio.sleep(0)
        return
    await send(start)
    raise ConnectionAbortedError("coverbase emulator: dropped the response after commit")


def _log_entry(scope: Scope, body: bytes, status: Any, now: float) -> JSON:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").lower()
        headers[name] = "***" if name == "authorization" else raw_value.decode("latin-1")
    parsed: Any = None
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body.decode("utf-8", "replace")
    query = scope.get("query_string", b"").decode("latin-1")
    return {
        "method": scope["method"],
        "path": scope["path"],
        "query": parse_qsl(query, keep_blank_values=True),
        "headers": headers,
        "body": parsed,
        "status": status,
        "time": now,
    }
