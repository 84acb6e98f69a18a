"""The Coverbase views' API inside a real Airflow API app (``airflow.api_fastapi.app.create_app``).

Real Airflow authentication (JWTs from the simple auth manager) and authorization (an auth manager
that lets ``alice`` read ``dag_a`` but not ``dag_b``), the test session's real metadata database
holding the XCom records tasks push, the webhook receiver's table and asset events, and the
emulator over loopback for the live readings of the rows on screen.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from fastapi.testclient import TestClient

from airflow_provider_coverbase.assets import workflow_asset_uri
from airflow_provider_coverbase.client import CoverbaseClient
from airflow_provider_coverbase.monitoring import XCOM_KEY
from airflow_provider_coverbase.testing import CoverbaseEmulator

from .conftest import conn_value

CONN = "coverbase_ui"
NOW = time.time()


class DenyingAuthManager(SimpleAuthManager):
    """The simple auth manager, except that ``alice`` may not read ``dag_b``."""

    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        if user.get_name() == "alice" and details is not None and details.id == "dag_b":
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)


@pytest.fixture(scope="module")
def airflow_app() -> Iterator[TestClient]:
    from airflow.api_fastapi import app as app_module
    from airflow.configuration import conf
    from airflow.utils import db

    from airflow_provider_coverbase.plugins import webhook_dedupe

    db.resetdb()
    webhook_dedupe._table_ready = False
    with conf_vars(
        {
            ("core", "auth_manager"): f"{__name__}.DenyingAuthManager",
            ("core", "simple_auth_manager_users"): "alice:viewer,bob:viewer",
            ("core", "simple_auth_manager_all_admins"): "False",
            # A key as long as HS512 asks for: Airflow's generated default is shorter, and PyJWT warns.
            ("api_auth", "jwt_secret"): secrets.token_urlsafe(64),
        },
        conf,
    ):
        app_module.purge_cached_app()
        _register_plugin()
        app = app_module.create_app()
        with TestClient(app) as client:
            yield client
        app_module.purge_cached_app()


def _register_plugin() -> None:
    """Add the plugin to Airflow's loaded plugins, as its entry point does in an installed wheel."""
    from airflow import plugins_manager

    from airflow_provider_coverbase.plugins.ui import CoverbaseUIPlugin

    plugins, _ = plugins_manager._get_plugins()
    if not any(isinstance(p, CoverbaseUIPlugin) for p in plugins):
        plugins.append(CoverbaseUIPlugin())
    for cached in ("get_fastapi_plugins", "_get_ui_plugins"):  # cached by Airflow; the names of 3.3
        function = getattr(plugins_manager, cached, None)
        if function is not None:
            function.cache_clear()


class conf_vars:  # a context manager, named like Airflow's test helper
    def __init__(self, values: dict[tuple[str, str], str], conf: Any) -> None:
        self.values, self.conf = values, conf
        self.old: dict[tuple[str, str], str | None] = {}

    def __enter__(self) -> None:
        for (section, key), value in self.values.items():
            self.old[(section, key)] = self.conf.get(section, key, fallback=None)
            self.conf.set(section, key, value)

    def __exit__(self, *exc: object) -> None:
        for (section, key), value in self.old.items():
            if value is None:
                self.conf.remove_option(section, key)
            else:
                self.conf.set(section, key, value)


def token(name: str) -> dict[str, str]:
    from airflow.api_fastapi.app import get_auth_manager

    jwt = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=name, role="viewer"))
    return {"Authorization": f"Bearer {jwt}"}


def record(
    run_id: str, *, status: str = "running", workflow: str = "quarterly-privacy-sweep", **extra: Any
) -> dict[str, Any]:
    return {
        "v": 1,
        "conn_id": CONN,
        "url": f"https://dash.example/runs/{run_id}",
        "origin": "created",
        "try_number": 1,
        "idempotency_key": f"airflow:k:{run_id}",
        "workflow_run_id": run_id,
        "workflow_name": workflow,
        "status": status,
        "api_status": status,
        "started_at": NOW - 3600,
        "completed_at": None,
        "checkpoints": [{"name": "vendors_selected", "at": NOW - 3000, "source": "first_seen"}],
        "current_step": None,
        "failed_step": None,
        "failure_reason": None,
        "last_poll_at": NOW - 60,
        "next_poll_at": NOW + 100,
        "poll_interval": 30.0,
        "max_poll_interval": 1800.0,
        "output": None,
        "output_truncated": False,
        **extra,
    }


def put_records(rows: list[tuple[str, str, str, int, dict[str, Any]]]) -> None:
    """XCom rows as the task SDK stores them (a JSON text in the JSON column), plus their DAGs."""
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        if session.get(DagBundleModel, "dags-folder") is None:
            session.add(DagBundleModel(name="dags-folder"))
            session.flush()
        for dag_id in {r[0] for r in rows}:
            if session.get(DagModel, dag_id) is None:
                session.add(DagModel(dag_id=dag_id, bundle_name="dags-folder"))
        session.flush()
    from airflow import settings

    assert settings.engine is not None
    with settings.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # records without their task instances
        table = XComModel.__table__
        for number, (dag_id, run_id, task_id, map_index, value) in enumerate(rows):
            connection.execute(
                table.delete().where(
                    table.c.dag_id == dag_id,
                    table.c.run_id == run_id,
                    table.c.task_id == task_id,
                    table.c.map_index == map_index,
                    table.c.key == XCOM_KEY,
                )
            )
            connection.execute(
                sa.insert(XComModel.__table__).values(
                    dag_run_id=abs(hash((dag_id, run_id))) % 10**9 + number,
                    task_id=task_id,
                    map_index=map_index,
                    key=XCOM_KEY,
                    dag_id=dag_id,
                    run_id=run_id,
                    value=json.dumps(value),
                    timestamp=datetime.now(UTC),  # as Airflow writes it (microseconds)
                )
            )
        connection.commit()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")


@pytest.fixture(scope="module")
def data(airflow_app: TestClient) -> None:
    rows = [
        ("dag_a", "scheduled__q4", "sweep_tier", i, record(f"cbwfr_tier{i}", status="completed", workflow="tiered"))
        for i in range(3)
    ]
    rows += [
        ("dag_a", f"manual__{i}", "sweep", -1, record(f"cbwfr_a{i:02d}", status="failed", started_at=NOW - 7200 - i))
        for i in range(30)
    ]
    rows.append(("dag_b", "manual__b", "secret_sweep", -1, record("cbwfr_b1", status="completed", workflow="hidden")))
    put_records(rows)
    _webhook_only("cbwfr_dashboard_1")


def _webhook_only(run_id: str) -> None:
    from airflow.utils.session import create_session

    from airflow_provider_coverbase.plugins import webhook_dedupe

    webhook_dedupe.ensure_table()
    with create_session() as session:
        session.execute(
            webhook_dedupe.dedupe_table.insert().values(
                conn_id=CONN,
                event_id=f"cbevt_{run_id}",
                event_type="workflow.completed",
                workflow_run_id=run_id,
                # What the receiver records for an event no DAG uses: the asset URI, no asset event.
                asset_uri=workflow_asset_uri("dashboard sweep", conn_id=CONN),
                asset_event_id=None,
                received_at=int(NOW - 10),
            )
        )


# ---- authentication and authorization ---------------------------------------------------------


def test_no_token_is_401(airflow_app: TestClient, data: None) -> None:
    assert airflow_app.get("/coverbase-ui/api/runs").status_code == 401
    assert airflow_app.get("/coverbase-ui/api/task-instance?dag_id=dag_a&dag_run_id=x&task_id=y").status_code == 401


def test_a_bad_token_is_refused(airflow_app: TestClient, data: None) -> None:
    answer = airflow_app.get("/coverbase-ui/api/runs", headers={"Authorization": "Bearer not-a-jwt"})
    assert answer.status_code in (401, 403)


def test_a_user_sees_only_dags_they_may_read_in_rows_counts_and_filters(airflow_app: TestClient, data: None) -> None:
    alice = airflow_app.get("/coverbase-ui/api/runs?limit=100", headers=token("alice")).json()
    bob = airflow_app.get("/coverbase-ui/api/runs?limit=100", headers=token("bob")).json()
    assert {r["dag_id"] for r in alice["runs"]} == {"dag_a", None}  # None: the run known only from webhooks
    assert "dag_b" not in alice["facets"]["dag_id"]
    assert "hidden" not in alice["facets"]["workflow"]
    assert alice["total"] == 3 + 30 + 1
    assert bob["total"] == alice["total"] + 1
    assert "dag_b" in bob["facets"]["dag_id"]
    # Asking for DAG B by name gives nothing, and its task instance is refused.
    assert airflow_app.get("/coverbase-ui/api/runs?dag_id=dag_b", headers=token("alice")).json()["total"] == 0
    refused = airflow_app.get(
        "/coverbase-ui/api/task-instance?dag_id=dag_b&dag_run_id=manual__b&task_id=secret_sweep", headers=token("alice")
    )
    assert refused.status_code == 403
    assert "cbwfr_b1" not in refused.text


# ---- the page ---------------------------------------------------------------------------------


def test_pagination_is_newest_first_and_complete(airflow_app: TestClient, data: None) -> None:
    seen: list[str] = []
    for offset in range(0, 40, 7):
        page = airflow_app.get(f"/coverbase-ui/api/runs?limit=7&offset={offset}", headers=token("alice")).json()
        assert len(page["runs"]) <= 7
        seen += [r["workflow_run_id"] for r in page["runs"]]
    assert len(seen) == len(set(seen)) == 34
    starts = [
        r["started_at"]
        for r in airflow_app.get("/coverbase-ui/api/runs?limit=100", headers=token("alice")).json()["runs"]
    ]
    assert starts == sorted(starts, reverse=True)
    assert airflow_app.get("/coverbase-ui/api/runs?limit=101", headers=token("alice")).status_code == 422


def test_filters_and_the_tier_fan_out(airflow_app: TestClient, data: None) -> None:
    tiers = airflow_app.get("/coverbase-ui/api/runs?workflow=tiered", headers=token("alice")).json()
    assert tiers["total"] == 3
    assert sorted(r["map_index"] for r in tiers["runs"]) == [0, 1, 2]
    assert all(r["ti_path"].startswith("dags/dag_a/runs/scheduled__q4/tasks/sweep_tier/mapped/") for r in tiers["runs"])
    failed = airflow_app.get("/coverbase-ui/api/runs?status=failed&dag_id=dag_a", headers=token("alice")).json()
    assert failed["total"] == 30
    assert {r["status"] for r in failed["runs"]} == {"failed"}
    assert airflow_app.get(f"/coverbase-ui/api/runs?conn_id={CONN}", headers=token("alice")).json()["total"] == 34
    assert airflow_app.get("/coverbase-ui/api/runs?conn_id=other", headers=token("alice")).json()["total"] == 0


def test_a_run_known_only_from_webhooks_is_listed(airflow_app: TestClient, data: None) -> None:
    page = airflow_app.get("/coverbase-ui/api/runs?limit=100", headers=token("alice")).json()
    (only,) = [r for r in page["runs"] if r["source"] == "webhook"]
    assert only["workflow_run_id"] == "cbwfr_dashboard_1"
    assert only["ti_path"] is None
    assert (only["workflow"], only["status"]) == ("dashboard sweep", "completed")  # from the URI and the type


# ---- live readings and the budget -------------------------------------------------------------


@pytest.fixture
def live_runs(
    airflow_app: TestClient, data: None, coverbase_emulator: CoverbaseEmulator, monkeypatch: pytest.MonkeyPatch
) -> tuple[CoverbaseEmulator, list[str]]:
    from airflow_provider_coverbase.plugins import ui_live

    ui_live.readings.clear()
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", conn_value(coverbase_emulator))
    with CoverbaseClient(coverbase_emulator.api_key, base_url=coverbase_emulator.base_url) as client:
        ids = [client.run_workflow("stalled-forever", {}).workflow_run_id for _ in range(4)]
    coverbase_emulator.advance(1)  # every run past its checkpoint (0.5 emulated s), however fast the test goes
    put_records(
        [
            ("dag_live", "manual__live", "watch", i, record(run_id, workflow="stalled", started_at=NOW + 10 + i))
            for i, run_id in enumerate(ids)
        ]
    )
    yield coverbase_emulator, ids
    ui_live.readings.clear()


def _gets(emulator: CoverbaseEmulator, ids: list[str]) -> int:
    return sum(1 for r in emulator.requests if r["method"] == "GET" and any(i in r["path"] for i in ids))


def test_at_most_one_get_per_visible_row_and_none_when_fresh(
    airflow_app: TestClient, live_runs: tuple[CoverbaseEmulator, list[str]]
) -> None:
    emulator, ids = live_runs
    before = _gets(emulator, ids)
    page = airflow_app.get("/coverbase-ui/api/runs?dag_id=dag_live&limit=3", headers=token("bob")).json()
    assert len(page["runs"]) == 3
    assert _gets(emulator, ids) - before == 3  # one GET per visible row, none for the fourth
    assert {r["last_checkpoint"] for r in page["runs"]} == {"vendors_selected"}, json.dumps(page["runs"])
    again = airflow_app.get("/coverbase-ui/api/runs?dag_id=dag_live&limit=3", headers=token("bob")).json()
    assert _gets(emulator, ids) - before == 3  # the cache is fresh: no GET
    assert again["runs"] == page["runs"] or [r["workflow_run_id"] for r in again["runs"]] == [
        r["workflow_run_id"] for r in page["runs"]
    ]
    for answer in (page, again):
        assert emulator.api_key not in json.dumps(answer)


def test_the_task_instance_view(airflow_app: TestClient, live_runs: tuple[CoverbaseEmulator, list[str]]) -> None:
    emulator, ids = live_runs
    answer = airflow_app.get(
        "/coverbase-ui/api/task-instance?dag_id=dag_live&dag_run_id=manual__live&task_id=watch&map_index=1",
        headers=token("alice"),
    )
    assert answer.status_code == 200
    body = answer.json()
    run = body["run"]
    assert run["workflow_run_id"] == ids[1]
    assert run["idempotency_key"] == f"airflow:k:{ids[1]}"
    assert run["origin"] == "created"
    assert run["live"] is True
    assert [c["name"] for c in run["checkpoints"]] == ["vendors_selected"]
    assert emulator.api_key not in answer.text
    none = airflow_app.get(
        "/coverbase-ui/api/task-instance?dag_id=dag_a&dag_run_id=manual__0&task_id=other", headers=token("alice")
    ).json()
    assert none["run"] is None


def test_the_bundle_is_served(airflow_app: TestClient) -> None:
    from airflow_provider_coverbase.plugins.ui_api import BUNDLE_DIR

    if not (BUNDLE_DIR / "main.umd.cjs").is_file():
        pytest.fail("the built bundle is missing from the package (run `make ui-build`)")
    answer = airflow_app.get("/coverbase-ui/static/main.umd.cjs")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")  # browsers import no text/plain module
    assert "AirflowPlugin" in answer.text


def test_airflow_lists_the_tab_and_the_page(airflow_app: TestClient) -> None:
    """Airflow's own plugin listing shows both React apps, the tab and the nav page, on one bundle."""
    answer = airflow_app.get("/api/v2/plugins", headers=token("bob"))
    assert answer.status_code == 200
    (plugin,) = [p for p in answer.json()["plugins"] if p["name"] == "coverbase_ui"]
    apps = {app["destination"]: app for app in plugin["react_apps"]}
    assert set(apps) == {"task_instance", "nav"}
    assert {app["bundle_url"] for app in apps.values()} == {"/coverbase-ui/static/main.umd.cjs"}
    assert {app["name"] for app in apps.values()} == {"Coverbase"}
