"""The pull path in a real ``airflow triggerer``, restarted: each finished run becomes one asset event.

A DAG file puts ``CoverbaseWorkflowRunEventTrigger`` on an asset through ``AssetWatcher``;
``airflow dags reserialize`` registers the watcher, and ``airflow triggerer`` runs it against the
emulator's current dialect (clock frozen, so runs finish only when the test advances it). The
triggerer is stopped (SIGTERM, as a deployment restarts it), a run finishes while it is down, and a
second triggerer process takes over. Asset events are read from Airflow's database.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_coverbase.client import CoverbaseClient
from airflow_provider_coverbase.testing import CoverbaseEmulator


def has_asset_state_store() -> bool:
    from airflow.sdk.execution_time import context

    return hasattr(context, "AssetStateStoreAccessors")


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not has_asset_state_store(), reason="resuming across restarts needs Airflow >= 3.3"),
]

AIRFLOW = Path(sys.executable).with_name("airflow")
WORKFLOW = "adhoc-campaign"

DAG_FILE = """
from airflow.sdk import DAG, Asset, AssetWatcher

from airflow_provider_coverbase.triggers.events import CoverbaseWorkflowRunEventTrigger


def watched(status):
    name = f"adhoc_campaign_{status}"
    trigger = CoverbaseWorkflowRunEventTrigger("adhoc-campaign", statuses=[status], poll_interval=0.3)
    return Asset(name, watchers=[AssetWatcher(name=name, trigger=trigger)])


with DAG("on_adhoc_campaign", schedule=[watched("completed"), watched("failed")]):
    pass
"""


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Airflow:
    """A throwaway AIRFLOW_HOME (SQLite) and the Airflow commands run in it."""

    def __init__(self, home: Path, emulator: CoverbaseEmulator) -> None:
        self.home = home
        dags = home / "dags"
        dags.mkdir()
        (dags / "watch_adhoc_campaign.py").write_text(DAG_FILE)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
        self.env = {
            **env,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "PATH": f"{AIRFLOW.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            **emulator.conn_env(),
        }
        self.processes: list[subprocess.Popen[bytes]] = []

    def run(self, *args: str) -> None:
        result = subprocess.run(
            [str(AIRFLOW), *args], env=self.env, capture_output=True, text=True, timeout=180, check=False
        )
        assert result.returncode == 0, result.stderr[-3000:]

    def start_triggerer(self, name: str) -> subprocess.Popen[bytes]:
        with (self.home / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [str(AIRFLOW), "triggerer", "--skip-serve-logs"],  # no log server on a fixed port
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.home / "airflow.db") as db:
            return db.execute(sql).fetchall()

    def asset_events(self) -> list[tuple[str, dict[str, Any]]]:
        rows = self.query(
            "SELECT asset.name, asset_event.extra FROM asset_event JOIN asset ON asset.id = asset_event.asset_id "
            "ORDER BY asset_event.id"
        )
        return [(name, json.loads(extra)) for name, extra in rows]


@pytest.fixture
def airflow(tmp_path: Path, coverbase_emulator_factory: Any) -> Iterator[tuple[Airflow, CoverbaseEmulator]]:
    emulator: CoverbaseEmulator = coverbase_emulator_factory("current", speed=0)
    af = Airflow(tmp_path, emulator)
    yield af, emulator
    for process in af.processes:
        af.stop(process)


def test_a_restarted_triggerer_emits_each_finished_run_once(airflow: tuple[Airflow, CoverbaseEmulator]) -> None:
    af, emulator = airflow
    client = CoverbaseClient(emulator.api_key, base_url=emulator.base_url)

    def finish(status: str = "completed") -> str:
        """Start a run of the workflow and let it end with ``status`` (runs keep the definition they start with)."""
        emulator.add_workflow(WORKFLOW, [("campaign_sent", 0.5)], final_status=status)  # type: ignore[arg-type]
        run_id = client.run_workflow(WORKFLOW, {}).workflow_run_id
        emulator.advance(5)
        return run_id

    def shared_polls() -> int:
        listings = [r for r in emulator.requests if r["path"] == "/v1/workflows/runs"]
        return sum(1 for r in listings if "workflow_name" not in dict(r["query"]))

    try:
        af.run("db", "migrate")
        af.run("dags", "reserialize")
        watchers = af.query("SELECT classpath FROM trigger")
        assert watchers == [("airflow_provider_coverbase.triggers.events.CoverbaseWorkflowRunEventTrigger",)] * 2
        before = finish()  # finished before any watch began: never an event

        first = af.start_triggerer("triggerer-1")
        wait_for(lambda: af.query("SELECT count(*) FROM asset_state_store")[0][0] == 2, 90, "both baselines stored")
        done_1 = finish()
        failed_1 = finish("failed")
        wait_for(lambda: len(af.asset_events()) == 2, 60, "the first two asset events")
        af.stop(first)
        assert first.returncode is not None

        while_down = finish()  # the triggerer is down

        second = af.start_triggerer("triggerer-2")
        wait_for(lambda: len(af.asset_events()) >= 3, 90, "the run that finished while the triggerer was down")
        done_2 = finish()
        wait_for(lambda: len(af.asset_events()) >= 4, 60, "a run finished after the restart")
        polls = shared_polls()
        wait_for(lambda: shared_polls() >= polls + 5, 30, "five more polls")  # and nothing more comes
        af.stop(second)
    finally:
        client.close()

    events = af.asset_events()
    by_asset = {
        name: [extra["payload"]["workflow_run_id"] for asset, extra in events if asset == name]
        for name in ("adhoc_campaign_completed", "adhoc_campaign_failed")
    }
    assert by_asset == {
        "adhoc_campaign_completed": [done_1, while_down, done_2],
        "adhoc_campaign_failed": [failed_1],
    }
    assert before not in {extra["payload"]["workflow_run_id"] for _, extra in events}
    assert all(extra["from_trigger"] is True for _, extra in events)
    (failure,) = [extra for asset, extra in events if asset == "adhoc_campaign_failed"]
    assert failure["payload"] == {
        "event_id": f"poll:{failed_1}:failed",
        "event_type": "WorkflowRun.Failed",
        "workflow_run_id": failed_1,
        "workflow_name": WORKFLOW,
        "status": "failed",
        "checkpoint": None,
        "occurred_at": failure["payload"]["occurred_at"],
        "output": None,
        "output_truncated": False,
    }
    datetime.fromisoformat(failure["payload"]["occurred_at"])  # ISO-8601, as the webhook receiver writes it
    # Both watchers shared one poll of the connection; each checked its workflow once per start.
    checks = [r for r in emulator.requests if dict(r["query"]).get("workflow_name") == WORKFLOW]
    assert len(checks) == 4
    assert shared_polls() > 0
    keys = {key for (key,) in af.query("SELECT key FROM asset_state_store")}
    assert keys == {
        "coverbase-watch:coverbase_default:adhoc-campaign:completed",
        "coverbase-watch:coverbase_default:adhoc-campaign:failed",
    }
