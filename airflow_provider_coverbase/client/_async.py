"""The asynchronous client: sends what :class:`ClientCore` builds, nothing else. No Airflow imports."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

import httpx
import tenacity

from airflow_provider_coverbase.client._config import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    ClientConfig,
    RetryPolicy,
)
from airflow_provider_coverbase.client._core import Call, ClientCore, RunListFilters
from airflow_provider_coverbase.models import WorkflowRun, WorkflowRunList

__all__ = ["AsyncCoverbaseClient"]

T = TypeVar("T")


class AsyncCoverbaseClient:
    """Asynchronous client for the Coverbase Workflows API.

    ```python
    async with AsyncCoverbaseClient(api_key) as client:
        run = await client.run_workflow("quarterly-privacy-sweep", {"quarter": "2026-Q4"})
        run = await client.get_workflow_run(run.workflow_run_id)
    ```

    Every run-starting call sends an ``Idempotency-Key`` (yours, or one made once per call and
    reused by each of its retries), so a retry never starts a second run. Connection errors,
    timeouts, 429 and 5xx are retried per the :class:`RetryPolicy`; other errors raise at once.
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
        config: ClientConfig | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] | None = None,
    ) -> None:
        """Create a client from an API key and options, or from a ready :class:`ClientConfig`.

        ``transport`` replaces the network (tests pass ``httpx.MockTransport``); ``sleep`` and
        ``rng`` replace the clock and the jitter source of the retry loop.
        """
        if config is None:
            config = ClientConfig(
                api_key=api_key or "",
                base_url=base_url,
                timeout=timeout,
                connect_timeout=connect_timeout,
                retry=retry or RetryPolicy(),
                allow_insecure_http=allow_insecure_http,
            )
        self._core = ClientCore(config, rng=rng)
        self._sleep = sleep
        self._http = httpx.AsyncClient(transport=transport, follow_redirects=False)

    @property
    def config(self) -> ClientConfig:
        return self._core.config

    def __repr__(self) -> str:
        return f"AsyncCoverbaseClient(base_url={self.config.base_url!r})"

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _execute(self, call: Call[T]) -> T:
        result: T | Call[T] = call
        while isinstance(result, Call):  # a 409 replay may name a run that one more GET reads
            call = result
            async for attempt in tenacity.AsyncRetrying(**self._core.retry_kwargs(self._sleep)):
                with attempt:
                    outcome: httpx.Response | httpx.TransportError
                    try:
                        outcome = await self._http.send(call.request)
                    except httpx.TransportError as exc:
                        outcome = exc
                    result = self._core.finish(call, outcome, attempt.retry_state.attempt_number)
        return result

    async def run_workflow(
        self,
        workflow_name: str,
        input: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> WorkflowRun:
        """Start the workflow called ``workflow_name`` with ``input``; return the new run."""
        return await self._execute(self._core.run_workflow(workflow_name, input, idempotency_key))

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
