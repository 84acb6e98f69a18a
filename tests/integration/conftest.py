"""Fixtures for the loopback integration tests: the real clients against the emulator over HTTP.

Every scenario runs against the sync ``CoverbaseClient`` and the async ``AsyncCoverbaseClient``
(``kind``), and most against both API dialects (``dialect``). The emulators come from the
provider's pytest plugin (one shared server per dialect, ``reset()`` between tests); here their
clock is frozen (speed 0) so runs only move through ``emulator.advance()``, which keeps every test
deterministic. ``reset()`` restores the configured speed afterwards.

Retries never really sleep: the clients get a recording ``sleep`` (optionally moving the emulated
clock by the same amount, so a server's ``Retry-After`` really elapses) and ``rng=lambda: 0.0``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from airflow_provider_coverbase.client import RetryPolicy
from airflow_provider_coverbase.testing import CoverbaseEmulator
from tests.dual_client import DualClient

#: Retry policy of every client here unless a test overrides it: 4 attempts, 0.5/1/2 s backoff.
RETRY = RetryPolicy(max_attempts=4, initial_delay=0.5, max_delay=10.0, jitter=0.0)


class Api(DualClient):
    """A sync or async client talking to the emulator over loopback HTTP."""

    def __init__(
        self,
        kind: str,
        emulator: CoverbaseEmulator,
        *,
        api_key: str | None = None,
        advance_clock_on_sleep: bool = False,
        **client_kwargs: Any,
    ) -> None:
        self.emulator = emulator
        # No request pacing: scenarios send bursts in no fake time; the budget has tests of its own.
        kwargs: dict[str, Any] = {
            "base_url": emulator.base_url,
            "retry": RETRY,
            "rng": lambda: 0.0,
            "max_requests_per_second": 0,
        }
        kwargs.update(client_kwargs)
        super().__init__(
            kind,
            emulator.api_key if api_key is None else api_key,
            on_sleep=emulator.advance if advance_clock_on_sleep else None,
            **kwargs,
        )


MakeApi = Callable[..., Api]


def _frozen(emulator: CoverbaseEmulator) -> CoverbaseEmulator:
    emulator.set_speed(0)
    return emulator


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["legacy", "current"])
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def emulator(dialect: str, request: pytest.FixtureRequest) -> CoverbaseEmulator:
    """The shared emulator of ``dialect``, reset, with its clock frozen."""
    name = "coverbase_emulator" if dialect == "legacy" else "coverbase_emulator_current"
    emulator: CoverbaseEmulator = request.getfixturevalue(name)
    return _frozen(emulator)


@pytest.fixture
def legacy_emulator(coverbase_emulator: CoverbaseEmulator) -> CoverbaseEmulator:
    return _frozen(coverbase_emulator)


@pytest.fixture
def current_emulator(coverbase_emulator_current: CoverbaseEmulator) -> CoverbaseEmulator:
    return _frozen(coverbase_emulator_current)


@pytest.fixture
async def make_api(kind: str) -> AsyncIterator[MakeApi]:
    """``make_api(emulator, api_key=..., advance_clock_on_sleep=..., retry=..., timeout=...)``."""
    made: list[Api] = []

    def factory(emulator: CoverbaseEmulator, **kwargs: Any) -> Api:
        api = Api(kind, emulator, **kwargs)
        made.append(api)
        return api

    yield factory
    for api in made:
        await api.close()


@pytest.fixture
def api(make_api: MakeApi, emulator: CoverbaseEmulator) -> Api:
    return make_api(emulator)


@pytest.fixture
def legacy_api(make_api: MakeApi, legacy_emulator: CoverbaseEmulator) -> Api:
    return make_api(legacy_emulator)


@pytest.fixture
def current_api(make_api: MakeApi, current_emulator: CoverbaseEmulator) -> Api:
    return make_api(current_emulator)
