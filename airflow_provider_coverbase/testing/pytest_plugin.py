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

For ``dag.test()`` of your own DAGs (opt-in, see below):

- ``coverbase_airflow``: everything ``dag.test()`` needs. The session's temporary ``AIRFLOW_HOME``
  with a metadata DB migrated once per session, your DAGs folder, and the legacy emulator with
  ``AIRFLOW_CONN_COVERBASE_DEFAULT`` pointing at it. ``coverbase_airflow.get_dag(dag_id)`` loads a DAG
  from the DAGs folder; ``coverbase_airflow.emulator`` is the emulator.
- ``coverbase_airflow_db``: the session part alone (home, DAGs folder, migrated DB), no emulator.

Why opt-in, and how: Airflow reads ``AIRFLOW_HOME`` and its settings once, when it is first imported,
and test modules import it while they are collected, long before any fixture runs. So the temporary
home is set up by a hook that runs before any conftest or test module is imported
(``pytest_load_initial_conftests``), but only for a project that asks for it by naming its DAGs
folder: the ``coverbase_dags_folder`` ini option (relative to the ini file) or the
``--coverbase-dags-folder`` command-line option. Doing it for every session would move every other
project's tests away from the Airflow home they expect, just because this provider is installed.
The hook sets ``AIRFLOW_HOME`` (a new temporary directory), ``AIRFLOW__CORE__DAGS_FOLDER``,
``AIRFLOW__CORE__LOAD_EXAMPLES=False`` and a SQLite ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` inside the
temporary home (so the DB reset can never reach a database configured in your environment).

Loaded by every pytest session where the provider is installed, so it imports nothing heavy until a
fixture is used (a test checks this in a fresh interpreter); ``-p no:coverbase`` disables it. Airflow
and the emulator are imported inside the fixtures only. No client imports.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_provider_coverbase.testing.config import Dialect, EmulatorConfig
    from airflow_provider_coverbase.testing.server import CoverbaseEmulator

#: ini option and command-line option that opt a project in to the temporary Airflow home.
DAGS_FOLDER_INI = "coverbase_dags_folder"
DAGS_FOLDER_OPTION = "--coverbase-dags-folder"
#: Set by the plugin to the temporary home it made, so the fixtures can tell it was made in time.
HOME_MARKER = "COVERBASE_PYTEST_AIRFLOW_HOME"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        DAGS_FOLDER_INI,
        "Your DAGs folder (relative to the ini file). Setting it gives the session a temporary AIRFLOW_HOME "
        "for dag.test() (coverbase_airflow fixture).",
        default=None,
    )
    parser.getgroup("coverbase").addoption(
        DAGS_FOLDER_OPTION,
        default=None,
        help="Your DAGs folder; gives the session a temporary AIRFLOW_HOME for dag.test() (overrides the ini).",
    )


def _requested_dags_folder(config: pytest.Config) -> Path | None:
    """The DAGs folder the project named, as an absolute path, or None when it did not opt in."""
    option = getattr(config.known_args_namespace, "coverbase_dags_folder", None)
    if option:
        return (config.invocation_params.dir / str(option)).resolve()
    value = config.getini(DAGS_FOLDER_INI)
    if not value:
        return None
    base = config.inipath.parent if config.inipath is not None else config.rootpath
    return (base / str(value)).resolve()


def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Before any conftest or test module imports Airflow: the temporary home, if the project opted in."""
    dags_folder = _requested_dags_folder(early_config)
    if dags_folder is None:
        return
    if not dags_folder.is_dir():
        raise pytest.UsageError(f"{DAGS_FOLDER_INI}: {dags_folder} is not a directory")
    if "airflow" in sys.modules:
        raise pytest.UsageError(
            "airflow was imported before the coverbase plugin could set a temporary AIRFLOW_HOME "
            "(by another plugin?); Airflow reads its settings only once"
        )
    home = Path(tempfile.mkdtemp(prefix="coverbase-airflow-home-"))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            HOME_MARKER: str(home),
        }
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    home = os.environ.get(HOME_MARKER)
    if home and _requested_dags_folder(config) is not None:
        shutil.rmtree(home, ignore_errors=True)


@dataclass(frozen=True)
class AirflowTestHome:
    """The session's temporary Airflow home, with a migrated metadata DB."""

    home: Path
    dags_folder: Path

    def get_dag(self, dag_id: str) -> Any:
        """The DAG ``dag_id`` from the DAGs folder (``dag.test()`` needs the DAG to live there).

        Fails with the import errors if a DAG file does not import.
        """
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(str(self.dags_folder))
        if bag.import_errors:
            problems = "; ".join(
                f"{path}: {error.strip().splitlines()[-1]}" for path, error in bag.import_errors.items()
            )
            raise pytest.fail.Exception(f"DAG files in {self.dags_folder} failed to import: {problems}")
        if dag_id not in bag.dags:
            raise pytest.fail.Exception(f"no DAG {dag_id!r} in {self.dags_folder} (found: {sorted(bag.dags)})")
        return bag.dags[dag_id]


@dataclass(frozen=True)
class CoverbaseAirflow(AirflowTestHome):
    """:class:`AirflowTestHome` plus the emulator that ``coverbase_default`` points at for this test."""

    emulator: CoverbaseEmulator


@pytest.fixture(scope="session")
def coverbase_airflow_db() -> AirflowTestHome:
    """The session's temporary Airflow home with its metadata DB migrated (once per session)."""
    home = os.environ.get(HOME_MARKER)
    if not home:
        raise pytest.UsageError(
            f"coverbase_airflow needs a temporary AIRFLOW_HOME made before Airflow is imported: set "
            f"`{DAGS_FOLDER_INI} = <your DAGs folder>` in your pytest configuration (or pass "
            f"{DAGS_FOLDER_OPTION})"
        )
    from airflow.configuration import AIRFLOW_HOME, conf
    from airflow.utils import db

    expected_db = f"sqlite:///{Path(home) / 'airflow.db'}"
    if (
        os.path.realpath(AIRFLOW_HOME) != os.path.realpath(home)
        or conf.get("database", "sql_alchemy_conn") != expected_db
    ):
        # Never reset a database the plugin did not create.
        raise pytest.UsageError(
            f"Airflow was configured before the plugin set AIRFLOW_HOME={home}; not resetting its DB"
        )
    db.resetdb()
    return AirflowTestHome(Path(home), Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]))


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


@pytest.fixture
def coverbase_airflow(coverbase_airflow_db: AirflowTestHome, coverbase_conn_env: CoverbaseEmulator) -> CoverbaseAirflow:
    """Everything ``dag.test()`` of your DAG needs: Airflow home, migrated DB, DAGs folder, emulator connection."""
    return CoverbaseAirflow(coverbase_airflow_db.home, coverbase_airflow_db.dags_folder, coverbase_conn_env)
