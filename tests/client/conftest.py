"""Fixtures that run every client scenario against both the sync and the async client."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from airflow_provider_coverbase.client import AsyncCoverbaseClient, CoverbaseClient, RetryPolicy
from tests.fake_api import API_KEY, FakeCoverbaseAPI

BASE_URL = "https://api.coverbase.test"


class Api:
    """One object for both clients: ``await api("run_workflow", ...)`` works for either kind."""

    def __init__(self, kind: str, fake: FakeCoverbaseAPI, **client_kwargs: Any) -> None:
        self.kind = kind
        self.fake = fake
        self.sleeps: list[float] = []
        kwargs: dict[str, Any] = {
            "base_url": BASE_URL,
            "retry": RetryPolicy(max_attempts=4, initial_delay=0.5, max_delay=4.0, jitter=0.0),
            "rng": lambda: 0.0,
            "transport": httpx.MockTransport(fake),
        }
        kwargs.update(client_kwargs)
        api_key = kwargs.pop("api_key", API_KEY)
        if kind == "sync":
            self.client: CoverbaseClient | AsyncCoverbaseClient = CoverbaseClient(
                api_key, sleep=self.sleeps.append, **kwargs
            )
        else:

            async def sleep(seconds: float) -> None:
                self.sleeps.append(seconds)

            self.client = AsyncCoverbaseClient(api_key, sleep=sleep, **kwargs)

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


@pytest.fixture(params=["legacy", "current"])
def fake(request: pytest.FixtureRequest) -> FakeCoverbaseAPI:
    return FakeCoverbaseAPI(dialect=request.param)


@pytest.fixture
def legacy_fake() -> FakeCoverbaseAPI:
    return FakeCoverbaseAPI(dialect="legacy")


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def api(kind: str, fake: FakeCoverbaseAPI) -> AsyncIterator[Api]:
    client = Api(kind, fake)
    yield client
    await client.close()


@pytest.fixture
def make_api(kind: str) -> Any:
    """Build an ``Api`` with other settings: ``make_api(fake, retry=RetryPolicy(...))``."""
    made: list[Api] = []

    def factory(fake: FakeCoverbaseAPI, **kwargs: Any) -> Api:
        client = Api(kind, fake, **kwargs)
        made.append(client)
        return client

    return factory
