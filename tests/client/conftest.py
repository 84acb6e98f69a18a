"""Fixtures that run every client scenario against both the sync and the async client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from airflow_provider_coverbase.client import RetryPolicy
from tests.dual_client import DualClient
from tests.fake_api import API_KEY, FakeCoverbaseAPI

BASE_URL = "https://api.coverbase.test"


class Api(DualClient):
    """A sync or async client talking to a ``FakeCoverbaseAPI`` through ``httpx.MockTransport``."""

    def __init__(self, kind: str, fake: FakeCoverbaseAPI, **client_kwargs: Any) -> None:
        self.fake = fake
        kwargs: dict[str, Any] = {
            "base_url": BASE_URL,
            "retry": RetryPolicy(max_attempts=4, initial_delay=0.5, max_delay=4.0, jitter=0.0),
            "rng": lambda: 0.0,
            "transport": httpx.MockTransport(fake),
        }
        kwargs.update(client_kwargs)
        super().__init__(kind, kwargs.pop("api_key", API_KEY), **kwargs)


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
