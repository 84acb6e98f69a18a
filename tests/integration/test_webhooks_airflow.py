"""Webhooks end to end, with real processes: the emulator delivers signed webhooks to the receiver
inside a real ``airflow api-server``; the asset events show up in Airflow's REST API; a real
``airflow scheduler`` (with a ``dag-processor``) starts the asset-scheduled example DAG
``coverbase_quarterly_report``, whose task runs on the LocalExecutor.

One Airflow home and one set of processes serve each run of the module, on free ports. The module
runs twice: on SQLite with one API worker, and on PostgreSQL (a throwaway cluster from Debian's
``postgresql`` binaries, see ``_postgres.py``; skipped, saying why, when they are missing) with two
API workers, as a production deployment would. The tests at the end are issue 15's findings.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from airflow_provider_coverbase.assets import coverbase_workflow_asset
from airflow_provider_coverbase.testing import CoverbaseEmulator, sign
from tests.ports import free_port

from ._postgres import throwaway_postgres

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
SECRET = "whsec_integration_secret_0123456789"
CONN = "coverbase_default"
SWEEP_DONE = coverbase_workflow_asset("quarterly-privacy-sweep", conn_id=CONN)
SWEEP_CHECKPOINT = coverbase_workflow_asset("quarterly-privacy-sweep", checkpoint="responses_aggregated", conn_id=CONN)
REPORT_DAG = "coverbase_quarterly_report"
T = TypeVar("T")

#: A second consumer, on a checkpoint's asset: export responses as soon as they are aggregated.
CHECKPOINT_DAG = """
from datetime import datetime, UTC
from airflow.sdk import DAG, task
from airflow_provider_coverbase.assets import coverbase_workflow_asset

with DAG(
    dag_id="coverbase_export_responses",
    schedule=[coverbase_workflow_asset("quarterly-privacy-sweep", checkpoint="responses_aggregated")],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
):
    @task
    def export() -> None:
        print("exporting responses")

    export()
"""

#: A DAG that only produces (outlets) the asset of a workflow whose deliveries the tests shape
#: freely: the asset exists in Airflow, but no DAG run is queued by its events.
OUTLET_DAG = """
from datetime import datetime, UTC
from airflow.sdk import DAG, task
from airflow_provider_coverbase.assets import coverbase_workflow_asset

with DAG(dag_id="coverbase_outlet_only", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC)):
    @task(outlets=[coverbase_workflow_asset("outlet-only")])
    def produce() -> None:
        pass

    produce()
"""
OUTLET_DONE = coverbase_workflow_asset("outlet-only", conn_id=CONN)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    port: int
    emulator: CoverbaseEmulator
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hook_url(self) -> str:
        return f"{self.base}/coverbase/webhooks/{CONN}"

    def airflow(self, *args: str) -> list[str]:
        return [str(Path(sys.executable).with_name("airflow")), *args]

    def start(self, name: str, *args: str) -> None:
        log = (self.home / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            self.airflow(*args), env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self, *names: str, sig: signal.Signals = signal.SIGTERM) -> None:
        """Signal the processes (all at once), then SIGKILL whatever is still there after 15 s."""
        procs = [self.procs.pop(name) for name in names]
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, sig)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def start_api_server(self) -> None:
        self.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.port))

    def wait_for_api_server(self) -> None:
        # Two workers on a busy 2-core machine took 50 s to start: be patient.
        healthy = lambda: httpx.get(f"{self.base}/api/v2/monitor/health", timeout=2).is_success  # noqa: E731
        wait_for("the API server", healthy, timeout=180)

    def api(self, path: str, **params: Any) -> Any:
        def get() -> Any:
            response = httpx.get(f"{self.base}/api/v2{path}", params=params, timeout=10)
            # Airflow 3.3.2 answers 500 on /assets/events while a DAG run the event queued has no
            # start_date yet (AssetEventResponse validation); it passes once the run starts.
            if response.status_code == 500:
                return None
            response.raise_for_status()
            return response.json()

        return wait_for(f"GET {path}", get, timeout=30)

    def asset_id(self, asset: Any) -> int | None:
        assets = self.api("/assets", uri_pattern="coverbase://", limit=100)["assets"]
        return next((a["id"] for a in assets if a["uri"] == asset.uri), None)

    def events(self, asset: Any) -> list[dict[str, Any]]:
        asset_id = self.asset_id(asset)
        assert asset_id is not None, f"Airflow does not know {asset.uri}"
        found = self.api("/assets/events", asset_id=asset_id, limit=100)["asset_events"]
        return [e["extra"] for e in found if "event_id" in e["extra"]]  # not the one made by hand

    def reports(self, dag_run_id: str) -> list[dict[str, Any]]:
        """The return values of the report DAG's mapped ``build_report`` in one DAG run, by map index."""
        base = f"/dags/{REPORT_DAG}/dagRuns/{dag_run_id}/taskInstances"
        mapped = self.api(f"{base}/build_report/listMapped")["task_instances"]
        return [
            self.api(f"{base}/build_report/xcomEntries/return_value", map_index=ti["map_index"])["value"]
            for ti in sorted(mapped, key=lambda ti: ti["map_index"])
        ]

    def finished_report_runs(self, before: set[str], at_least: int) -> list[str]:
        """The report DAG's runs not in ``before``, oldest first, once ``at_least`` exist and all ended."""
        runs = sorted(self.api(f"/dags/{REPORT_DAG}/dagRuns")["dag_runs"], key=lambda r: r["run_after"])
        new = [r for r in runs if r["dag_run_id"] not in before]
        if len(new) < at_least or any(r["state"] not in ("success", "failed") for r in new):
            return []
        assert all(r["state"] == "success" for r in new), new
        return [r["dag_run_id"] for r in new]

    def task_log_has(self, dag_run_id: str, task_id: str, text: str) -> bool:
        """Whether the task's log file (under ``$AIRFLOW_HOME/logs``) contains ``text``."""
        folder = self.home / "logs" / f"dag_id={REPORT_DAG}" / f"run_id={dag_run_id}" / f"task_id={task_id}"
        return any(text in path.read_text(errors="replace") for path in folder.rglob("*.log"))

    def deliver(self, body: dict[str, Any], secret: str = SECRET) -> httpx.Response:
        raw = json.dumps(body, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "Coverbase-Signature": sign(secret, raw),
            "Coverbase-Timestamp": str(body["occurred_at"]),
            "X-Coverbase-Event-Id": body["event_id"],
            "X-Coverbase-Event-Type": body["event_type"],
        }
        return httpx.post(self.hook_url, content=raw, headers=headers, timeout=10)


def airflow_env(home: Path, port: int, extra: dict[str, str]) -> dict[str, str]:
    """The environment of the Airflow processes of a test: ``home``, its ``dags`` folder, the API server on
    ``port`` (which also serves the tasks' execution API), fast scheduler loops; plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "COVERBASE"))}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
            **extra,
        }
    )
    return env


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The metadata database's settings: Airflow's default SQLite, or a throwaway PostgreSQL."""
    if request.param == "sqlite":
        yield {"AIRFLOW__API__WORKERS": "1"}
        return
    with throwaway_postgres() as url:
        yield {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url, "AIRFLOW__API__WORKERS": "2"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, database: dict[str, str]) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("airflow-webhooks")
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(REPO / "example_dags" / f"{REPORT_DAG}.py", dags)
    (dags / "coverbase_export_responses.py").write_text(CHECKPOINT_DAG)
    (dags / "coverbase_outlet_only.py").write_text(OUTLET_DAG)
    emulator = CoverbaseEmulator(dialect="legacy", speed=20).start()
    port = free_port()
    conn = json.loads(emulator.conn_uri)
    # The emulator's clock runs 20x fast, so its timestamps drift ahead: widen the tolerance.
    conn["extra"] = {**conn.get("extra", {}), "webhook_secret": SECRET, "webhook_timestamp_tolerance": 3600}
    env = airflow_env(home, port, {f"AIRFLOW_CONN_{CONN.upper()}": json.dumps(conn), **database})
    stack = Stack(home, env, port, emulator)
    try:
        subprocess.run(stack.airflow("db", "migrate"), env=env, check=True, capture_output=True, timeout=180)
        stack.start("dag-processor", "dag-processor")
        stack.start("scheduler", "scheduler", "--skip-serve-logs")
        stack.start_api_server()
        stack.wait_for_api_server()
        wait_for("the DAG's assets", lambda: stack.asset_id(SWEEP_DONE) and stack.asset_id(OUTLET_DONE), timeout=90)
        registered = httpx.post(
            f"{emulator.base_url}/v1/webhooks",
            json={
                "url": stack.hook_url,
                "events": ["workflow.checkpoint", "workflow.completed", "workflow.failed"],
                "secret": SECRET,
            },
            headers={"Authorization": f"Bearer {emulator.api_key}"},
            timeout=5,
        )
        assert registered.status_code == 201, registered.text
        yield stack
    finally:
        stack.stop(*stack.procs)
        emulator.stop()


def legacy_event(event_id: str, run_id: str = "cbwfr_0123456789abcdef0123456789abcdef") -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": "workflow.completed",
        "occurred_at": int(time.time()),
        "data": {
            "workflow_run_id": run_id,
            "workflow_name": "quarterly-privacy-sweep",
            "status": "completed",
            "output": {"vendors_processed": 1},
        },
        "workflow_run_id": run_id,
    }


def emu_start_sweep(emu: CoverbaseEmulator, quarter: str) -> str:
    """Start a run of the sweep in the emulator; its id."""
    started = httpx.post(
        f"{emu.base_url}/v1/workflows/quarterly-privacy-sweep/run",
        json={"input": {"quarter": quarter, "vendor_filter": {"tier": 1}}},
        headers={"Authorization": f"Bearer {emu.api_key}"},
        timeout=5,
    )
    return str(started.json()["workflow_run_id"])


def test_emulator_webhooks_trigger_the_report_dag(stack: Stack) -> None:
    emu = stack.emulator
    run_id = emu_start_sweep(emu, "2026-Q4")

    def completion() -> dict[str, Any] | None:
        return next((e for e in stack.events(SWEEP_DONE) if e["workflow_run_id"] == run_id), None)

    extra = wait_for("the completion asset event", completion, timeout=30)
    assert extra["event_type"] == "workflow.completed"
    assert extra["workflow_name"] == "quarterly-privacy-sweep"
    assert extra["status"] == "completed"
    assert extra["output"]["vendors_processed"] == 38
    assert extra["event_id"].startswith("cbevt_")
    checkpoint = [e for e in stack.events(SWEEP_CHECKPOINT) if e["workflow_run_id"] == run_id]
    assert [e["checkpoint"] for e in checkpoint] == ["responses_aggregated"]
    # Every delivery was answered 2xx, so Coverbase would not retry any of them.
    others = [
        (d["event_type"], d["status"], d["response_status"])
        for d in emu.webhook_deliveries
        if d["response_status"] != 200
    ]
    assert not others, others

    def report_run() -> dict[str, Any] | None:
        runs = stack.api(f"/dags/{REPORT_DAG}/dagRuns")["dag_runs"]
        return next((r for r in runs if r["state"] == "success"), None)

    dag_run = wait_for("the report DAG run", report_run, timeout=60)
    assert dag_run["run_type"] == "asset_triggered"
    (report,) = stack.reports(dag_run["dag_run_id"])
    # The task read the run that completed (named by the asset event) from the emulator's API.
    assert report["workflow_run_id"] == run_id
    assert report["output"]["vendors_processed"] == 38


@pytest.mark.e2e
def test_a_batch_of_webhooks_in_one_dag_run_is_reported_run_by_run(stack: Stack) -> None:
    """Deliveries sent together become DAG runs that each handle a batch: every sweep run is reported once.

    The scheduler is down while four completions are delivered (newest first). Airflow 3.3 queues the
    DAG at the first event and gives the run it creates only the events up to that moment; the three
    later ones wait for the next event and come in one DAG run with it. Here the next event is one
    created by hand through Airflow's REST API, as the webhooks docs page suggests to hand waiting events over;
    the DAG leaves it out.
    """
    emu = stack.emulator
    before = {r["dag_run_id"] for r in stack.api(f"/dags/{REPORT_DAG}/dagRuns")["dag_runs"]}
    emu.hold_deliveries()
    run_ids = [emu_start_sweep(emu, quarter) for quarter in ("2027-Q1", "2027-Q2", "2027-Q3", "2027-Q4")]
    wait_for(
        "four held completions", lambda: sum(e["event_type"] == "workflow.completed" for e in emu.held_deliveries) == 4
    )
    stack.stop("scheduler")
    emu.release_deliveries("reverse")  # sent together, newest first
    wait_for("the asset events", lambda: {e["workflow_run_id"] for e in stack.events(SWEEP_DONE)} >= set(run_ids))
    stack.start("scheduler", "scheduler", "--skip-serve-logs")
    wait_for("the first DAG run", lambda: stack.finished_report_runs(before, at_least=1))
    token = httpx.get(f"{stack.base}/auth/token", timeout=10).json()["access_token"]
    by_hand = httpx.post(
        f"{stack.base}/api/v2/assets/events",
        json={"asset_id": stack.asset_id(SWEEP_DONE), "extra": {"note": "hand over the waiting events"}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert by_hand.is_success, by_hand.text
    both = wait_for("the second DAG run", lambda: stack.finished_report_runs(before, at_least=2))

    first, second = ([r["workflow_run_id"] for r in stack.reports(run_id)] for run_id in both)
    assert first == [run_ids[3]]  # the first one delivered
    assert sorted(second) == sorted(run_ids[:3])  # each sweep run reported once; the hand-made event left out
    sent = {e["workflow_run_id"]: e["occurred_at"] for e in stack.events(SWEEP_DONE)}
    assert second == sorted(second, key=sent.__getitem__)  # in the order Coverbase sent the events
    assert stack.task_log_has(both[1], "sweep_runs", "a batch of 3 finished sweep run(s)")
    assert stack.task_log_has(both[1], "sweep_runs", "1 triggering asset event(s) are not Coverbase events")


def test_forged_signature_is_401_and_makes_no_event(stack: Stack) -> None:
    before = len(stack.events(SWEEP_DONE))
    forged = stack.deliver(legacy_event("cbevt_forged_0001"), secret="whsec_someone_else_0123456789")
    assert (forged.status_code, forged.json()) == (401, {"detail": "invalid signature"})
    unknown = httpx.post(f"{stack.base}/coverbase/webhooks/nope", content=b"{}", timeout=10)
    assert (unknown.status_code, unknown.json()) == (401, {"detail": "invalid signature"})
    assert len(stack.events(SWEEP_DONE)) == before
    assert "cbevt_forged_0001" not in {e["event_id"] for e in stack.events(SWEEP_DONE)}


def test_redelivery_gives_one_event(stack: Stack) -> None:
    body = legacy_event("cbevt_redelivered_0001")
    answers = [stack.deliver(body).json()["status"] for _ in range(3)]
    assert answers == ["created", "duplicate", "duplicate"]
    assert [e["event_id"] for e in stack.events(SWEEP_DONE)].count("cbevt_redelivered_0001") == 1


def test_simultaneous_deliveries_give_one_event(stack: Stack) -> None:
    # Handled concurrently (FastAPI's thread pool), each in its own DB transaction, as replicas would.
    body = legacy_event("cbevt_simultaneous_0001")
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: stack.deliver(body), range(6)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert sorted(a.json()["status"] for a in answers) == ["created"] + ["duplicate"] * 5
    assert [e["event_id"] for e in stack.events(SWEEP_DONE)].count("cbevt_simultaneous_0001") == 1


def create_connection(stack: Stack, connection: dict[str, Any]) -> httpx.Response:
    """Create ``connection`` through Airflow's API; the answer is its 201.

    SQLite allows one writer: while the scheduler and the dag-processor write, Airflow's API can
    answer this POST with a 500 "Database error" (database is locked). Setup only: try again.
    """
    for _ in range(10):
        created = httpx.post(f"{stack.base}/api/v2/connections", json=connection, timeout=10)
        if created.status_code != 500:
            break
        time.sleep(1)
    assert created.status_code == 201, created.text
    return created


def test_secret_of_a_connection_stored_in_the_database(stack: Stack) -> None:
    connection = {
        "connection_id": "coverbase_org_b",
        "conn_type": "coverbase",
        "host": stack.emulator.base_url,
        "password": stack.emulator.api_key,
        "extra": json.dumps({"webhook_secret": "whsec_org_b_secret_0123456789"}),
    }
    created = create_connection(stack, connection)
    assert json.loads(created.json()["extra"]) == {"webhook_secret": "***"}  # redacted by Airflow
    body = legacy_event("cbevt_org_b_0001")
    raw = json.dumps(body).encode()
    url = f"{stack.base}/coverbase/webhooks/coverbase_org_b"
    ok = httpx.post(url, content=raw, headers={"Coverbase-Signature": sign("whsec_org_b_secret_0123456789", raw)})
    # Verified with the secret read from the metadata DB; no DAG uses org B's asset, so no event.
    assert (ok.status_code, ok.json()["status"]) == (200, "no_asset")
    assert ok.json()["asset_uri"].startswith("coverbase://coverbase_org_b/")
    wrong = httpx.post(url, content=raw, headers={"Coverbase-Signature": sign(SECRET, raw)})
    assert wrong.status_code == 401


def test_one_event_across_an_api_server_crash_restart_and_a_db_migrate(stack: Stack) -> None:
    body = legacy_event("cbevt_restart_0001")
    assert stack.deliver(body).json()["status"] == "created"
    stack.stop("api-server", sig=signal.SIGKILL)  # the harshest restart: a crash, no shutdown hooks
    # What an upgrade does too: Airflow's migrations run (here while the API server comes back up);
    # the dedupe table is not Airflow's, and they leave it alone.
    migrate = subprocess.Popen(stack.airflow("db", "migrate"), env=stack.env, stdout=subprocess.DEVNULL)
    stack.start_api_server()
    assert migrate.wait(timeout=180) == 0
    stack.wait_for_api_server()
    body["occurred_at"] = int(time.time())  # V3 re-stamps a retried delivery
    assert stack.deliver(body).json()["status"] == "duplicate"
    assert [e["event_id"] for e in stack.events(SWEEP_DONE)].count("cbevt_restart_0001") == 1


# ---------------------------------------------------------------- issue 15, on SQLite and PostgreSQL


def post_signed(stack: Stack, raw: bytes, **headers: str) -> httpx.Response:
    """A signed delivery of exactly ``raw``, with no Coverbase-Timestamp unless given."""
    return httpx.post(
        stack.hook_url, content=raw, headers={"Coverbase-Signature": sign(SECRET, raw), **headers}, timeout=10
    )


def test_an_old_delivery_replayed_without_its_header_is_refused(stack: Stack) -> None:
    # Item 1: bodies signed 1 hour to 400 days earlier, replayed without the header, got 200 created.
    for age in (2 * 3600, 400 * 86400):
        body = {**legacy_event(f"cbevt_old_{age}"), "occurred_at": int(time.time()) - age}
        answer = post_signed(stack, json.dumps(body).encode())
        assert (answer.status_code, answer.json()) == (401, {"detail": "invalid signature"})
    assert not {"cbevt_old_7200", "cbevt_old_34560000"} & {e["event_id"] for e in stack.events(SWEEP_DONE)}


def test_a_deep_output_leaves_the_asset_events_api_readable(stack: Stack) -> None:
    # Item 2: an output ~255 levels deep was stored whole; GET /api/v2/assets/events then answered 500.
    deep: Any = 1
    for _ in range(255):
        deep = {"a": deep}
    body = legacy_event("cbevt_deep_output_0001")
    body["data"] = {**body["data"], "workflow_name": "outlet-only", "output": deep}
    answer = stack.deliver(body)
    assert (answer.status_code, answer.json()["status"]) == (200, "created"), answer.text
    listed = httpx.get(
        f"{stack.base}/api/v2/assets/events", params={"asset_id": stack.asset_id(OUTLET_DONE)}, timeout=10
    )
    assert listed.status_code == 200, listed.text
    (extra,) = [e["extra"] for e in listed.json()["asset_events"] if e["extra"]["event_id"] == body["event_id"]]
    assert (extra["output"], extra["output_truncated"]) == (None, True)


def _nested(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


@pytest.mark.parametrize(
    ("event_id", "run_id", "workflow", "extra_data"),
    [
        ("cbevt_nested_990", "cbwfr_1", "quarterly-privacy-sweep", b',"deep":' + _nested(990)),  # item 3
        ("cbevt_nan", "cbwfr_1", "quarterly-privacy-sweep", b',"output":{"x":NaN,"y":Infinity}'),  # item 4
        ("cbevt_" + "e" * 300, "cbwfr_1", "quarterly-privacy-sweep", b""),  # item 4: id over 250
        ("cbevt_long_run", "cbwfr_" + "r" * 300, "quarterly-privacy-sweep", b""),  # item 4: id over 250
        ("cbevt_long_uri", "cbwfr_1", "w" * 1500, b""),  # item 3: asset URI over 1,500 characters
        ("cbevt_crlf", "cbwfr_1\\r\\nX: y", "quarterly-privacy-sweep", b""),  # item 7: escaped in the JSON
    ],
    ids=["nested-990", "nan", "long-event-id", "long-run-id", "long-asset-uri", "crlf-run-id"],
)
def test_signed_bodies_that_can_never_be_stored_get_400(
    stack: Stack, event_id: str, run_id: str, workflow: str, extra_data: bytes
) -> None:
    # Items 3, 4 and 7: these got 500 (or 503) before, so Coverbase would retry them for a day; on
    # PostgreSQL the long ids and NaN were also never recorded.
    head = json.dumps(
        {"event_id": event_id, "event_type": "workflow.completed", "occurred_at": int(time.time())}
    ).encode()[:-1]
    raw = (
        head
        + f',"workflow_run_id":"{run_id}","data":{{"workflow_run_id":"{run_id}","workflow_name":"{workflow}"'.encode()
        + extra_data
        + b"}}"
    )
    answer = post_signed(stack, raw)
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"]


def test_an_occurred_at_beyond_float_range_is_400(stack: Stack) -> None:
    # Item 3: OverflowError, 500.
    raw = b'{"event_id":"cbevt_overflow","event_type":"workflow.completed","occurred_at":1' + b"0" * 400
    raw += b',"workflow_run_id":"cbwfr_1","data":{"workflow_name":"quarterly-privacy-sweep"}}'
    answer = post_signed(stack, raw)
    assert (answer.status_code, answer.json()["detail"]) == (400, "'occurred_at' is out of range")


def test_replays_of_an_unrecorded_delivery_read_the_run_once(stack: Stack) -> None:
    # Item 6: every replay of a genuine delivery that ended unrecorded read the run from Coverbase again.
    emu = stack.emulator
    run_id = "cbwfr_" + "0" * 32  # a sample id, as in a test delivery: the API does not know it
    body = legacy_event("cbevt_unknown_run_0001", run_id=run_id)
    del body["data"]["workflow_name"]  # so the receiver must read the run for its name
    reads_before = sum(1 for r in emu.requests if r["path"].endswith(run_id))
    answers = [stack.deliver({**body, "occurred_at": int(time.time())}).json() for _ in range(6)]
    assert answers[0]["status"] == "ignored"
    assert answers[1:] == [{"status": "duplicate", "event_id": body["event_id"]}] * 5
    assert sum(1 for r in emu.requests if r["path"].endswith(run_id)) - reads_before == 1


def test_a_short_webhook_secret_is_refused_and_the_log_says_why(stack: Stack) -> None:
    # Item 8: a one-character webhook_secret was accepted.
    create_connection(
        stack,
        {
            "connection_id": "coverbase_short_secret",
            "conn_type": "coverbase",
            "host": stack.emulator.base_url,
            "password": stack.emulator.api_key,
            "extra": json.dumps({"webhook_secret": "x"}),
        },
    )
    raw = json.dumps(legacy_event("cbevt_short_secret_0001")).encode()
    url = f"{stack.base}/coverbase/webhooks/coverbase_short_secret"
    answer = httpx.post(url, content=raw, headers={"Coverbase-Signature": sign("x", raw)}, timeout=10)
    assert (answer.status_code, answer.json()) == (401, {"detail": "invalid signature"})
    log = (stack.home / "api-server.log").read_text(errors="replace")
    assert "must be at least 16 characters (this one has 1;" in log


def test_a_half_sent_body_is_answered_408_and_its_connection_closed(stack: Stack) -> None:
    # Item 8: a body that never completes kept its connection open (20 s and more were seen).
    with socket.create_connection(("127.0.0.1", stack.port), timeout=60) as sock:
        sock.sendall(
            b"POST /coverbase/webhooks/coverbase_default HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + b'{"event_id":'
        )
        received = b""
        while chunk := sock.recv(65536):  # the server answers, then closes the connection
            received += chunk
    assert received.startswith(b"HTTP/1.1 408 "), received[:200]
    assert b"connection: close" in received.lower()
    assert b"did not arrive within 10 s" in received


def test_no_process_logged_the_secret_or_the_api_key(stack: Stack) -> None:
    logs = [p for p in stack.home.rglob("*.log") if p.is_file()]
    assert any(p.name == "api-server.log" for p in logs)
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert "Coverbase webhook" in text  # the receiver did log its deliveries
    for secret in (SECRET, stack.emulator.api_key):
        assert secret not in text
