"""``CoverbaseHook``: an Airflow connection turned into a Coverbase client. A thin adapter.

The connection's fields map to the client like this:

- **host** (shown as "Base URL"): ``https://api.coverbase.app`` when empty. A host without a scheme
  gets ``https://``, or ``http://`` when it is loopback (the emulator). **port**, if set, is added.
- **password** (shown as "API key"): the ``ak_...`` key, sent only in the ``Authorization`` header.
- **extra** (each one a form field of its own): ``timeout`` and ``connect_timeout`` (seconds),
  ``max_retries``, ``retry_initial_delay`` and ``retry_max_delay`` (backoff seconds),
  ``dashboard_url`` and ``dashboard_run_path`` (where the "Coverbase workflow run" link points),
  ``allow_insecure_http``, ``max_requests_per_second`` (the request budget every user of the
  connection in one process shares); ``webhook_secret`` and ``webhook_timestamp_tolerance`` for the
  webhook receiver (see :func:`webhook_settings_from_connection`). An unknown extra is an error, so a
  typo cannot pass silently.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Unpack
from urllib.parse import quote, urlsplit

import httpx
from airflow.sdk import BaseHook
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from airflow_provider_coverbase.client import (
    AsyncCoverbaseClient,
    ClientConfig,
    CoverbaseClient,
    RetryPolicy,
    RunListFilters,
    shared_clients,
)
from airflow_provider_coverbase.defaults import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DASHBOARD_RUN_PATH,
    DEFAULT_DASHBOARD_URL,
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_INITIAL_DELAY,
    DEFAULT_RETRY_MAX_DELAY,
    DEFAULT_TIMEOUT,
    MAX_WEBHOOK_TIMESTAMP_TOLERANCE,
    MIN_WEBHOOK_SECRET_LENGTH,
)
from airflow_provider_coverbase.exceptions import CoverbaseConfigError, CoverbaseError
from airflow_provider_coverbase.models import WorkflowRun, WorkflowRunList
from airflow_provider_coverbase.webhooks import DEFAULT_TIMESTAMP_TOLERANCE

if TYPE_CHECKING:
    from airflow.sdk import Connection

__all__ = [
    "CoverbaseConnectionSettings",
    "CoverbaseHook",
    "WebhookSettings",
    "settings_from_connection",
    "webhook_settings_from_connection",
]


class _Extras(BaseModel):
    """The connection's extra fields. ``extra="forbid"``: a typo fails loudly.

    An extra left out takes the client's default (:mod:`airflow_provider_coverbase.defaults`); the
    connection form describes those defaults but does not store them.
    """

    model_config = ConfigDict(extra="forbid")

    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0)
    connect_timeout: float = Field(default=DEFAULT_CONNECT_TIMEOUT, gt=0)
    max_retries: int = Field(default=DEFAULT_MAX_RETRIES, ge=0, le=20)
    retry_initial_delay: float = Field(default=DEFAULT_RETRY_INITIAL_DELAY, ge=0)
    retry_max_delay: float = Field(default=DEFAULT_RETRY_MAX_DELAY, ge=0)
    dashboard_url: str | None = None
    dashboard_run_path: str = DEFAULT_DASHBOARD_RUN_PATH
    allow_insecure_http: bool = False
    max_requests_per_second: float = Field(default=DEFAULT_MAX_REQUESTS_PER_SECOND, ge=0)
    #: The webhook's signing secret (sensitive name: Airflow masks and redacts it like a password).
    webhook_secret: str | None = None
    webhook_timestamp_tolerance: float = Field(
        default=DEFAULT_TIMESTAMP_TOLERANCE, gt=0, le=MAX_WEBHOOK_TIMESTAMP_TOLERANCE
    )

    @field_validator("webhook_secret")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        # The length only, never the value, goes into the message.
        if value and len(value) < MIN_WEBHOOK_SECRET_LENGTH:
            raise ValueError(
                f"must be at least {MIN_WEBHOOK_SECRET_LENGTH} characters (this one has {len(value)}; "
                "Coverbase refuses shorter secrets): use the secret registered with the webhook"
            )
        return value

    @field_validator("dashboard_run_path")
    @classmethod
    def _has_placeholder(cls, value: str) -> str:
        if "{workflow_run_id}" not in value:
            raise ValueError("must contain '{workflow_run_id}', e.g. /workflows/runs/{workflow_run_id}")
        return value


@dataclass(frozen=True, slots=True)
class CoverbaseConnectionSettings:
    """What a Coverbase connection means, parsed and checked once."""

    client: ClientConfig
    dashboard_url: str
    dashboard_run_path: str

    def dashboard_run_url(self, workflow_run_id: str) -> str:
        """The page of a run in the Coverbase dashboard."""
        path = self.dashboard_run_path.format(workflow_run_id=quote(workflow_run_id, safe=""))
        return f"{self.dashboard_url.rstrip('/')}/{path.lstrip('/')}"


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """What the webhook receiver needs from a connection. The secret is kept out of ``repr``."""

    secret: str | None = field(repr=False)
    timestamp_tolerance: float = DEFAULT_TIMESTAMP_TOLERANCE


def _parse_extra(extra: str | Mapping[str, Any] | None, conn_id: str) -> dict[str, Any]:
    if not extra:
        return {}
    if isinstance(extra, str):
        try:
            loaded = json.loads(extra)
        except json.JSONDecodeError as exc:
            raise CoverbaseConfigError(f"the extra of connection '{conn_id}' is not valid JSON ({exc.msg})") from None
    else:
        loaded = dict(extra)
    if not isinstance(loaded, dict):
        raise CoverbaseConfigError(f"the extra of connection '{conn_id}' must be a JSON object")
    # Older Airflow forms stored custom fields as extra__<conn_type>__<field>.
    prefix = f"extra__{CoverbaseHook.conn_type}__"
    return {k.removeprefix(prefix): v for k, v in loaded.items() if v is not None and v != ""}


def _explain(exc: ValidationError) -> str:
    """One line per problem; an unknown extra names the close match and the valid extras."""
    valid = sorted(_Extras.model_fields)
    problems = []
    unknown = False
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "extra"
        if err["type"] == "extra_forbidden":
            unknown = True
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"{name}: unknown extra{hint}")
        else:
            problems.append(f"{name}: {err['msg']}")
    text = "; ".join(problems)
    return f"{text}. Valid extras: {', '.join(valid)}" if unknown else text


def _extras(extra: str | Mapping[str, Any] | None, conn_id: str) -> _Extras:
    try:
        return _Extras.model_validate(_parse_extra(extra, conn_id))
    except ValidationError as exc:
        raise CoverbaseConfigError(f"connection '{conn_id}' has invalid extras: {_explain(exc)}") from None


def webhook_settings_from_connection(conn_id: str, extra: str | Mapping[str, Any] | None) -> WebhookSettings:
    """The webhook secret and timestamp tolerance of a connection (no API key needed for these)."""
    extras = _extras(extra, conn_id)
    return WebhookSettings(secret=extras.webhook_secret or None, timestamp_tolerance=extras.webhook_timestamp_tolerance)


#: Connections whose parsed settings are remembered (see :func:`settings_from_connection`).
SETTINGS_MEMO_SIZE = 128


def settings_from_connection(
    conn_id: str,
    *,
    host: str | None,
    port: int | None,
    password: str | None,
    extra: str | Mapping[str, Any] | None,
) -> CoverbaseConnectionSettings:
    """Turn a connection's fields into checked settings, or raise :class:`CoverbaseConfigError`.

    Memoised by the fields' content (the last :data:`SETTINGS_MEMO_SIZE` connections; ``extra`` as
    stored, a JSON string): a triggerer that starts thousands of triggers of one connection parses
    and validates it once, and they all share one :class:`CoverbaseConnectionSettings`, hence one
    :class:`ClientConfig` whose fingerprint is computed once. The connection itself is still looked
    up by every user; only the parsing is cached, so a changed field (a rotated key, another extra)
    is another entry, parsed anew, and takes effect for new users at once. A connection that fails
    to parse is not remembered: it raises every time.
    """
    if extra is None or isinstance(extra, str):
        return _memoised_settings(conn_id, host, port, password, extra)
    return _parse_settings(conn_id, host, port, password, extra)


@functools.lru_cache(maxsize=SETTINGS_MEMO_SIZE)
def _memoised_settings(
    conn_id: str, host: str | None, port: int | None, password: str | None, extra: str | None
) -> CoverbaseConnectionSettings:
    return _parse_settings(conn_id, host, port, password, extra)


def _parse_settings(
    conn_id: str,
    host: str | None,
    port: int | None,
    password: str | None,
    extra: str | Mapping[str, Any] | None,
) -> CoverbaseConnectionSettings:
    if not password:
        raise CoverbaseConfigError(
            f"connection '{conn_id}' has no API key: put the Coverbase 'ak_...' key in its password field"
        )
    extras = _extras(extra, conn_id)
    base_url = (host or "").strip() or DEFAULT_BASE_URL
    if port:
        parts = urlsplit(base_url if "://" in base_url else f"//{base_url}")
        if parts.port is None:
            base_url = base_url.rstrip("/")
            if parts.path not in ("", "/"):
                raise CoverbaseConfigError(
                    f"connection '{conn_id}': put the port inside the host URL when it has a path"
                )
            base_url = f"{base_url}:{port}"
    try:
        client = ClientConfig(
            api_key=password,
            base_url=base_url,
            timeout=extras.timeout,
            connect_timeout=extras.connect_timeout,
            retry=RetryPolicy.from_max_retries(
                extras.max_retries, initial_delay=extras.retry_initial_delay, max_delay=extras.retry_max_delay
            ),
            allow_insecure_http=extras.allow_insecure_http,
            max_requests_per_second=extras.max_requests_per_second,
        )
    except CoverbaseConfigError as exc:
        raise CoverbaseConfigError(f"connection '{conn_id}': {exc.message}") from None
    return CoverbaseConnectionSettings(
        client=client,
        dashboard_url=(extras.dashboard_url or DEFAULT_DASHBOARD_URL).rstrip("/"),
        dashboard_run_path=extras.dashboard_run_path,
    )


class CoverbaseHook(BaseHook):
    """Talk to the Coverbase Workflows API through an Airflow connection.

    ```python
    hook = CoverbaseHook()  # connection "coverbase_default"
    run = hook.run_workflow("quarterly-privacy-sweep", {"quarter": "2026-Q4"}, idempotency_key="q4")
    print(hook.get_workflow_run(run.workflow_run_id).status)
    ```

    Sync methods look the connection up synchronously; the ``a``-prefixed ones use
    ``aget_connection``, so the triggerer's event loop never makes a blocking lookup. Each hook keeps
    one sync HTTP client and reuses it across calls. The async methods use the client *shared* by
    every hook of the same connection in the running event loop (one TLS context, kept-alive
    connections and one request budget; see :mod:`airflow_provider_coverbase.client._shared`).
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
    conn_type = "coverbase"
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

    # ---- API, sync -----------------------------------------------------------------------

    def run_workflow(
        self,
        workflow_name: str,
        input: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> WorkflowRun:
        """Start the workflow ``workflow_name``; see :meth:`CoverbaseClient.run_workflow`."""
        return self.get_client().run_workflow(workflow_name, input, idempotency_key=idempotency_key)

    def run_workflow_definition(
        self,
        workflow_definition_id: str,
        input: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> WorkflowRun:
        """Start a workflow by definition id (legacy contract only)."""
        return self.get_client().run_workflow_definition(workflow_definition_id, input, idempotency_key=idempotency_key)

    def get_workflow_run(self, workflow_run_id: str) -> WorkflowRun:
        """Read one run."""
        return self.get_client().get_workflow_run(workflow_run_id)

    def list_workflow_runs(self, **filters: Unpack[RunListFilters]) -> WorkflowRunList:
        """One page of runs, newest first (current API); see :class:`RunListFilters`."""
        return self.get_client().list_workflow_runs(**filters)

    def check_auth(self) -> str:
        """Check the API key."""
        return self.get_client().check_auth()

    # ---- API, async ----------------------------------------------------------------------

    async def arun_workflow(
        self,
        workflow_name: str,
        input: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> WorkflowRun:
        """Async :meth:`run_workflow`."""
        client = await self.get_async_client()
        return await client.run_workflow(workflow_name, input, idempotency_key=idempotency_key)

    async def arun_workflow_definition(
        self,
        workflow_definition_id: str,
        input: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> WorkflowRun:
        """Async :meth:`run_workflow_definition`."""
        client = await self.get_async_client()
        return await client.run_workflow_definition(workflow_definition_id, input, idempotency_key=idempotency_key)

    async def aget_workflow_run(self, workflow_run_id: str) -> WorkflowRun:
        """Async :meth:`get_workflow_run`."""
        client = await self.get_async_client()
        return await client.get_workflow_run(workflow_run_id)

    async def alist_workflow_runs(self, **filters: Unpack[RunListFilters]) -> WorkflowRunList:
        """Async :meth:`list_workflow_runs`."""
        client = await self.get_async_client()
        return await client.list_workflow_runs(**filters)

    async def acheck_auth(self) -> str:
        """Async :meth:`check_auth`."""
        client = await self.get_async_client()
        return await client.check_auth()

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
