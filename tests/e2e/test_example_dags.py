"""The example DAGs: they import cleanly, and real ``dag.test()`` runs succeed against the emulator."""

from __future__ import annotations

import importlib.util
import json
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_coverbase.testing import CoverbaseEmulator

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
DAG_FILES = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))

pytestmark = pytest.mark.dagrun


@pytest.fixture(scope="module")
def airflow_db() -> None:
    """A fresh metadata DB in the test session's throwaway AIRFLOW_HOME."""
    from airflow.utils import db

    db.resetdb()


def load_dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import DAGS_FOLDER

    bag = DagBag(str(DAGS_FOLDER))
    assert bag.import_errors == {}
    return bag.dags[dag_id]


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.stem for p in DAG_FILES])
def test_example_dag_imports_without_errors_or_warnings(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow.sdk  # Airflow's own import is not what is tested here

    monkeypatch.syspath_prepend(str(EXAMPLES))  # Airflow puts the DAGs folder on sys.path too
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec.loader.exec_module(module)
    assert [str(w.message) for w in caught] == []
    # One DAG a file, named after it, whether built with ``with DAG(...)`` or ``@dag``.
    assert [d.dag_id for d in vars(module).values() if isinstance(d, airflow.sdk.DAG)] == [path.stem]


def test_dagbag_has_every_example() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(EXAMPLES))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {p.stem for p in DAG_FILES}


def emulator_runs(emulator: CoverbaseEmulator) -> list[dict[str, Any]]:
    import httpx

    listing = httpx.get(f"{emulator.base_url}/_emulator/runs", timeout=5).json()["data"]
    return [run for run in listing if run.get("org_id") == emulator.org_id]


def test_quarterly_sweep_dag(airflow_db: None, coverbase_conn_env: CoverbaseEmulator) -> None:
    from airflow.utils.state import DagRunState

    dag = load_dag("coverbase_quarterly_vendor_sweep")
    dag_run = dag.test(logical_date=datetime(2026, 10, 1, tzinfo=UTC))

    assert dag_run.state == DagRunState.SUCCESS
    (run,) = emulator_runs(coverbase_conn_env)
    assert run["status"] == "completed"
    start, end = dag_run.data_interval_start, dag_run.data_interval_end
    quarter = f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    (post,) = [r for r in coverbase_conn_env.requests if r["method"] == "POST"]
    assert post["body"] == {
        "input": {
            "quarter": quarter,
            "due_date": (end + timedelta(days=30)).date().isoformat(),
            "vendor_filter": {"tags": ["processes_pii"], "tier": 1},
        }
    }
    assert post["headers"]["idempotency-key"] == f"quarterly-privacy-sweep-{quarter}"
    ti = dag_run.get_task_instance("run_quarterly_privacy_sweep")
    assert ti is not None
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag.dag_id, task_ids=ti.task_id)
        rows = session.execute(query).scalars().all()
        values = {row.key: XComModel.deserialize_value(row) for row in rows}
    assert values["workflow_run_id"] == run["workflow_run_id"]
    assert values["return_value"]["status"] == "completed"
    assert values["return_value"]["output"]["vendors_processed"] == 38
    assert values["_link_CoverbaseWorkflowRunLink"].endswith(run["workflow_run_id"])


def test_quarterly_sweep_dag_on_the_current_api(
    airflow_db: None, coverbase_emulator_current: CoverbaseEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.utils.state import DagRunState

    for name, value in coverbase_emulator_current.conn_env().items():
        monkeypatch.setenv(name, value)
    dag = load_dag("coverbase_quarterly_vendor_sweep")
    dag_run = dag.test()
    assert dag_run.state == DagRunState.SUCCESS
    (run,) = emulator_runs(coverbase_emulator_current)
    assert run["status"] == "completed"
    (post,) = [r for r in coverbase_emulator_current.requests if r["method"] == "POST"]
    start = dag_run.data_interval_start or dag_run.run_after
    assert post["body"]["input"]["quarter"] == f"{start.year}-Q{(start.month - 1) // 3 + 1}"


def test_adhoc_campaign_dag_with_params_and_sensor(airflow_db: None, coverbase_conn_env: CoverbaseEmulator) -> None:
    from airflow.utils.state import DagRunState

    dag = load_dag("coverbase_adhoc_campaign")
    dag_run = dag.test(run_conf={"campaign": "SOC 2 refresh", "vendor_ids": ["cbvndr_1", "cbvndr_2"]})
    assert dag_run.state == DagRunState.SUCCESS
    (run,) = emulator_runs(coverbase_conn_env)
    assert run["workflow_name"] == "adhoc-campaign"
    assert run["status"] == "completed"
    (post,) = [r for r in coverbase_conn_env.requests if r["method"] == "POST"]
    assert post["body"] == {"input": {"campaign": "SOC 2 refresh", "vendor_ids": ["cbvndr_1", "cbvndr_2"]}}


def test_tier_fanout_dag_starts_one_run_per_tier(airflow_db: None, coverbase_conn_env: CoverbaseEmulator) -> None:
    from airflow.utils.state import DagRunState

    dag = load_dag("coverbase_vendor_tier_fanout")
    dag_run = dag.test(logical_date=datetime(2026, 4, 1, tzinfo=UTC))
    assert dag_run.state == DagRunState.SUCCESS
    runs = emulator_runs(coverbase_conn_env)
    assert len(runs) == 3
    assert {r["status"] for r in runs} == {"completed"}
    posts = [r for r in coverbase_conn_env.requests if r["method"] == "POST"]
    assert sorted(p["body"]["input"]["vendor_filter"]["tier"] for p in posts) == [1, 2, 3]
    keys = {r["headers"]["idempotency-key"] for r in coverbase_conn_env.requests if r["method"] == "POST"}
    assert len(keys) == 3


def has_task_state_store() -> bool:
    try:
        from airflow.sdk.execution_time.context import TaskStateStoreAccessor  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not has_task_state_store(), reason="the task state store is new in Airflow 3.3")
def test_airflow_retry_after_a_failed_run_reads_the_task_state_store(
    airflow_db: None, coverbase_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real Airflow retry: try 2 finds try 1's failed run in the store and starts the next generation.

    The emulator forgets idempotency keys at once here, so replaying try 1's key could not have found
    its run: two different keys prove try 2 read the record instead.
    """
    from airflow._shared.state import TaskScope
    from airflow.state import get_state_backend
    from airflow.utils.state import DagRunState

    from airflow_provider_coverbase.operators.coverbase import STATE_KEY
    from airflow_provider_coverbase.testing import EmulatorConfig

    emulator = coverbase_emulator_factory(config=EmulatorConfig(speed=20, idempotency_ttl_seconds=0.0001))
    for name, value in emulator.conn_env().items():
        monkeypatch.setenv(name, value)
    dag = load_dag("coverbase_retry_check")
    dag_run = dag.test()

    assert dag_run.state == DagRunState.FAILED  # the workflow always fails, on both tries
    posts = [r for r in emulator.requests if r["method"] == "POST"]
    assert len(posts) == 2
    first_key, second_key = (p["headers"]["idempotency-key"] for p in posts)
    assert first_key != second_key
    assert emulator.run_count() == 2
    scope = TaskScope(dag_id=dag.dag_id, run_id=dag_run.run_id, task_id="run_failing", map_index=-1)
    record = json.loads(get_state_backend().get(scope, STATE_KEY))
    assert record["chain"] == 1
    assert record["generation"] == 1
    assert record["workflow"] == "always-fails"


def test_quarterly_report_dag_run_by_hand_for_a_named_sweep(
    airflow_db: None, coverbase_conn_env: CoverbaseEmulator
) -> None:
    # The asset-triggered path (a webhook, the real scheduler) is in tests/integration/test_webhooks_airflow.py.
    import httpx
    from airflow.utils.state import DagRunState

    emu = coverbase_conn_env
    emu.set_speed(0)
    run_id = httpx.post(
        f"{emu.base_url}/v1/workflows/quarterly-privacy-sweep/run",
        json={"input": {"quarter": "2026-Q3", "vendor_filter": {}}},
        headers={"Authorization": f"Bearer {emu.api_key}"},
        timeout=5,
    ).json()["workflow_run_id"]
    emu.advance(3600)
    dag = load_dag("coverbase_quarterly_report")
    dag_run = dag.test(run_conf={"workflow_run_id": run_id})
    assert dag_run.state == DagRunState.SUCCESS
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(
            run_id=dag_run.run_id, key="return_value", dag_ids=dag.dag_id, task_ids="build_report", map_indexes=None
        )
        reports = [XComModel.deserialize_value(row) for row in session.execute(query).scalars().all()]
    assert [r["workflow_run_id"] for r in reports] == [run_id]  # a batch of one: the named run
    assert reports[0]["status"] == "completed"


def test_a_task_that_fails_before_a_run_exists_logs_no_xcom_error(
    airflow_db: None, coverbase_conn_env: CoverbaseEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    """The link is computed when each task ends; with no run there is no URL, and no XCom lookup error."""
    from airflow.utils.state import DagRunState, TaskInstanceState

    dag = load_dag("coverbase_fails_before_run")
    dag_run = dag.test()
    output = "".join(capfd.readouterr())

    assert dag_run.state == DagRunState.FAILED
    for task_id in ("unknown_workflow", "bad_input", "missing_connection"):
        ti = dag_run.get_task_instance(task_id)
        assert ti is not None
        assert ti.state == TaskInstanceState.FAILED, task_id
    assert emulator_runs(coverbase_conn_env) == []
    assert "no-such-workflow" in output  # the tasks' own logs are in the captured output
    assert "XCom not found" not in output
    assert "Failed to push an xcom for task operator extra link" not in output
