"""SharedClients: one async client per (event loop, connection, config), reference-counted."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from airflow_provider_coverbase.client import AsyncCoverbaseClient, ClientConfig, SharedClients
from airflow_provider_coverbase.client._transport import AiohttpTransport
from tests.fake_api import API_KEY, FakeCoverbaseAPI

BASE_URL = "https://api.coverbase.test"


@pytest.fixture
def fake() -> FakeCoverbaseAPI:
    return FakeCoverbaseAPI(dialect="current")


@pytest.fixture
def registry(fake: FakeCoverbaseAPI) -> SharedClients:
    return SharedClients(transport_factory=lambda: httpx.MockTransport(fake))


def config(key: str = API_KEY, **kwargs: float) -> ClientConfig:
    return ClientConfig(api_key=key, base_url=BASE_URL, **kwargs)  # type: ignore[arg-type]


def is_closed(client: AsyncCoverbaseClient) -> bool:
    return client.is_closed


async def test_users_share_one_client_and_the_last_one_closes_it(registry: SharedClients) -> None:
    first = registry.acquire("coverbase_default", config())
    second = registry.acquire("coverbase_default", config())
    assert first is second
    assert registry.users("coverbase_default", config()) == 2
    assert await first.check_auth()
    await registry.release(first)
    assert not is_closed(second)
    assert await second.check_auth()  # still usable by the remaining user
    await registry.release(second)
    assert is_closed(second)
    assert registry.users("coverbase_default", config()) == 0
    third = registry.acquire("coverbase_default", config())
    assert third is not first  # made anew after the last user left
    await registry.release(third)


async def test_a_changed_connection_gets_a_new_client_for_new_users(registry: SharedClients) -> None:
    old = registry.acquire("coverbase_default", config())
    rotated = registry.acquire("coverbase_default", config(key="ak_rotated_key_2"))
    other_budget = registry.acquire("coverbase_default", config(max_requests_per_second=5))
    other_conn = registry.acquire("coverbase_other", config())
    assert len({id(old), id(rotated), id(other_budget), id(other_conn)}) == 4
    assert rotated.config.api_key == "ak_rotated_key_2"
    await registry.release(rotated)
    assert is_closed(rotated)
    assert not is_closed(old)  # the old key's users finish undisturbed
    for client in (old, other_budget, other_conn):
        await registry.release(client)


def test_a_new_event_loop_gets_its_own_client(registry: SharedClients) -> None:
    async def use() -> tuple[AsyncCoverbaseClient, bool]:
        client = registry.acquire("coverbase_default", config())
        await client.check_auth()
        return client, is_closed(client)

    first, first_closed = asyncio.run(use())
    second, _ = asyncio.run(use())
    assert first is not second
    assert not first_closed


async def test_the_key_never_shows(registry: SharedClients) -> None:
    cfg = config(key="ak_live_supersecret_123")
    client = registry.acquire("coverbase_default", cfg)
    assert "supersecret" not in cfg.fingerprint()
    assert len(cfg.fingerprint()) == 16
    for text in (repr(registry), repr(client), repr(cfg), repr(client.budget)):
        assert "supersecret" not in text
    await registry.release(client)


async def test_the_transport_needs_a_connection() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AiohttpTransport(max_connections=0)
