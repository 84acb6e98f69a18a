"""``CoverbaseHook``: an Airflow connection turned into a Coverbase client. A thin adapter.

The connection's fields: **host** (shown as "Base URL"; ``port``, if set, is added), **password**
(shown as "API key": the ``ak_...`` key, sent only in the ``Authorization`` header) and the extras
(each one a form field of its own). What each means, its default and its checks are one model,
:class:`airflow_provider_coverbase.connection.ConnectionExtras`, from which the form and the README's
table are generated; an unknown extra is an error, so a typo cannot pass silently. Turning them
into client settings (checked and memoised) is
:func:`airflow_provider_coverbase.client._connection.settings_from_connection`; the hook looks the
connection up and makes the API calls.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import httpx
from airflow.sdk import BaseHook

from airflow_provider_coverbase.client import (
    AsyncCoverbaseClient,
    CoverbaseClient,
    shared_clients,
)
from airflow_provider_coverbase.client._connection import CoverbaseConnectionSettings, settings_from_connection
from airflow_provider_coverbase.connection import CONN_TYPE, WebhookSettings, webhook_settings_from_connection
from airflow_provider_coverbase.exceptions import CoverbaseError

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = [
    "CoverbaseConnectionSettings",
    "CoverbaseHook",
    "WebhookSettings",
    "settings_from_connection",
    "webhook_settings_from_connection",
]


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _on_client(method: Callable[Concatenate[CoverbaseClient, _P], _R]) -> Callable[Concatenate[CoverbaseHook, _P], _R]:
    """A hook method that calls the sync client's ``method`` on the hook's client.

    Its signature and docstring are the client's, written once there: the hook cannot drift from it.
    """

    @functools.wraps(method)
    def on_client(hook: CoverbaseHook, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return method(hook.get_client(), *args, **kwargs)

    return on_client


def _on_async_client(
    method: Callable[Concatenate[AsyncCoverbaseClient, _P], Awaitable[_R]],
) -> Callable[Concatenate[CoverbaseHook, _P], Coroutine[Any, Any, _R]]:
    """The async counterpart of :func:`_on_client`: awaits ``method`` on :meth:`CoverbaseHook.get_async_client`."""

    @functools.wraps(method)
    async def on_async_client(hook: CoverbaseHook, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return await method(await hook.get_async_client(), *args, **kwargs)

    return on_async_client


class CoverbaseHook(BaseHook):
    """Talk to the Coverbase Workflows API through an Airflow connection.

    ```python
    hook = CoverbaseHook()  # connection "coverbase_default"
    run = hook.run_workflow("quarterly-privacy-sweep", {"quarter": "2026-Q4"}, idempotency_key="q4")
    print(hook.get_workflow_run(run.workflow_run_id).status)
    ```

    The API methods are the client's (:class:`~airflow_provider_coverbase.client.CoverbaseClient`),
    called on the hook's client: ``run_workflow``, ``run_workflow_definition``, ``get_workflow_run``,
    ``list_workflow_runs``, ``check_auth``, and each with an ``a`` prefix on the async client.
    Sync methods look the connection up synchronously; the ``a``-prefixed ones use
    ``aget_connection``, so the triggerer's event loop never makes a blocking lookup. Each hook keeps
    one sync HTTP client and reuses it across calls. The async methods use the client *shared* by
    every hook of the same connection in the running event loop (one TLS context, kept-alive
    connections and one request budget; see :mod:`airflow_provider_coverbase.client._shared_clients`).
    Call :meth:`close`/:meth:`aclose` when done: ``aclose`` gives the shared client back, and the
    last user's ``aclose`` closes its connections. A user that keeps only the client (a waiting
    trigger) gives it back with :meth:`release_async_client`. Each hook looks its connection up;
    parsing it is memoised by its content (:func:`settings_from_connection`).

    :param coverbase_conn_id: The Airflow connection to use.
    :param transport: Replaces the sync network transport (tests pass ``httpx.MockTransport``).
    :param async_transport: Replaces the async network transport.
    """

    conn_name_attr = "coverbase_conn_id"
    default_conn_name = "coverbase_default"
    conn_type = CONN_TYPE
    hook_name = "Coverbase"

    def __init__(
        self,
        coverbase_conn_id: str = default_conn_name,
        *,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__()
        self.coverbase_conn_id = coverbase_conn_id
        self._transport = transport
        self._async_transport = async_transport
        self._settings: CoverbaseConnectionSettings | None = None
        self._client: CoverbaseClient | None = None
        self._async_client: AsyncCoverbaseClient | None = None
        self._async_shared = False

    def __repr__(self) -> str:
        return f"CoverbaseHook(coverbase_conn_id={self.coverbase_conn_id!r})"

    # ---- connection ----------------------------------------------------------------------

    def _settings_from(self, conn: Connection) -> CoverbaseConnectionSettings:
        return settings_from_connection(
            self.coverbase_conn_id, host=conn.host, port=conn.port, password=conn.password, extra=conn.extra
        )

    def get_settings(self) -> CoverbaseConnectionSettings:
        """The connection's settings (looked up once per hook, synchronously)."""
        if self._settings is None:
            settings = self._settings_from(self.get_connection(self.coverbase_conn_id))
            _mask(settings.client.api_key)
            self._settings = settings
        return self._settings

    async def aget_settings(self) -> CoverbaseConnectionSettings:
        """The connection's settings, looked up without blocking the event loop."""
        if self._settings is None:
            settings = self._settings_from(await self.aget_connection(self.coverbase_conn_id))
            await _amask(settings.client.api_key)
            self._settings = settings
        return self._settings

    def get_client(self) -> CoverbaseClient:
        """The hook's sync client (made on first use, then reused)."""
        if self._client is None:
            self._client = CoverbaseClient(config=self.get_settings().client, transport=self._transport)
        return self._client

    def get_conn(self) -> CoverbaseClient:
        """Airflow's generic accessor: same as :meth:`get_client`."""
        return self.get_client()

    async def get_async_client(self) -> AsyncCoverbaseClient:
        """The async client, bound to the running loop: the connection's shared one, acquired once.

        With an ``async_transport`` (tests) the hook makes a client of its own instead.
        """
        if self._async_client is None:
            settings = await self.aget_settings()
            if self._async_transport is None:
                self._async_client = shared_clients.acquire(self.coverbase_conn_id, settings.client)
                self._async_shared = True
            else:
                self._async_client = AsyncCoverbaseClient(config=settings.client, transport=self._async_transport)
        return self._async_client

    def close(self) -> None:
        """Close the sync client's connections."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Give the shared async client back (the last user closes it), or close the hook's own."""
        client, self._async_client = self._async_client, None
        if client is None:
            return
        if self._async_shared:
            self._async_shared = False
            await shared_clients.release(client)
        else:
            await client.aclose()

    @staticmethod
    async def release_async_client(client: AsyncCoverbaseClient) -> None:
        """Give back a client from :meth:`get_async_client` of a hook that was not kept.

        For a long-lived user such as a waiting trigger, which keeps only the client (thousands of
        triggers need not each hold a hook): the shared client is counted down (the last user's
        release closes it), a client of the hook's own is closed.
        """
        await shared_clients.release(client)

    def dashboard_run_url(self, workflow_run_id: str) -> str:
        """The run's page in the Coverbase dashboard (per the connection's dashboard settings)."""
        return self.get_settings().dashboard_run_url(workflow_run_id)

    async def adashboard_run_url(self, workflow_run_id: str) -> str:
        """Async :meth:`dashboard_run_url`."""
        return (await self.aget_settings()).dashboard_run_url(workflow_run_id)

    # ---- API: the client's methods, on the hook's client ---------------------------------

    run_workflow = _on_client(CoverbaseClient.run_workflow)
    run_workflow_definition = _on_client(CoverbaseClient.run_workflow_definition)
    get_workflow_run = _on_client(CoverbaseClient.get_workflow_run)
    list_workflow_runs = _on_client(CoverbaseClient.list_workflow_runs)
    check_auth = _on_client(CoverbaseClient.check_auth)

    arun_workflow = _on_async_client(AsyncCoverbaseClient.run_workflow)
    arun_workflow_definition = _on_async_client(AsyncCoverbaseClient.run_workflow_definition)
    aget_workflow_run = _on_async_client(AsyncCoverbaseClient.get_workflow_run)
    alist_workflow_runs = _on_async_client(AsyncCoverbaseClient.list_workflow_runs)
    acheck_auth = _on_async_client(AsyncCoverbaseClient.check_auth)

    # ---- Airflow UI ----------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Check the key against ``GET /v1/utils/authtest``; the message says what to fix."""
        try:
            message = self.check_auth()
        except CoverbaseError as exc:
            return False, str(exc)
        finally:
            self.close()
        return True, f"Connected to {self.get_settings().client.base_url}: {message}"


#: Fingerprints of the keys this process has registered with the secret masker. Thousands of triggers
#: of one connection register the key once, not once each (in the triggerer each registration is a
#: message to the supervisor).
_masked: set[str] = set()


def _fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _mask(secret: str) -> None:
    from airflow.sdk.log import mask_secret

    mask_secret(secret)
    _masked.add(_fingerprint(secret))


async def _amask(secret: str) -> None:
    fingerprint = _fingerprint(secret)
    if fingerprint in _masked:
        return
    try:
        from airflow.sdk.log import amask_secret
    except ImportError:  # Airflow 3.2: only the sync call exists
        _mask(secret)
        return
    await amask_secret(secret)
    _masked.add(fingerprint)
