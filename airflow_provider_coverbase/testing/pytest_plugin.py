"""pytest plugin (entry point ``pytest11``): fixtures that serve the Coverbase emulator.

Fixtures:

- ``coverbase_emulator``: a legacy-dialect ``CoverbaseEmulator`` with fresh state for each test.
- ``coverbase_emulator_current``: the same in the current (V2/V3) dialect.
- ``coverbase_emulator_factory``: ``factory(dialect="legacy", config=None, speed=None, **variants)``
  starts a dedicated emulator (own config) that is stopped after the test. ``variants`` are the
  answer variants of ``EmulatorConfig`` (``conflict_shape``, ``retry_after``, ``sparse_get_bodies``,
  ``legacy_v2_endpoints``); on the shared emulators, ``emulator.set_variants(...)`` lasts until the
  next reset.
- ``coverbase_conn_env``: the legacy emulator, with ``AIRFLOW_CONN_COVERBASE_DEFAULT`` set for the
  test (for ``dag.test()``-style DAG tests).

Webhook test controls are methods of the emulator a fixture returns: ``webhook_events``,
``redeliver(event_id, signature=...)``, ``sign_next_deliveries(...)``, ``hold_deliveries()`` and
``release_deliveries(order)``, next to ``webhook_deliveries``.

The shared emulators are started once per session on free loopback ports and ``reset()`` between
tests. At the default ``FIXTURE_SPEED`` the built-in workflows finish within about 0.2 s.

Loaded by every pytest session where the provider is installed, so it imports nothing heavy until a
fixture is used. No Airflow imports, no client imports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_provider_coverbase.testing.config import Dialect, EmulatorConfig
    from airflow_provider_coverbase.testing.server import CoverbaseEmulator

#: Emulated seconds per real second in the fixtures.
FIXTURE_SPEED = 20.0

EmulatorFactory = Callable[..., "CoverbaseEmulator"]


@pytest.fixture(scope="session")
def _coverbase_shared() -> Iterator[dict[str, CoverbaseEmulator]]:
    """Session cache of started emulators, one per dialect, created on first use."""
    shared: dict[str, CoverbaseEmulator] = {}
    yield shared
    for emulator in shared.values():
        emulator.stop()


def _shared(shared: dict[str, CoverbaseEmulator], dialect: Dialect) -> CoverbaseEmulator:
    from airflow_provider_coverbase.testing.server import CoverbaseEmulator

    emulator = shared.get(dialect)
    if emulator is None:
        emulator = shared[dialect] = CoverbaseEmulator(dialect=dialect, speed=FIXTURE_SPEED).start()
    emulator.reset()
    return emulator


@pytest.fixture
def coverbase_emulator(_coverbase_shared: dict[str, CoverbaseEmulator]) -> Iterator[CoverbaseEmulator]:
    """A legacy-dialect emulator with fresh state (base_url, api_key, conn_uri, controls, requests)."""
    emulator = _shared(_coverbase_shared, "legacy")
    yield emulator
    emulator.reset()


@pytest.fixture
def coverbase_emulator_current(
    _coverbase_shared: dict[str, CoverbaseEmulator],
) -> Iterator[CoverbaseEmulator]:
    """A current-dialect (V2/V3) emulator with fresh state."""
    emulator = _shared(_coverbase_shared, "current")
    yield emulator
    emulator.reset()


@pytest.fixture
def coverbase_emulator_factory() -> Iterator[EmulatorFactory]:
    """Start dedicated emulators: ``factory(dialect="legacy", config=None, speed=None, **variants)``."""
    import dataclasses

    from airflow_provider_coverbase.testing.config import EmulatorConfig
    from airflow_provider_coverbase.testing.server import CoverbaseEmulator

    started: list[CoverbaseEmulator] = []

    def factory(
        dialect: Dialect = "legacy",
        config: EmulatorConfig | None = None,
        speed: float | None = None,
        **variants: Any,
    ) -> CoverbaseEmulator:
        if speed is None and config is None:
            speed = FIXTURE_SPEED
        if variants:
            config = dataclasses.replace(config or EmulatorConfig(), **variants)
        emulator = CoverbaseEmulator(config, dialect, speed=speed).start()
        started.append(emulator)
        return emulator

    yield factory
    for emulator in started:
        emulator.stop()


@pytest.fixture
def coverbase_conn_env(coverbase_emulator: CoverbaseEmulator, monkeypatch: pytest.MonkeyPatch) -> CoverbaseEmulator:
    """The legacy emulator, with ``AIRFLOW_CONN_COVERBASE_DEFAULT`` pointing at it for this test."""
    for name, value in coverbase_emulator.conn_env().items():
        monkeypatch.setenv(name, value)
    return coverbase_emulator
