"""A lean HTTP/1.1 transport on asyncio protocols, for the shared async client. No Airflow imports.

Thousands of triggers poll through one shared client, so each poll's CPU is the provider's main
cost. httpx's own async transport (httpcore over anyio, with h11 parsing) spends about 0.7 ms of CPU
per request on loopback, several times what the trigger, our client and the JSON parsing spend
together. :class:`WireTransport` sends the same requests with a small fraction of that: one
``asyncio.Protocol`` per TCP (or TLS) connection, one ``write`` per request, the answer parsed from
the bytes as they arrive, and one future per request.

What it does, for the API's small JSON answers:

- **HTTP/1.1 only**, one request at a time per connection, connections kept alive and reused most
  recently used first (so a light load keeps to one or two), at most ``max_connections`` per
  origin; further requests wait in line (first come, first served, constant cost each).
- **Bodies**: ``Content-Length``, ``Transfer-Encoding: chunked`` (trailers skipped) or, without
  either, up to the server's close. ``1xx`` interim answers are skipped; ``204``, ``304`` and answers
  to ``HEAD`` have no body. The body is handed to ``httpx.Response`` whole, which decodes any
  ``Content-Encoding``.
- **Keep-alive**: a connection is reused unless the answer said ``Connection: close``, came as
  HTTP/1.0, ended at the server's close, or left unread bytes; an idle connection is dropped when
  the server closes it or after ``keepalive_expiry`` seconds.
- **A reused connection the server closed** while the request was on its way (nothing of an answer
  read) is retried once on a new connection, as browsers do. The provider's requests are GETs or
  carry an ``Idempotency-Key``, so this never starts a second run.
- **Timeouts** from the request's ``timeout`` extension (set once when the request is built):
  ``connect`` for the TCP and TLS handshake, ``pool`` for the wait for a free connection, ``read``
  for the whole answer (from the moment the request is written; httpx counts it per read, which
  only differs for answers that trickle in). Requests are written in one call to the kernel's
  buffer, so ``write`` is not enforced.
- **TLS** with the process's one context (:func:`shared_ssl_context`), the host name checked.
- **Errors** are httpx's own (``ConnectError``, ``ConnectTimeout``, ``PoolTimeout``, ``ReadTimeout``,
  ``ReadError``, ``RemoteProtocolError``), so the client maps them as it always has.

Proxies from ``HTTP(S)_PROXY`` are httpx's business: the client sends through its proxy transport
when one applies, and through this one otherwise.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import Callable
from typing import Any

import httpx

from airflow_provider_coverbase.client._http import shared_ssl_context

__all__ = ["DEFAULT_MAX_CONNECTIONS", "WireTransport"]

#: Connections per origin, event loop and shared client (each request holds one for a round trip).
DEFAULT_MAX_CONNECTIONS = 32
#: Longest response head accepted (status line and headers).
MAX_HEAD_BYTES = 64 * 1024
#: Longest body accepted: far beyond any API answer, small enough to stop a runaway stream.
MAX_BODY_BYTES = 64 * 1024 * 1024

_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)

#: (status, reason, headers, body, keep_alive)
_Answer = tuple[int, bytes, list[tuple[bytes, bytes]], bytes, bool]


class _StaleConnection(httpx.RemoteProtocolError):
    """A reused connection was closed before any byte of the answer: safe to send again once."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: writes a request, parses its answer as the bytes arrive."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.served = 0
        self.idle_since = 0.0
        self._buffer = bytearray()
        self._waiter: asyncio.Future[_Answer] | None = None
        self._request: httpx.Request | None = None
        self._no_body = False
        self._state = _DONE
        self._status = 0
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._keep_alive = False
        self._remaining = 0
        self._body = bytearray()
        self._received = False

    # ---- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a stream transport, by construction
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        waiter = self._waiter
        if waiter is None or waiter.done():
            self.close()  # bytes nobody asked for: the connection is out of step, drop it
            return
        self._received = True
        try:
            answer = self._parse()
        except httpx.RemoteProtocolError as exc:
            self._fail(exc)
            return
        if answer is not None:
            self._waiter = None
            waiter.set_result(answer)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._state == _UNTIL_CLOSE and exc is None:  # the close ends the body
            self._state = _DONE
            self._keep_alive = False
            self._waiter = None
            waiter.set_result(self._answer(bytes(self._body + self._buffer)))
            return
        request = self._request
        error: httpx.TransportError
        if not self._received and self.served:
            error = _StaleConnection("Server disconnected without sending a response.", request=request)
        elif exc is not None:
            error = httpx.ReadError(str(exc) or type(exc).__name__, request=request)
        elif not self._received:
            error = httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        else:
            error = httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body", request=request
            )
        self._waiter = None
        waiter.set_exception(error)

    # ---- requests -----------------------------------------------------------------------

    async def request(self, request: httpx.Request, data: bytes, read_timeout: float | None) -> _Answer:
        """Write ``data`` (the whole request) and wait for the whole answer."""
        transport = self.transport
        if transport is None or self.closed:
            raise _StaleConnection("Server disconnected without sending a response.", request=request)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_Answer] = loop.create_future()
        self._waiter = waiter
        self._request = request
        self._no_body = request.method == "HEAD"
        self._state = _HEAD
        self._received = False
        transport.write(data)
        timer = loop.call_later(read_timeout, self._read_timed_out) if read_timeout is not None else None
        try:
            return await waiter
        except asyncio.CancelledError:
            self.close()  # an answer may still be on its way: this connection cannot be reused
            raise
        finally:
            self._request = None
            if timer is not None:
                timer.cancel()

    def _read_timed_out(self) -> None:
        self._fail(httpx.ReadTimeout("timed out waiting for the answer", request=self._request))

    def _fail(self, error: httpx.TransportError) -> None:
        waiter, self._waiter = self._waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    @property
    def reusable(self) -> bool:
        return not self.closed and self._keep_alive and not self._buffer

    # ---- parsing ------------------------------------------------------------------------

    def _answer(self, body: bytes) -> _Answer:
        return self._status, self._reason, self._headers, body, self._keep_alive

    def _parse(self) -> _Answer | None:
        """Advance through the buffered bytes; the answer once it is complete, else ``None``."""
        buffer = self._buffer
        while True:
            state = self._state
            if state == _HEAD:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD_BYTES:
                        raise httpx.RemoteProtocolError("response head too large", request=self._request)
                    return None
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                self._read_head(head)
            elif state == _LENGTH:
                if len(buffer) < self._remaining:
                    return None
                body = bytes(buffer[: self._remaining])
                del buffer[: self._remaining]
                self._state = _DONE
                return self._answer(body)
            elif state == _CHUNK_SIZE:
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD_BYTES:
                        raise httpx.RemoteProtocolError("chunk size line too long", request=self._request)
                    return None
                line = bytes(buffer[:end]).split(b";", 1)[0].strip()
                del buffer[: end + 2]
                try:
                    size = int(line, 16)
                except ValueError:
                    raise httpx.RemoteProtocolError(f"bad chunk size {line!r}", request=self._request) from None
                if size < 0 or len(self._body) + size > MAX_BODY_BYTES:
                    raise httpx.RemoteProtocolError("bad or too large chunk", request=self._request)
                self._remaining = size
                self._state = _CHUNK_DATA if size else _TRAILERS
            elif state == _CHUNK_DATA:
                take = min(self._remaining, len(buffer))
                if not take:
                    return None
                self._body += buffer[:take]
                del buffer[:take]
                self._remaining -= take
                if not self._remaining:
                    self._state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if len(buffer) < 2:
                    return None
                if buffer[:2] != b"\r\n":
                    raise httpx.RemoteProtocolError("chunk not followed by CRLF", request=self._request)
                del buffer[:2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                if buffer[:2] == b"\r\n":
                    del buffer[:2]
                else:
                    end = buffer.find(b"\r\n\r\n")
                    if end < 0:
                        if len(buffer) > MAX_HEAD_BYTES:
                            raise httpx.RemoteProtocolError("trailers too large", request=self._request)
                        return None
                    del buffer[: end + 4]  # trailers are not part of the answer we use
                self._state = _DONE
                return self._answer(bytes(self._body))
            elif state == _UNTIL_CLOSE:
                if len(self._body) + len(buffer) > MAX_BODY_BYTES:
                    raise httpx.RemoteProtocolError("response body too large", request=self._request)
                return None  # connection_lost ends it
            else:
                return None

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        version = parts[0]
        if len(parts) < 2 or not version.startswith(b"HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
            raise httpx.RemoteProtocolError(f"malformed status line {lines[0][:100]!r}", request=self._request)
        status = int(parts[1])
        headers: list[tuple[bytes, bytes]] = []
        length: int | None = None
        chunked = False
        close = version != b"HTTP/1.1"
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
                raise httpx.RemoteProtocolError(f"malformed header line {line[:100]!r}", request=self._request)
            value = value.strip()
            headers.append((name, value))
            lower = name.lower()
            if lower == b"content-length":
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise httpx.RemoteProtocolError(f"bad Content-Length {value[:40]!r}", request=self._request)
                length = int(value)
            elif lower == b"transfer-encoding":
                chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            elif lower == b"connection":
                tokens = {token.strip() for token in value.lower().split(b",")}
                if b"close" in tokens:
                    close = True
                elif b"keep-alive" in tokens and version == b"HTTP/1.0":
                    close = False
        if 100 <= status < 200 and status != 101:
            self._state = _HEAD  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            return
        self._status, self._reason = status, parts[2] if len(parts) > 2 else b""
        self._headers = headers
        self._keep_alive = not close
        self._body = bytearray()
        if self._no_body or status in (101, 204, 304):
            self._state, self._remaining = _LENGTH, 0
        elif chunked:
            self._state = _CHUNK_SIZE
        elif length is not None:
            if length > MAX_BODY_BYTES:
                raise httpx.RemoteProtocolError("response body too large", request=self._request)
            self._state, self._remaining = _LENGTH, length
        else:
            self._state, self._keep_alive = _UNTIL_CLOSE, False


class _Pool:
    """The connections to one origin: idle ones (most recent last), a count, and a line of waiters."""

    __slots__ = ("idle", "open", "waiters")

    def __init__(self) -> None:
        self.idle: list[_Connection] = []
        self.open = 0  # connections open or being opened
        self.waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()


class WireTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio protocols, connections kept alive (see the module docstring).

    Made and used in one event loop (the shared client is per loop). ``clock`` is injected for tests
    of the keep-alive expiry.
    """

    def __init__(
        self,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        keepalive_expiry: float = 3600.0,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections!r}")
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self._ssl = ssl_context
        self._clock = clock
        self._pools: dict[tuple[bytes, bytes, int], _Pool] = {}
        self._closed = False
        self.connections_opened = 0  # for tests and benchmarks

    def __repr__(self) -> str:
        return f"WireTransport(max_connections={self.max_connections}, pools={len(self._pools)})"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("Cannot send a request, as the transport has been closed.")
        url = request.url
        scheme = url.raw_scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}", request=request)
        host = url.raw_host
        port = url.port or _DEFAULT_PORTS[scheme]
        origin = (scheme, host, port)
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _Pool()
        timeouts = request.extensions.get("timeout", {})
        data = _serialize(request)
        for attempt in (1, 2):
            connection = await self._acquire(pool, origin, request, timeouts)
            try:
                status, reason, headers, body, _ = await connection.request(request, data, timeouts.get("read"))
            except _StaleConnection:
                self._release(pool, connection)
                if attempt == 2:
                    raise
                continue
            except BaseException:
                self._release(pool, connection)
                raise
            connection.served += 1
            self._release(pool, connection)
            return httpx.Response(
                status,
                headers=headers,
                content=body,
                request=request,
                extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
            )
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- the pool -------------------------------------------------------------------------

    async def _acquire(
        self, pool: _Pool, origin: tuple[bytes, bytes, int], request: httpx.Request, timeouts: dict[str, Any]
    ) -> _Connection:
        idle = pool.idle
        while idle:
            connection = idle.pop()
            if not connection.closed and self._clock() - connection.idle_since < self.keepalive_expiry:
                return connection
            connection.close()
            pool.open -= 1
        if pool.open >= self.max_connections:
            waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            pool.waiters.append(waiter)
            try:
                async with asyncio.timeout(timeouts.get("pool")):
                    handed = await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():  # handed something just as we gave up
                    given = waiter.result()
                    if given is None:
                        pool.open -= 1
                        self._wake_one(pool)
                    else:
                        self._hand_back(pool, given)
                else:
                    waiter.cancel()
                if isinstance(exc, TimeoutError):
                    raise httpx.PoolTimeout("timed out waiting for a free connection", request=request) from None
                raise
            if handed is not None:
                return handed
            # handed None: a connection closed, and its place is ours (already counted in pool.open)
        else:
            pool.open += 1
        try:
            return await self._connect(origin, request, timeouts.get("connect"))
        except BaseException:
            pool.open -= 1
            self._wake_one(pool)
            raise

    async def _connect(
        self, origin: tuple[bytes, bytes, int], request: httpx.Request, connect_timeout: float | None
    ) -> _Connection:
        scheme, raw_host, port = origin
        host = raw_host.decode("ascii")
        context = None
        if scheme == b"https":
            context = self._ssl if self._ssl is not None else shared_ssl_context()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout):
                _, connection = await loop.create_connection(
                    _Connection, host, port, ssl=context, server_hostname=host if context else None
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}", request=request) from None
        except (OSError, ssl.SSLError, ssl.CertificateError) as exc:
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}", request=request) from None
        self.connections_opened += 1
        return connection

    def _release(self, pool: _Pool, connection: _Connection) -> None:
        if self._closed or not connection.reusable:
            connection.close()
            pool.open -= 1
            self._wake_one(pool)
            return
        self._hand_back(pool, connection)

    def _hand_back(self, pool: _Pool, connection: _Connection) -> None:
        """A reusable connection: to the first live waiter, else to the idle list."""
        while pool.waiters:
            waiter = pool.waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        connection.idle_since = self._clock()
        pool.idle.append(connection)

    def _wake_one(self, pool: _Pool) -> None:
        """A connection closed: the first live waiter may open one in its place."""
        while pool.waiters:
            waiter = pool.waiters.popleft()
            if not waiter.done():
                pool.open += 1
                waiter.set_result(None)
                return

    def connections(self) -> int:
        """Connections open now, over all origins (idle or in use)."""
        return sum(pool.open for pool in self._pools.values())

    async def aclose(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            for connection in pool.idle:
                connection.close()
            pool.idle.clear()
            while pool.waiters:
                waiter = pool.waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(RuntimeError("the transport was closed"))
        self._pools.clear()


def _serialize(request: httpx.Request) -> bytes:
    """The request as bytes on the wire: request line, headers (httpx set ``Host`` and the length), body."""
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
    lines.extend(b"%s: %s" % (name, value) for name, value in request.headers.raw)
    return b"\r\n".join(lines) + b"\r\n\r\n" + request.content
