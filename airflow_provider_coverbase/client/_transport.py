"""The shared async client's transport: aiohttp under httpx's transport interface. No Airflow imports.

Thousands of triggers poll through one shared client, so each poll's CPU is the provider's main cost.
Measured side by side (``python -m benchmarks.transport_cpu``: N=1,000 triggers, 5 s polls, a
fresh worker per transport, median of 3; 2026-12-02), CPU s per 1,000 polls: aiohttp under this
adapter 0.435, ``httpx_aiohttp`` 0.445, httpx's own async transport (httpcore on anyio) 3.96, and
0.156 answering in-process without any I/O. httpcore is nine times the cost (and fell behind the
polls); aiohttp parses with its C parser (llhttp) and wakes once per answer. So the bytes go
through aiohttp, a well-kept library with strict parsing; this module only adapts it to the
``httpx.Request``/``httpx.Response`` the I/O-free core builds and reads.

Why not ``httpx_aiohttp.AiohttpTransport`` as it is (the same idea, offered by openai-python): it maps
a refused connection and a server hang-up to ``httpx.ConnectTimeout`` (so they would read as "did not
answer in time"), hands the still-compressed body to httpx, whose decoders have no size cap, ignores
``HTTP(S)_PROXY`` unless given a session, and streams the body through an async generator per answer.
The adapter it would need is about as long as this module, which owns the choices below.

What this transport guarantees, whatever aiohttp's defaults:

- **One aiohttp session per transport** (the shared client is per connection and event loop), made
  on first use in its loop: at most ``max_connections`` connections, each kept alive for
  ``keepalive_expiry`` s (longer than any poll interval), no cookie jar, redirects never followed.
- **Proxies from the environment**: ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` and ``NO_PROXY``
  (see :func:`~airflow_provider_coverbase.client._http.environment_proxy`), read once per origin, as
  httpx does for its own clients. HTTPS goes through an HTTP proxy by ``CONNECT``.
- **Happy Eyeballs** (RFC 8305): a host's addresses are tried 0.25 s apart, so a black-holed first
  address costs 0.25 s, not the whole connect timeout.
- **Timeouts** from the request's ``timeout`` extension: ``connect`` for a new connection's TCP and
  TLS handshake (``httpx.ConnectTimeout``); ``read`` for each wait for the answer's bytes, and the
  whole exchange (waiting for a free connection, sending, and the answer to its last byte) bounded by
  ``connect + read`` (both ``httpx.ReadTimeout``), so an answer trickled in a byte at a time times
  out too, not only a silent one.
- **Bodies**: at most :data:`MAX_BODY_BYTES` *decoded* bytes; aiohttp decompresses ``gzip`` and
  ``deflate`` in bounded steps as the bytes arrive, and the read stops at the cap, so a compression
  bomb costs the cap, not its decoded size. The answer handed to httpx is already decoded (its
  ``Content-Encoding`` header removed, so httpx does not decode again, unbounded).
- **Strict framing**: aiohttp's parser (llhttp) refuses malformed chunk sizes, header names with
  spaces, NUL bytes, conflicting lengths; refused here: an interim ``1xx`` (or a ``101``) as the
  final answer, and any ``Transfer-Encoding`` but one ``chunked`` (which RFC 9112 would have read to
  the connection's close, the raw chunk framing as the body).
- **A dead keep-alive connection** (closed by the server as the request went out, before any
  answer byte): never resent by the transport. aiohttp would resend a GET or HEAD once, at once,
  outside the client's retry policy and request budget (RFC 9112 §9.3.1 allows it); a client
  middleware (:func:`_resend_by_the_client`) turns the failure into ``httpx.RemoteProtocolError``
  before aiohttp can, for every method. The client's retry policy then decides: a GET is resent
  after its backoff, a POST only with an ``Idempotency-Key`` (every run-starting call has one), and
  each resend spends the request budget like any request.
- **Errors** are httpx's own, as the client has always mapped them: a refused or unreachable address
  ``httpx.ConnectError``, a connect timeout ``httpx.ConnectTimeout``, a hang-up or bad framing
  ``httpx.RemoteProtocolError``, a reset ``httpx.ReadError``, a proxy failure ``httpx.ProxyError``.

A stale extra answer (bytes a server sends after its answer) is not reliably detected by aiohttp
when it arrives while the connection is idle: the client checks that a run it reads is the run it
asked for (:class:`~airflow_provider_coverbase.client._core.ClientCore`), and retries otherwise.
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
import httpx
import yarl
from aiohttp.abc import AbstractResolver

from airflow_provider_coverbase.client._http import (
    ENCODED_BODY_HEADERS,
    MAX_BODY_BYTES,
    environment_proxy,
    shared_ssl_context,
)
from airflow_provider_coverbase.defaults import DEFAULT_KEEPALIVE_EXPIRY

__all__ = ["DEFAULT_MAX_CONNECTIONS", "MAX_BODY_BYTES", "AiohttpTransport"]

#: Connections per origin, event loop and shared client (each request holds one for a round trip).
DEFAULT_MAX_CONNECTIONS = 32
#: RFC 8305's recommended delay between connection attempts to a host's addresses.
HAPPY_EYEBALLS_DELAY = 0.25

_NO_PROXY = ""


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx's async transport interface over one aiohttp session (see the module docstring).

    Made and used in one event loop. ``resolver`` replaces aiohttp's DNS resolver (tests give a host
    several addresses); ``ssl_context`` the process's TLS context.
    """

    def __init__(
        self,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        keepalive_expiry: float = DEFAULT_KEEPALIVE_EXPIRY,
        *,
        ssl_context: ssl.SSLContext | None = None,
        resolver: AbstractResolver | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections!r}")
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self.max_body_bytes = max_body_bytes
        self._ssl = ssl_context
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._proxies: dict[tuple[str, str, int | None], str] = {}
        self._timeouts: dict[tuple[Any, Any], aiohttp.ClientTimeout] = {}

    def __repr__(self) -> str:
        return f"AiohttpTransport(max_connections={self.max_connections})"

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.max_connections,
            keepalive_timeout=self.keepalive_expiry,
            ssl=self._ssl if self._ssl is not None else shared_ssl_context(),
            happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY,
            resolver=self._resolver,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # Compression is not asked for (as with the sync client); an answer compressed anyway is
            # decoded in bounded steps and capped (see _read).
            skip_auto_headers=("Accept-Encoding",),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,  # proxies: environment_proxy, once per origin; no per-request ~/.netrc
            auto_decompress=True,
            middlewares=(_resend_by_the_client,),
        )
        return self._session

    def _proxy(self, url: httpx.URL) -> str | None:
        key = (url.scheme, url.host, url.port)
        proxy = self._proxies.get(key)
        if proxy is None:
            proxy = self._proxies[key] = environment_proxy(url) or _NO_PROXY
        return proxy or None

    def _timeout(self, timeouts: dict[str, Any]) -> aiohttp.ClientTimeout:
        connect, read = timeouts.get("connect"), timeouts.get("read")
        key = (connect, read)
        timeout = self._timeouts.get(key)
        if timeout is None:
            whole = None if connect is None or read is None else connect + read
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(total=whole, sock_connect=connect, sock_read=read)
        return timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("Cannot send a request, as the transport has been closed.")
        session = self._session or self._open()
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}", request=request)
        try:
            async with session.request(
                request.method,
                yarl.URL(str(url), encoded=True),  # as the core encoded it: %2E%2E stays one segment
                headers=request.headers.multi_items(),
                data=request.content or None,
                allow_redirects=False,
                timeout=self._timeout(request.extensions.get("timeout", {})),
                proxy=self._proxy(url),
            ) as answer:
                if answer.status < 200:
                    raise httpx.RemoteProtocolError(
                        f"interim answer {answer.status} where a final answer was due", request=request
                    )
                if "Transfer-Encoding" in answer.headers:
                    _check_transfer_encoding(answer.headers.getall("Transfer-Encoding"), request)
                body = await self._read(answer, request)
                headers: Any = answer.raw_headers
                if "Content-Encoding" in answer.headers:  # decoded here: httpx must not decode it again
                    headers = [(name, value) for name, value in headers if name.lower() not in ENCODED_BODY_HEADERS]
                return httpx.Response(
                    answer.status,
                    headers=headers,
                    content=body,
                    request=request,
                    extensions={"http_version": b"HTTP/1.1", "reason_phrase": (answer.reason or "").encode()},
                )
        except httpx.TransportError:
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _mapped(exc, request) from exc

    async def _read(self, answer: aiohttp.ClientResponse, request: httpx.Request) -> bytes:
        """The decoded body, at most ``max_body_bytes`` of it (read as it is decoded, so a bomb stops at the cap)."""
        content = answer.content
        chunks: list[bytes] = []
        size = 0
        while chunk := await content.readany():
            size += len(chunk)
            if size > self.max_body_bytes:
                answer.close()  # the rest is not read: this connection cannot be reused
                raise httpx.RemoteProtocolError(
                    f"response body larger than {self.max_body_bytes} bytes (decoded)", request=request
                )
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None


class _ConnectionLost(aiohttp.ClientError):
    """A connection died before its answer (``original`` says how), carried past aiohttp's own resend."""

    def __init__(self, original: aiohttp.ClientOSError | aiohttp.ServerDisconnectedError) -> None:
        super().__init__(str(original))
        self.original = original


async def _resend_by_the_client(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """Client middleware: a connection lost before the answer fails the request, so aiohttp does not
    resend it on its own; the client's retry policy (backoff, budget, idempotency) decides instead.
    A refused or unreachable address is left as it is (aiohttp never resends those)."""
    try:
        return await handler(request)
    except aiohttp.ClientConnectorError:
        raise
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        raise _ConnectionLost(exc) from exc


def _check_transfer_encoding(values: list[str], request: httpx.Request) -> None:
    """Refuse any transfer coding but a single ``chunked``: the client asks for no other (``TE`` is not
    sent), and RFC 9112 would have an answer whose last coding is not ``chunked`` read to the close of
    the connection, handing the raw framing over as the body (strict parsers such as h11 refuse it)."""
    codings = [coding.strip().lower() for value in values for coding in value.split(",")]
    if codings != ["chunked"]:
        raise httpx.RemoteProtocolError(f"unsupported Transfer-Encoding {', '.join(values)!r}", request=request)


def _mapped(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    """The httpx error that means what aiohttp's ``exc`` means (the order matters: subclasses first)."""
    if isinstance(exc, _ConnectionLost):
        exc = exc.original
    message = str(exc) or type(exc).__name__
    error: httpx.TransportError
    if isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        error = httpx.ProxyError(message)
    elif isinstance(exc, aiohttp.ConnectionTimeoutError):
        error = httpx.ConnectTimeout(message)
    elif isinstance(exc, TimeoutError):  # a read timeout, or the whole exchange's
        error = httpx.ReadTimeout(message or "timed out waiting for the answer")
    elif isinstance(exc, aiohttp.ClientConnectorError):  # refused, unreachable, DNS, TLS handshake
        error = httpx.ConnectError(message)
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        error = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    elif isinstance(exc, aiohttp.ClientOSError):
        error = httpx.ReadError(message)
    elif isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        error = httpx.UnsupportedProtocol(message)
    else:  # ClientPayloadError (a body cut short, bad chunks, bad encoding), a malformed answer
        error = httpx.RemoteProtocolError(message)
    error.request = request
    return error
