"""The pull path with every Airflow process real: one watch per asset, and every finished run handled once.

``[coverbase] pull_connections`` names the connection, so ``coverbase_workflow_asset()`` attaches the
pull watcher in every DAG file. The DAGs folder holds the example ``coverbase_quarterly_report`` and
a second DAG file of the user's on the same asset. ``airflow dag-processor`` parses both every
second, ``airflow triggerer`` runs the watch against the emulator's current dialect (clock frozen:
runs finish when the test advances it), ``airflow scheduler`` starts the DAG runs and
``airflow api-server`` serves their tasks. Everything is read from Airflow's database (SQLite).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_coverbase.client import CoverbaseClient
from airflow_provider_coverbase.testing import CoverbaseEmulator
from tests.integration.test_webhooks_airflow import Stack, airflow_env, wait_for
from tests.ports import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SWEEP = "quarterly-privacy-sweep"
REPORT_DAG = "coverbase_quarterly_report"
STATE_KEY = f"coverbase-watch:coverbase_default:{SWEEP}:completed"

#: The user's own DAG on the asset the example uses, declared the one way.
USER_DAG = """
from datetime import datetime, UTC
from airflow.sdk import DAG, task
from airflow_provider_coverbase.assets import coverbase_workflow_asset, triggering_coverbase_events

with DAG("notify_sweep_done", schedule=[coverbase_workflow_asset("quarterly-privacy-sweep")],
         start_date=datetime(2026, 1, 1, tzinfo=UTC)):
    @task
    def notify() -> int:
        return len(triggering_coverbase_events())

    notify()
"""

#: What the issue saw: the same asset declared by hand, without the watcher, in a third file.
HAND_DECLARED_DAG = """
from airflow.sdk import DAG, Asset

URI = "coverbase://coverbase_default/workflows/quarterly-privacy-sweep/completed"
with DAG("hand_declared", schedule=[Asset(uri=URI, name=URI, group="coverbase")]):
    pass
"""


class PullStack(Stack):
    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.home / "airflow.db", timeout=30) as db:
            return db.execute(sql, args).fetchall()

    def triggers(self) -> list[tuple[int, str]]:
        return [(row[0], row[1]) for row in self.query("SELECT id, classpath FROM trigger")]

    def parses(self, dag_id: str) -> str | None:
        rows = self.query("SELECT last_parsed_time FROM dag WHERE dag_id = ?", dag_id)
        return str(rows[0][0]) if rows and rows[0][0] else None

    def completions(self) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT asset_event.extra FROM asset_event JOIN asset ON asset.id = asset_event.asset_id "
            "WHERE asset.uri LIKE '%/completed' ORDER BY asset_event.id"
        )
        return [json.loads(extra) for (extra,) in rows]

    def report_runs(self, at_least: int) -> list[str]:
        """The report DAG's run ids, oldest first, once ``at_least`` exist and all ended."""
        rows = self.query("SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY run_after", REPORT_DAG)
        if len(rows) < at_least or any(state not in ("success", "failed") for _, state in rows):
            return []
        assert all(state == "success" for _, state in rows), rows
        return [run_id for run_id, _ in rows]

    def reported_runs(self, run_id: str) -> list[str]:
        rows = self.query(
            "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = 'build_report' "
            "AND key = 'return_value' ORDER BY map_index",
            REPORT_DAG,
            run_id,
        )
        return [json.loads(value)["workflow_run_id"] for (value,) in rows]

    def triggerer_log(self) -> str:
        return (self.home / "triggerer.log").read_text(errors="replace")

    def watch_checks(self) -> int:
        """How many times a watch of the sweep started (each start checks once that the workflow exists)."""
        return sum(
            1
            for r in self.emulator.requests
            if r["path"] == "/v1/workflows/runs" and dict(r["query"]).get("workflow_name") == SWEEP
        )

    def listings(self) -> int:
        return sum(1 for r in self.emulator.requests if r["path"] == "/v1/workflows/runs")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PullStack]:
    home = tmp_path_factory.mktemp("airflow-pull")
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(REPO / "example_dags" / f"{REPORT_DAG}.py", dags)
    (dags / "notify_sweep_done.py").write_text(USER_DAG)
    emulator = CoverbaseEmulator(dialect="current", speed=0).start()
    port = free_port()
    env = airflow_env(
        home,
        port,
        {
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "1",
            "AIRFLOW__COVERBASE__PULL_CONNECTIONS": "coverbase_default",
            "AIRFLOW__COVERBASE__PULL_POLL_INTERVAL": "0.5",
            **emulator.conn_env(),
        },
    )
    stack = PullStack(home, env, port, emulator)
    try:
        subprocess.run(stack.airflow("db", "migrate"), env=env, check=True, capture_output=True, timeout=180)
        stack.start("dag-processor", "dag-processor")
        stack.start("scheduler", "scheduler", "--skip-serve-logs")
        stack.start("triggerer", "triggerer", "--skip-serve-logs")
        stack.start_api_server()
        yield stack
    finally:
        stack.stop(*stack.procs)
        emulator.stop()


def test_the_watch_is_not_restarted_while_the_dag_files_do_not_change(stack: PullStack) -> None:
    wait_for("the watch's first listing", lambda: stack.listings() > stack.watch_checks(), timeout=90)
    triggers = stack.triggers()
    assert triggers == [(triggers[0][0], "airflow_provider_coverbase.triggers.events.CoverbaseWorkflowRunEventTrigger")]
    # Three more parses of each file that declares the asset.
    for _ in range(3):
        seen = {dag_id: stack.parses(dag_id) for dag_id in (REPORT_DAG, "notify_sweep_done")}
        wait_for(
            "another parse of both files",
            lambda seen=seen: all(stack.parses(d) != t for d, t in seen.items()),  # type: ignore[misc]
            timeout=30,
        )
    assert stack.triggers() == triggers  # the same trigger row: never removed and created again
    assert stack.watch_checks() == 1  # started once
    log = stack.triggerer_log()
    assert "cancelled" not in log.lower()
    assert "was started" not in log


def test_every_run_of_a_batch_is_handled_once(stack: PullStack) -> None:
    """Runs that finish while the scheduler is down reach the DAG in batches; each is reported once.

    Airflow 3.3 queues the DAG at the first event and gives the run it creates the events up to
    then; the later ones come with the next event, in one DAG run.
    """
    wait_for("the watch's first listing", lambda: stack.listings() > stack.watch_checks(), timeout=90)
    emu = stack.emulator
    client = CoverbaseClient(emu.api_key, base_url=emu.base_url)

    def finish() -> str:
        run_id = client.run_workflow(SWEEP, {"quarter": "2027-Q1", "vendor_filter": {}}).workflow_run_id
        emu.advance(60)
        return run_id

    try:
        stack.stop("scheduler")
        run_ids = [finish() for _ in range(3)]
        wait_for("three completions", lambda: len(stack.completions()) == 3, timeout=30)
        stack.start("scheduler", "scheduler", "--skip-serve-logs")
        wait_for("the first DAG run", lambda: stack.report_runs(at_least=1), timeout=60)
        run_ids.append(finish())
        first, second = wait_for("the second DAG run", lambda: stack.report_runs(at_least=2), timeout=60)
    finally:
        client.close()

    assert [e["payload"]["workflow_run_id"] for e in stack.completions()] == run_ids  # the watcher's shape
    assert stack.reported_runs(first) == run_ids[:1]
    assert stack.reported_runs(second) == run_ids[1:]  # each run once, in the order they finished
    log_dir = stack.home / "logs" / f"dag_id={REPORT_DAG}" / f"run_id={second}" / "task_id=sweep_runs"
    assert any("a batch of 3 finished sweep run(s)" in p.read_text() for p in log_dir.rglob("*.log"))


def test_a_hand_declared_copy_of_the_asset_without_the_watcher_is_reported(stack: PullStack) -> None:
    (stack.home / "dags" / "hand_declared.py").write_text(HAND_DECLARED_DAG)
    wait_for("the triggerer's warning", lambda: "was started 3 times" in stack.triggerer_log(), timeout=60)
    log = stack.triggerer_log()
    assert "[coverbase] pull_connections" in log
    # What the first test checks the absence of: the watch stopped and started again.
    assert "cancelled" in log.lower()
    # The warning is logged as the third watch starts, before its check reaches the emulator.
    wait_for("the third watch's check", lambda: stack.watch_checks() >= 3, timeout=30)
