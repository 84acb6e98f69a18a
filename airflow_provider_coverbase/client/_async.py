# Generated from _sync.py by scripts/unasync.py: edit _sync.py, then run the script.
"""The asynchronous client: sends what :class:`ClientCore` builds, nothing else. No Airflow imports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

import httpx

from airflow_provider_coverbase.client._budget import RequestBudget
from airflow_provider_coverbase.client._config import ClientConfig, RetryPolicy
from airflow_provider_coverbase.client._core import Call, ClientCore, RunListFilters
from airflow_provider_coverbase.client._transport import AiohttpTransport
from airflow_provider_coverbase.defaults import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_KEEPALIVE_EXPIRY,
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    DEFAULT_TIMEOUT,
)
from airflow_provider_coverbase.exceptions import CoverbaseError, NotFoundError
from airflow_provider_coverbase.models import WorkflowRun, WorkflowRunList

__all__ = ["AsyncCoverbaseClient"]

T = TypeVar("T")


class AsyncCoverbaseClient:
    """Asynchronous client for the Coverbase Workflows API::

        async with AsyncCoverbaseClient(api_key) as client:
            run = await client.run_workflow("quarterly-privacy-sweep", {"quarter": "2026-Q4"})
            run = await client.get_workflow_run(run.workflow_run_id)

    Every run-starting call sends an ``Idempotency-Key`` (yours, or one made once per call and
    reused by each of its retries), so a retry never starts a second run. Connection errors,
    timeouts, 429 and 5xx are retried per the :class:`RetryPolicy`; other errors raise at once.
    Requests are paced by a :class:`RequestBudget` (``max_requests_per_second``; a 429 pauses every
    request that shares the budget), and idle connections are kept for reuse between polls.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        retry: RetryPolicy | None = None,
        allow_insecure_http: bool = False,
        max_requests_per_second: float = DEFAULT_MAX_REQUESTS_PER_SECOND,
        config: ClientConfig | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        budget: RequestBudget | None = None,
        max_connections: int = 10,
        keepalive_expiry: float = DEFAULT_KEEPALIVE_EXPIRY,
    ) -> None:
        """Create a client from an API key and options, or from a ready :class:`ClientConfig`.

        ``transport`` replaces the network (tests pass ``httpx.MockTransport``, the shared pool a
        transport of its own); ``sleep``, ``clock`` and ``rng`` replace the waiting, the clock of the
        request budget and the jitter source. ``budget`` shares one budget between clients (by
        default each client has its own, from ``max_requests_per_second``). ``max_connections`` and
        ``keepalive_expiry`` size the connection pool of the default transport (ignored with a ``transport``).
        """
        if config is None:
            config = ClientConfig(
                api_key=api_key or "",
                base_url=base_url,
                timeout=timeout,
                connect_timeout=connect_timeout,
                retry=retry or RetryPolicy(),
                allow_insecure_http=allow_insecure_http,
                max_requests_per_second=max_requests_per_second,
            )
        self._core = ClientCore(config, rng=rng)
        self._sleep = sleep
        self._budget = budget if budget is not None else RequestBudget(config.max_requests_per_second, clock=clock)
        # The transport is called directly (see :meth:`_send`), by default with the proxy the environment
        # names for the base URL; tests pass an ``httpx.MockTransport``.
        if transport is None:
            transport = AiohttpTransport(max_connections, keepalive_expiry)
        self._transport: httpx.AsyncBaseTransport = transport
        self._closed = False

    @property
    def config(self) -> ClientConfig:
        return self._core.config

    @property
    def budget(self) -> RequestBudget:
        """The request budget this client spends (shared with others when passed in)."""
        return self._budget

    @property
    def is_closed(self) -> bool:
        """Whether the client was closed (a closed client refuses to send)."""
        return self._closed

    def __repr__(self) -> str:
        return f"AsyncCoverbaseClient(base_url={self.config.base_url!r})"

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        self._closed = True
        await self._transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _execute(self, call: Call[T]) -> T:
        """Send ``call`` until it succeeds or :meth:`ClientCore.after_failure` says to stop.

        A 409 replay may name a run without its status: :meth:`ClientCore.finish` then returns the
        GET that reads that run, which is sent next, with attempts of its own.
        """
        attempt = 0
        own_pause_waited = False
        while True:
            attempt += 1
            await self._wait_for_budget(after_pause=not own_pause_waited)
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = await self._send(call.request)
            except httpx.TransportError as exc:
                outcome = exc
            try:
                result = self._core.finish(call, outcome, attempt)
            except CoverbaseError as error:
                retry_in, pause_all = self._core.after_failure(error, attempt)
                self._budget.pause(pause_all)
                if retry_in is None:
                    raise
                await self._sleep(retry_in)
                # A 429's caller has just waited out its own hint: it does not wait the shared pause again.
                own_pause_waited = pause_all > 0
                continue
            if not isinstance(result, Call):
                return result
            call, attempt, own_pause_waited = result, 0, False  # a 409 replay named a run: read it

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` to the transport and read the answer: the part of ``httpx.AsyncClient.send`` we use.

        No ``httpx.Client`` is involved: its ``send`` spends most of a poll's CPU on features this
        client never uses: auth flows (the key is a header of the request), redirects (never followed:
        a 3xx is an answer), the cookie jar, event hooks, per-call timeouts. What it does that matters
        is kept here: the timeout travels in ``request.extensions`` (set once when :class:`ClientCore`
        builds the request), the body is read fully (at most ``MAX_BODY_BYTES`` once decoded) and the
        response closed, ``response.request`` is set, and a transport error (already an
        ``httpx.TransportError``) names its request. Not kept: httpx's
        INFO log line per request.
        """
        if self._closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.RequestError as exc:
            exc.request = request
            raise
        response.request = request
        try:
            await response.aread()  # the transport capped the body
            return response
        finally:
            await response.aclose()

    async def _wait_for_budget(self, *, after_pause: bool) -> None:
        wait, generation = self._budget.reserve(after_pause=after_pause)
        while wait > 0:
            await self._sleep(wait)
            wait, generation = self._budget.recheck(generation)

    async def send(self, call: Call[T]) -> T:
        """Send a call prepared once (e.g. :meth:`prepare_get_workflow_run`): retries and budget included."""
        return await self._execute(call)

    def prepare_get_workflow_run(self, workflow_run_id: str) -> Call[WorkflowRun]:
        """The request of :meth:`get_workflow_run`, built once to be sent many times with :meth:`send`.

        A poller reads the same run again and again; building its request once saves the URL
        encoding, header and request construction on every poll.
        """
        return self._core.get_workflow_run(workflow_run_id)

    async def run_workflow(
        self,
        workflow_name: str,
        input: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> WorkflowRun:
        """Start the workflow called ``workflow_name`` with ``input``; return the new run.

        An unknown name's error (``404 workflow_not_found``) says where names are and offers the
        closest known one, read as :meth:`ClientCore.workflow_name_lookups` says.
        """
        call = self._core.run_workflow(workflow_name, input, idempotency_key)
        try:
            return await self._execute(call)
        except NotFoundError as error:
            if error.code == "workflow_not_found":
                self._core.add_workflow_name_hint(error, workflow_name, await self._known_workflow_names())
            raise

    async def _known_workflow_names(self) -> list[str] | None:
        """Workflow names for a typo's hint: one attempt per lookup, any failure is no answer."""
        for lookup in self._core.workflow_name_lookups():
            await self._wait_for_budget(after_pause=True)
            try:
                response = await self._send(lookup.request)
                names = self._core.finish(lookup, response, 1)
            except (CoverbaseError, httpx.TransportError):
                continue
            if isinstance(names, list) and names:
                return names
        return None

    async def run_workflow_definition(
        self,
        workflow_definition_id: str,
        input: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> WorkflowRun:
        """Start a workflow by its definition id (legacy contract only); return the new run."""
        return await self._execute(self._core.run_workflow_definition(workflow_definition_id, input, idempotency_key))

    async def get_workflow_run(self, workflow_run_id: str) -> WorkflowRun:
        """Read one run: status, checkpoints or steps, output."""
        return await self._execute(self._core.get_workflow_run(workflow_run_id))

    async def list_workflow_runs(self, **filters: Unpack[RunListFilters]) -> WorkflowRunList:
        """One page of runs, newest first (current API); see :class:`RunListFilters`."""
        return await self._execute(self._core.list_workflow_runs(**filters))

    async def check_auth(self) -> str:
        """Check the API key (``GET /v1/utils/authtest``); return the API's message."""
        return await self._execute(self._core.check_auth())
