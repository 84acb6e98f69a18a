"""The webhook receiver's FastAPI app, in process: FastAPI's TestClient, Airflow's real metadata DB
(the test session's throwaway SQLite), connections from ``AIRFLOW_CONN_*`` and, for run lookups, the
emulator over loopback. The receiver inside a real ``airflow api-server`` is in
``tests/integration/test_webhooks_airflow.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from airflow_provider_coverbase.assets import coverbase_workflow_asset
from airflow_provider_coverbase.testing import CoverbaseEmulator

from .conftest import conn_value

SECRET = "whsec_receiver_test_0123456789"
CONN = "coverbase_hooks"
URL = f"/webhooks/{CONN}"


@pytest.fixture(scope="module")
def airflow_db() -> None:
    from airflow.utils import db

    from airflow_provider_coverbase.plugins import _store

    db.resetdb()
    _store._table_ready = False


@pytest.fixture
def client() -> Iterator[TestClient]:
    from airflow_provider_coverbase.plugins.webhooks import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


@pytest.fixture
def legacy_conn(coverbase_emulator: CoverbaseEmulator, monkeypatch: pytest.MonkeyPatch) -> CoverbaseEmulator:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", conn_value(coverbase_emulator, webhook_secret=SECRET))
    return coverbase_emulator


@pytest.fixture
def current_conn(coverbase_emulator_current: CoverbaseEmulator, monkeypatch: pytest.MonkeyPatch) -> CoverbaseEmulator:
    emu = coverbase_emulator_current
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", conn_value(emu, webhook_secret=SECRET))
    return emu


def signed(body: dict[str, Any] | bytes, secret: str = SECRET, timestamp: bool = True) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "Coverbase-Signature": hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest(),
    }
    if timestamp and not isinstance(body, bytes):
        headers["Coverbase-Timestamp"] = str(body["occurred_at"])
    return raw, headers


_counter = iter(range(1_000_000))


def legacy(event_type: str = "workflow.completed", *, workflow: str = "quarterly-privacy-sweep", **data: Any) -> Any:
    run_id = data.pop("run_id", "cbwfr_legacy_1")
    return {
        "event_id": f"cbevt_{time.time_ns()}_{next(_counter)}",
        "event_type": event_type,
        "occurred_at": int(time.time()),
        "data": {"workflow_run_id": run_id, "workflow_name": workflow, **data},
        "workflow_run_id": run_id,
    }


def add_assets(*assets: Any) -> None:
    """Put assets in the DB as parsing a DAG that uses them would."""
    from airflow.models.asset import AssetActive, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        for asset in assets:
            if session.scalar(select(AssetModel).where(AssetModel.uri == asset.uri)) is None:
                model = AssetModel(name=asset.name, uri=asset.uri, group=asset.group)
                session.add(model)
                session.flush()
                session.add(AssetActive.for_asset(model))


def events_of(asset: Any) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent).join(AssetModel, AssetModel.id == AssetEvent.asset_id).where(AssetModel.uri == asset.uri)
        ).all()
        return [dict(row.extra) for row in rows]


def post(client: TestClient, body: dict[str, Any] | bytes, **kwargs: Any) -> httpx.Response:
    raw, headers = signed(body, **kwargs)
    return client.post(URL, content=raw, headers=headers)


# ---------------------------------------------------------------------------- refusals, no DB needed


def test_refusals_all_look_the_same(client: TestClient, legacy_conn: CoverbaseEmulator) -> None:
    body = legacy()
    raw, headers = signed(body)
    answers = [
        client.post("/webhooks/no_such_conn", content=raw, headers=headers),
        client.post(URL, content=raw, headers=signed(body, secret=SECRET + "x")[1]),
        client.post(URL, content=raw, headers={k: v for k, v in headers.items() if k != "Coverbase-Signature"}),
        client.post(URL, content=raw, headers={**headers, "Coverbase-Timestamp": str(int(time.time()) - 3600)}),
        client.post(URL, content=raw + b" ", headers=headers),
    ]
    assert [(a.status_code, a.json()) for a in answers] == [(401, {"detail": "invalid signature"})] * 5


def test_connection_without_secret_refuses_even_correctly_signed(
    client: TestClient, coverbase_emulator: CoverbaseEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", conn_value(coverbase_emulator))
    unsigned_ok = signed(legacy(), secret="")  # HMAC with an empty key
    assert client.post(URL, content=unsigned_ok[0], headers=unsigned_ok[1]).status_code == 401
    assert post(client, legacy()).status_code == 401


def test_other_connection_types_and_bad_extras_are_refused(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN.upper()}", json.dumps({"conn_type": "http", "extra": {"webhook_secret": SECRET}})
    )
    assert post(client, legacy()).status_code == 401
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN.upper()}",
        json.dumps({"conn_type": "coverbase", "password": "k", "extra": {"webhook_secret": SECRET, "typo": 1}}),
    )
    assert post(client, legacy()).status_code == 401


def test_too_large_is_413(client: TestClient, legacy_conn: CoverbaseEmulator) -> None:
    big = legacy(output={"blob": "x" * (256 * 1024)})
    raw, headers = signed(big)
    answer = client.post(URL, content=raw, headers=headers)
    assert answer.status_code == 413
    assert "over the 262144-byte limit" in answer.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed size is checked
        for _ in range(300):
            yield b"x" * 1024

    assert client.post(URL, content=chunks(), headers=headers).status_code == 413


def test_malformed_is_400(client: TestClient, legacy_conn: CoverbaseEmulator) -> None:
    answer = post(client, b'{"event_id": "e", "data": 1}')
    assert answer.status_code == 400
    assert "no 'event_id' or no 'event_type'" in answer.json()["detail"]
    assert post(client, b"not json").status_code == 400


def test_other_event_types_are_acknowledged_and_ignored(client: TestClient, legacy_conn: CoverbaseEmulator) -> None:
    body = {"event_id": "cbevt_t", "event_type": "webhook.test", "occurred_at": int(time.time()), "data": {"test": 1}}
    answer = post(client, body)
    assert answer.status_code == 200
    assert answer.json()["status"] == "ignored"


def test_nothing_secret_is_logged(
    client: TestClient, legacy_conn: CoverbaseEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = legacy()
    raw, headers = signed(body)
    client.post(URL, content=raw, headers={**headers, "Coverbase-Signature": "0" * 64})
    client.post("/webhooks/missing", content=raw, headers=headers)
    client.post(URL, content=raw, headers={**headers, "Coverbase-Timestamp": "1"})
    assert "refused" in caplog.text
    for secret in (SECRET, headers["Coverbase-Signature"], legacy_conn.api_key):
        assert secret not in caplog.text


# ---------------------------------------------------------------------------- asset events (real DB)


def test_legacy_events_become_asset_events_once(
    airflow_db: None, client: TestClient, legacy_conn: CoverbaseEmulator
) -> None:
    done = coverbase_workflow_asset("quarterly-privacy-sweep", conn_id=CONN)
    failed = coverbase_workflow_asset("quarterly-privacy-sweep", failed=True, conn_id=CONN)
    checkpoint = coverbase_workflow_asset("quarterly-privacy-sweep", checkpoint="responses_aggregated", conn_id=CONN)
    add_assets(done, failed, checkpoint)
    before = {a.uri: len(events_of(a)) for a in (done, failed, checkpoint)}

    completed = legacy(status="completed", output={"vendors_processed": 38})
    reached = legacy("workflow.checkpoint", checkpoint="responses_aggregated", status="running")
    # Out of order: the run's completion arrives before its checkpoint; both still count once.
    first = post(client, completed)
    assert first.status_code == 200
    assert first.json()["status"] == "created"
    assert first.json()["asset_uri"] == done.uri
    assert post(client, reached).json()["status"] == "created"
    for _ in range(2):  # redeliveries (V3 re-stamps the timestamp; legacy sends none)
        assert post(client, completed).json() == {"status": "duplicate", "event_id": completed["event_id"]}
        assert post(client, reached, timestamp=False).json()["status"] == "duplicate"

    assert len(events_of(done)) == before[done.uri] + 1
    assert len(events_of(checkpoint)) == before[checkpoint.uri] + 1
    assert len(events_of(failed)) == before[failed.uri]
    extra = events_of(done)[-1]
    assert extra == {
        "event_id": completed["event_id"],
        "event_type": "workflow.completed",
        "workflow_run_id": "cbwfr_legacy_1",
        "workflow_name": "quarterly-privacy-sweep",
        "status": "completed",
        "checkpoint": None,
        "occurred_at": extra["occurred_at"],
        "output": {"vendors_processed": 38},
        "output_truncated": False,
    }
    assert events_of(checkpoint)[-1]["checkpoint"] == "responses_aggregated"

    fail = legacy("workflow.failed", status="failed", error="boom")
    assert post(client, fail).json()["asset_uri"] == failed.uri
    assert events_of(failed)[-1]["status"] == "failed"


def test_concurrent_deliveries_of_one_event_make_one_asset_event(
    airflow_db: None, client: TestClient, legacy_conn: CoverbaseEmulator
) -> None:
    asset = coverbase_workflow_asset("adhoc-campaign", conn_id=CONN)
    add_assets(asset)
    body = legacy(workflow="adhoc-campaign")
    raw, headers = signed(body)
    answers: list[str] = []
    barrier = threading.Barrier(4)

    def deliver() -> None:
        barrier.wait()
        answers.append(client.post(URL, content=raw, headers=headers).json()["status"])

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == ["created", "duplicate", "duplicate", "duplicate"]
    assert [e["event_id"] for e in events_of(asset)].count(body["event_id"]) == 1


def test_an_asset_no_dag_uses_gets_no_event(
    airflow_db: None, client: TestClient, legacy_conn: CoverbaseEmulator
) -> None:
    answer = post(client, legacy(workflow="nobody-listens"))
    assert (answer.status_code, answer.json()["status"]) == (200, "no_asset")


def _finished_run(emu: CoverbaseEmulator, workflow: str) -> str:
    emu.set_speed(0)
    response = httpx.post(
        f"{emu.base_url}/v1/workflows/{workflow}/run",
        json={"input": {}},
        headers={"Authorization": f"Bearer {emu.api_key}"},
        timeout=5,
    )
    response.raise_for_status()
    emu.advance(3600)
    return str(response.json()["workflow_run_id"])


def current(event_type: str, run_id: str) -> dict[str, Any]:
    return {
        "event_id": f"cbevt_{time.time_ns()}_{next(_counter)}",
        "event_type": event_type,
        "occurred_at": int(time.time()),
        "data": {"event_type": event_type, "workflow_run_id": run_id},
    }


def test_current_envelope_reads_the_run_for_its_name_and_status(
    airflow_db: None, client: TestClient, current_conn: CoverbaseEmulator
) -> None:
    emu = current_conn
    done = coverbase_workflow_asset("adhoc-campaign", conn_id=CONN)
    failed = coverbase_workflow_asset("always-fails", failed=True, conn_id=CONN)
    add_assets(done, failed)
    ok_run, bad_run = _finished_run(emu, "adhoc-campaign"), _finished_run(emu, "always-fails")

    answer = post(client, current("WorkflowRun.Completed", ok_run))
    assert (answer.status_code, answer.json()["status"], answer.json()["asset_uri"]) == (200, "created", done.uri)
    extra = events_of(done)[-1]
    assert (extra["workflow_name"], extra["status"], extra["workflow_run_id"]) == (
        "adhoc-campaign",
        "completed",
        ok_run,
    )
    assert post(client, current("WorkflowRun.Failed", bad_run)).json()["asset_uri"] == failed.uri
    assert events_of(failed)[-1]["status"] == "failed"

    # The API disagrees with the event: a genuine but wrong claim is acknowledged and dropped.
    wrong = post(client, current("WorkflowRun.Failed", ok_run))
    assert (wrong.status_code, wrong.json()["status"]) == (200, "ignored")
    assert "reports run" in wrong.json()["reason"]
    # A sample id (V3 test deliveries) is not found: acknowledged, nothing recorded.
    missing = post(client, current("WorkflowRun.Completed", "cbwfr_" + "0" * 32))
    assert (missing.status_code, missing.json()["status"]) == (200, "ignored")


def test_current_envelope_retry_later_when_the_api_cannot_confirm(
    airflow_db: None, client: TestClient, current_conn: CoverbaseEmulator
) -> None:
    emu = current_conn
    add_assets(coverbase_workflow_asset("stalled-forever", conn_id=CONN))
    emu.set_speed(0)
    running = httpx.post(
        f"{emu.base_url}/v1/workflows/stalled-forever/run",
        json={"input": {}},
        headers={"Authorization": f"Bearer {emu.api_key}"},
        timeout=5,
    ).json()["workflow_run_id"]
    answer = post(client, current("WorkflowRun.Completed", running))
    assert answer.status_code == 503
    assert "still reports run" in answer.json()["detail"]

    event = current("WorkflowRun.Completed", _finished_run(emu, "adhoc-campaign"))
    emu.fail_next(5, status=500)
    started = time.monotonic()
    answer = post(client, event)
    assert answer.status_code == 503  # one attempt only: the answer must come well within 10 s
    assert time.monotonic() - started < 5
    emu.clear_faults()
    assert post(client, event).json()["status"] == "created"  # Coverbase's retry goes through
