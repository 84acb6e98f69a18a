"""HTTP plumbing shared by both clients: one TLS context per process and the connection limits.

Building an ``httpx`` client builds a TLS context unless one is passed in: about 22 ms of CPU and
0.8 MB each, even for ``http://``. One context made once and passed as ``verify=`` makes a client
cost about 1 ms. No Airflow imports.
"""

from __future__ import annotations

import ssl
import threading

import httpx

__all__ = ["connection_limits", "shared_ssl_context"]

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
