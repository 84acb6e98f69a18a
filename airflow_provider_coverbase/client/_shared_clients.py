"""One async client per connection, event loop and process, shared by every user. No Airflow imports.

A triggerer runs thousands of triggers in one event loop. If each built its own ``httpx.AsyncClient``
it would pay a TLS context (about 22 ms of CPU and 0.8 MB) and a connection per poll. Instead they
*acquire* the shared :class:`~airflow_provider_coverbase.client.AsyncCoverbaseClient` of their
connection and *release* it when done:

- the first user of a connection in a loop creates it (about 1 ms: the TLS context is the
  process's own, see :func:`shared_ssl_context`); later users get the same object at once;
- the last user to release it closes its connections;
- another event loop gets its own (asyncio objects cannot cross loops);
- a changed connection (a rotated key, another URL, another budget) has another fingerprint, so new
  users get a new client while the users of the old one finish with it undisturbed.

Its requests go through an :class:`~airflow_provider_coverbase.client._transport.AiohttpTransport`:
one aiohttp session, at most 32 connections kept alive for an hour (longer than any poll), proxies
from the environment, a fraction of the CPU per request of httpx's own async transport (httpcore on
anyio; why: see that module). All users share the connection's :class:`RequestBudget`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from airflow_provider_coverbase.client._async import AsyncCoverbaseClient
from airflow_provider_coverbase.client._config import ClientConfig
from airflow_provider_coverbase.client._transport import AiohttpTransport

__all__ = ["SharedClients", "shared_clients"]


@dataclass(slots=True)
class _Entry:
    client: AsyncCoverbaseClient
    users: int = 0


class SharedClients:
    """The registry: shared async clients keyed by (event loop, connection name, config fingerprint).

    ``transport_factory`` builds the transport of each new shared client (tests pass one that
    returns an ``httpx.MockTransport``); by default an :class:`AiohttpTransport`, its connections kept
    alive for ``DEFAULT_KEEPALIVE_EXPIRY`` (an hour: longer than any poll interval).
    """

    def __init__(self, transport_factory: Callable[[], httpx.AsyncBaseTransport] | None = None) -> None:
        self._transport_factory = transport_factory or AiohttpTransport
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], _Entry]] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"SharedClients(loops={len(self._by_loop)})"

    def _entries(self) -> dict[tuple[str, str], _Entry]:
        loop = asyncio.get_running_loop()
        entries = self._by_loop.get(loop)
        if entries is None:
            entries = self._by_loop[loop] = {}
        return entries

    def acquire(self, name: str, config: ClientConfig) -> AsyncCoverbaseClient:
        """The shared client of ``name`` with ``config`` in the running loop; pair with :meth:`release`.

        Synchronous and cheap (a dict lookup; about 1 ms for the first user), so it never blocks
        the loop. ``name`` is a label such as the Airflow connection id; the key itself is only ever
        held as part of the fingerprint.
        """
        entries = self._entries()
        key = (name, config.fingerprint())
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = _Entry(AsyncCoverbaseClient(config=config, transport=self._transport_factory()))
        entry.users += 1
        return entry.client

    async def release(self, client: AsyncCoverbaseClient) -> None:
        """Give back a client from :meth:`acquire`; the last user's release closes its connections.

        Released from another loop than the one it was acquired in (unusual), it is still counted
        down in its own loop's registry, so other users keep a working client.
        """
        loop = asyncio.get_running_loop()
        registries = [self._by_loop.get(loop, {})] + [e for other, e in self._by_loop.items() if other is not loop]
        for entries in registries:
            for key, entry in entries.items():
                if entry.client is client:
                    entry.users -= 1
                    if entry.users <= 0:
                        del entries[key]
                        await client.aclose()
                    return
        await client.aclose()  # not (or no longer) shared: close it

    def users(self, name: str, config: ClientConfig) -> int:
        """How many users hold the shared client of ``name``/``config`` in the running loop (0: none)."""
        entry = self._entries().get((name, config.fingerprint()))
        return entry.users if entry is not None else 0


#: The process's registry, used by :class:`~airflow_provider_coverbase.hooks.coverbase.CoverbaseHook`.
shared_clients = SharedClients()
