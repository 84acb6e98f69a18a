"""HTTP plumbing shared by both clients: one TLS context per process, the connection limits, proxies.

Building an ``httpx`` client builds a TLS context unless one is passed in: about 22 ms of CPU and
0.8 MB each, even for ``http://``. One context made once and passed as ``verify=`` makes a client
cost about 1 ms. No Airflow imports.
"""

from __future__ import annotations

import ssl
import threading
import urllib.request

import httpx

__all__ = [
    "ENCODED_BODY_HEADERS",
    "MAX_BODY_BYTES",
    "connection_limits",
    "environment_proxy",
    "read_whole",
    "shared_ssl_context",
    "sync_transport",
]

#: Largest decoded body accepted: far beyond any API answer, small enough to stop a runaway or a bomb.
MAX_BODY_BYTES = 16 * 1024 * 1024
#: Headers about a body as it came over the wire, dropped from an answer handed on decoded (by both
#: clients: httpx must not decode it again, and the wire length is not the decoded body's).
ENCODED_BODY_HEADERS = (b"content-encoding", b"content-length")

_lock = threading.Lock()
_context: ssl.SSLContext | None = None


def shared_ssl_context() -> ssl.SSLContext:
    """The process's TLS context (httpx's defaults: certifi roots, ``SSL_CERT_FILE``/``SSL_CERT_DIR``)."""
    global _context
    if _context is None:
        with _lock:
            if _context is None:
                _context = httpx.create_ssl_context()
    return _context


def connection_limits(max_connections: int, keepalive_expiry: float) -> httpx.Limits:
    """Limits that keep every connection of the pool alive between requests for ``keepalive_expiry`` s.

    httpx keeps only 20 idle connections by default and drops the rest after each request, so a busy
    pool would open a new connection for almost every request.
    """
    return httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=keepalive_expiry,
    )


def environment_proxy(url: httpx.URL) -> str | None:
    """The proxy the environment names for ``url``, or ``None`` to connect directly.

    ``HTTPS_PROXY`` for ``https://`` (``HTTP_PROXY`` for ``http://``, ``ALL_PROXY`` for either), upper
    or lower case, unless ``NO_PROXY`` lists the host (a name, a domain suffix, ``host:port`` or
    ``*``): the standard library's reading of these variables (``urllib.request.getproxies`` and
    ``proxy_bypass``), which aiohttp uses too. Both clients call it once per origin, when they first
    send to it, as httpx reads them once per client.
    """
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy:
        return None
    host = url.host if url.port is None else f"{url.host}:{url.port}"
    if urllib.request.proxy_bypass(host):
        return None
    return proxy


def sync_transport(base_url: str, max_connections: int, keepalive_expiry: float) -> httpx.HTTPTransport:
    """The sync client's transport: httpx's own, the process's TLS context, every connection kept alive,
    and the proxy :func:`environment_proxy` names for ``base_url``, as ``httpx.Client`` would mount it."""
    return httpx.HTTPTransport(
        verify=shared_ssl_context(),
        limits=connection_limits(max_connections, keepalive_expiry),
        proxy=environment_proxy(httpx.URL(base_url)),
    )


def read_whole(response: httpx.Response, limit: int = MAX_BODY_BYTES) -> httpx.Response:
    """``response`` read whole, at most ``limit`` bytes once decoded (the sync client's reading).

    httpx decodes a compressed body with no cap on its decoded size; read chunk by chunk as httpx
    decodes each network read, a compression bomb stops at the cap (its cost bounded by one read's
    worth decoded, about a thousand times the read). The answer returned holds the decoded body,
    without ``Content-Encoding`` or the wire's ``Content-Length``. The async client's transport caps the body itself.
    """
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise httpx.RemoteProtocolError(
                f"response body larger than {limit} bytes (decoded)", request=response.request
            )
        chunks.append(chunk)
    headers = response.headers.raw
    if "content-encoding" in response.headers:
        headers = [(name, value) for name, value in headers if name.lower() not in ENCODED_BODY_HEADERS]
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=b"".join(chunks),
        request=response.request,
        extensions=response.extensions,
    )
