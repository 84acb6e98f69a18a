"""Run one test scenario on the sync and the async client alike: ``await api("run_workflow", ...)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from airflow_provider_coverbase.client import AsyncCoverbaseClient, CoverbaseClient


class DualClient:
    """A sync or async client (``kind``) behind one awaitable call, recording every retry wait.

    Retries never really sleep: ``sleeps`` records each wait, and ``on_sleep`` (if given) is told too,
    e.g. to move an emulator's clock by the same amount. The request budget's clock is ``now``, which
    each recorded wait moves forward, so waiting and pacing agree without real time passing. Requests
    are not paced unless the test sets ``max_requests_per_second`` (or a ``budget``): the recorded
    waits are then the retries' own; the budget has tests of its own (``tests/client/test_budget.py``).
    """

    def __init__(
        self, kind: str, api_key: str, *, on_sleep: Callable[[float], object] | None = None, **client_kwargs: Any
    ) -> None:
        self.kind = kind
        #: Every wait the retry loop asked for, in seconds, in order.
        self.sleeps: list[float] = []
        #: The fake clock: advanced by every recorded wait.
        self.now = 0.0
        self._on_sleep = on_sleep
        client_kwargs.setdefault("clock", lambda: self.now)
        client_kwargs.setdefault("max_requests_per_second", 0)
        if kind == "sync":
            self.client: CoverbaseClient | AsyncCoverbaseClient = CoverbaseClient(
                api_key, sleep=self._record, **client_kwargs
            )
        else:

            async def sleep(seconds: float) -> None:
                self._record(seconds)

            self.client = AsyncCoverbaseClient(api_key, sleep=sleep, **client_kwargs)

    def _record(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self._on_sleep is not None:
            self._on_sleep(seconds)

    async def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.client, method)(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def close(self) -> None:
        if isinstance(self.client, AsyncCoverbaseClient):
            await self.client.aclose()
        else:
            self.client.close()
