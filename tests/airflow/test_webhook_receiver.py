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

    from airflow_provider_coverbase.plugins import webhook_dedupe

    db.resetdb()
    webhook_dedupe._table_ready = False


@pytest.fixture
def client() -> Iterator[TestClient]:
    from airflow_provider_coverbase.plugins.webhook_receiver import create_app

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


def _started_run(emu: CoverbaseEmulator, workflow: str) -> str:
    """Start a run of ``workflow`` on the emulator, with its clock stopped; return the run's id."""
    emu.set_speed(0)
    response = httpx.post(
        f"{emu.base_url}/v1/workflows/{workflow}/run",
        json={"input": {}},
        headers={"Authorization": f"Bearer {emu.api_key}"},
        timeout=5,
    )
    response.raise_for_status()
    return str(response.json()["workflow_run_id"])


def _finished_run(emu: CoverbaseEmulator, workflow: str) -> str:
    run_id = _started_run(emu, workflow)
    emu.advance(3600)
    return run_id


def _watched_run(emu: CoverbaseEmulator, workflow: str, *, finished: bool) -> str:
    """Add the asset that ``workflow``'s run events update, then start a run of it (finished, or left running)."""
    add_assets(coverbase_workflow_asset(workflow, conn_id=CONN))
    return _finished_run(emu, workflow) if finished else _started_run(emu, workflow)


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
    running = _watched_run(emu, "stalled-forever", finished=False)
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


# ------------------------------------------------------------------ issue 15: the receiver attacked


def _reads(emu: CoverbaseEmulator, run_id: str) -> int:
    return sum(1 for r in emu.requests if r["method"] == "GET" and r["path"].endswith(f"/runs/{run_id}"))


def test_an_old_delivery_replayed_without_its_header_is_refused(
    airflow_db: None, client: TestClient, legacy_conn: CoverbaseEmulator
) -> None:
    # Item 1: Coverbase-Timestamp is not signed; leaving it out switched the freshness check off.
    asset = coverbase_workflow_asset("quarterly-privacy-sweep", conn_id=CONN)
    add_assets(asset)
    old = {**legacy(), "occurred_at": int(time.time()) - 3600}
    answer = post(client, old, timestamp=False)
    assert (answer.status_code, answer.json()) == (401, {"detail": "invalid signature"})
    assert old["event_id"] not in {e["event_id"] for e in events_of(asset)}
    fresh = legacy()
    assert post(client, fresh, timestamp=False).json()["status"] == "created"  # legacy: no header, body fresh


def test_a_deep_output_is_stored_cut_with_a_marker(
    airflow_db: None, client: TestClient, legacy_conn: CoverbaseEmulator
) -> None:
    # Item 2: an output ~255 levels deep (2 KB) was stored whole and broke GET /api/v2/assets/events.
    from airflow.api_fastapi.core_api.datamodels.assets import AssetEventResponse
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    asset = coverbase_workflow_asset("deep-output", conn_id=CONN)
    add_assets(asset)
    deep: Any = 1
    for _ in range(255):
        deep = {"a": deep}
    body = legacy(workflow="deep-output", output=deep)
    answer = post(client, body)
    assert (answer.status_code, answer.json()["status"]) == (200, "created")
    extra = events_of(asset)[-1]
    assert (extra["output"], extra["output_truncated"]) == (None, True)
    with create_session() as session:  # what Airflow's own API does with the row: it reads back
        row = session.scalar(select(AssetEvent).where(AssetEvent.id == answer.json()["asset_event_id"]))
        AssetEventResponse.model_validate(row, from_attributes=True)


@pytest.mark.parametrize(
    "raw",
    [
        # Item 3: RecursionError, OverflowError -> 500 before.
        b'{"event_id":"cbevt_deep","event_type":"workflow.completed","workflow_run_id":"r","data":'
        + b'{"a":' * 990
        + b"1"
        + b"}" * 991,
        b'{"event_id":"cbevt_big","event_type":"workflow.completed","workflow_run_id":"r","occurred_at":1'
        + b"0" * 400
        + b',"data":{"workflow_name":"w"}}',
        # Item 4: NaN/Infinity (PostgreSQL refused them: 500).
        b'{"event_id":"cbevt_nan","event_type":"workflow.completed","workflow_run_id":"r","data":'
        b'{"workflow_name":"quarterly-privacy-sweep","output":{"x":NaN}}}',
        # Items 4 and 7: an id over 250 characters (PostgreSQL: 500), a run id with CR/LF (503).
        json.dumps(
            {"event_id": "cbevt_" + "1" * 250, "event_type": "workflow.completed", "workflow_run_id": "r", "data": {}}
        ).encode(),
    ],
    ids=["nested-990", "occurred-at-overflow", "nan", "long-event-id"],
)
def test_signed_bodies_that_can_never_be_stored_get_400(
    airflow_db: None, client: TestClient, legacy_conn: CoverbaseEmulator, raw: bytes
) -> None:
    answer = client.post(URL, content=raw, headers=signed(raw)[1])
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"]


def test_an_asset_uri_over_airflows_limit_is_400(
    airflow_db: None, client: TestClient, legacy_conn: CoverbaseEmulator
) -> None:
    # Item 3: a workflow name whose asset URI is over 1,500 characters: 500 before.
    answer = post(client, legacy(workflow="w" * 1500))
    assert answer.status_code == 400, answer.text
    assert "asset cannot exist in Airflow" in answer.json()["detail"]


def test_a_run_id_with_cr_lf_is_400_and_never_read(client: TestClient, current_conn: CoverbaseEmulator) -> None:
    # Item 7: the run id reached the URL of a run read, which failed: 503, retried by Coverbase for a day.
    current_conn.clear_requests()
    answer = post(client, current("WorkflowRun.Completed", "cbwr_1\r\nX-Injected: yes"))
    assert answer.status_code == 400, answer.text
    assert "workflow_run_id" in answer.json()["detail"]
    assert current_conn.requests == []


def test_every_401_is_answered_at_the_same_time(
    client: TestClient, legacy_conn: CoverbaseEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Item 5: a 401 for an unknown connection came 0.5-1.9 ms later than one for a bad signature.
    from airflow_provider_coverbase.plugins import webhook_receiver as receiver

    now = [1000.0]
    answered: list[float] = []

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        answered.append(now[0])

    def clock() -> float:
        # Every call costs fake time, so the paths that do more (a connection lookup) take longer.
        now[0] += 0.001
        return now[0]

    monkeypatch.setattr(receiver, "_clock", clock)
    monkeypatch.setattr(receiver, "_sleep", sleep)
    body = legacy()
    raw, headers = signed(body)
    starts = []
    for url, hdrs in [
        ("/webhooks/no_such_conn", headers),
        (URL, signed(body, secret=SECRET + "x")[1]),
        (URL, {**headers, "Coverbase-Timestamp": str(int(time.time()) - 3600)}),
    ]:
        starts.append(now[0])
        answer = client.post(url, content=raw, headers=hdrs)
        assert (answer.status_code, answer.json()) == (401, {"detail": "invalid signature"})
    assert len(answered) == 3
    # Each answer went out exactly UNAUTHORIZED_ANSWER_SECONDS after its request's first clock reading.
    assert [round(a - s, 6) for a, s in zip(answered, starts, strict=True)] == [
        round(receiver.UNAUTHORIZED_ANSWER_SECONDS + 0.001, 6)
    ] * 3


def test_a_connection_without_a_secret_and_one_with_a_short_secret_answer_alike(
    client: TestClient,
    coverbase_emulator: CoverbaseEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Items 5 and 8: same 401, and the receiver's log says what to fix for a short secret.
    from airflow_provider_coverbase.plugins import webhook_receiver as receiver

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(receiver, "_sleep", sleep)
    caplog.set_level(logging.WARNING)
    for extra in ({}, {"webhook_secret": "short"}):
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", conn_value(coverbase_emulator, **extra))
        raw, headers = signed(legacy(), secret="short")
        answer = client.post(URL, content=raw, headers=headers)
        assert (answer.status_code, answer.json()) == (401, {"detail": "invalid signature"})
    assert len(slept) == 2
    assert "webhook_secret: Value error, must be at least 16 characters (this one has 5;" in caplog.text
    assert "'short'" not in caplog.text


def test_replays_of_decided_deliveries_cost_no_request_to_coverbase(
    airflow_db: None, client: TestClient, current_conn: CoverbaseEmulator
) -> None:
    # Item 6: every replay of a genuine delivery that ended unrecorded read the run again.
    emu = current_conn
    done = _watched_run(emu, "adhoc-campaign", finished=True)
    unknown = "cbwr_" + "0" * 32
    cases = {
        "unknown run": (current("WorkflowRun.Completed", unknown), unknown, "ignored"),
        "API disagrees": (current("WorkflowRun.Failed", done), done, "ignored"),
        "no DAG uses the asset": (
            current("WorkflowRun.Completed", _finished_run(emu, "vendor%20sweep%2Feu")),
            None,
            "no_asset",
        ),
    }
    for name, (event, run_id, first_status) in cases.items():
        run_id = run_id or event["data"]["workflow_run_id"]
        emu.clear_requests()
        first = post(client, event)
        assert (first.status_code, first.json()["status"]) == (200, first_status), name
        for _ in range(5):
            event["occurred_at"] = int(time.time())  # a replay with a fresh timestamp, as V3 retries
            again = post(client, event)
            assert (again.status_code, again.json()) == (200, {"status": "duplicate", "event_id": event["event_id"]})
        assert _reads(emu, run_id) == 1, name


def test_run_reads_are_rate_limited_per_connection(
    airflow_db: None, client: TestClient, current_conn: CoverbaseEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Item 6: undecided deliveries (the run still running) may be replayed; each read is budgeted.
    from airflow_provider_coverbase.client import RequestBudget
    from airflow_provider_coverbase.plugins import webhook_receiver as receiver

    emu = current_conn
    running = _started_run(emu, "stalled-forever")
    clock = [0.0]
    budget = RequestBudget(receiver.RUN_READS_PER_SECOND, burst=3, clock=lambda: clock[0])
    monkeypatch.setitem(receiver._read_budgets, CONN.casefold(), budget)
    emu.clear_requests()
    event = current("WorkflowRun.Completed", running)
    answers = [post(client, event) for _ in range(5)]
    assert [a.status_code for a in answers] == [503, 503, 503, 429, 429]
    assert answers[-1].headers["Retry-After"] == "1"
    assert _reads(emu, running) == 3
    # Case variants of the connection id share the budget (environment lookups ignore case).
    upper = client.post(f"/webhooks/{CONN.upper()}", content=signed(event)[0], headers=signed(event)[1])
    assert upper.status_code == 429
    clock[0] += 1 / receiver.RUN_READS_PER_SECOND * 1.1
    assert post(client, event).status_code == 503
    assert _reads(emu, running) == 4


async def test_a_half_sent_body_is_answered_408(monkeypatch: pytest.MonkeyPatch) -> None:
    # Item 8: a body that never completes kept its connection open (20 s and more).
    import asyncio

    from airflow_provider_coverbase.plugins import webhook_receiver as receiver

    monkeypatch.setattr(receiver, "BODY_READ_TIMEOUT", 0.05)
    from fastapi import Request

    async def receive_message() -> dict[str, Any]:
        if not sent:
            sent.append(True)
            return {"type": "http.request", "body": b'{"event_id":', "more_body": True}
        await asyncio.Event().wait()  # the rest never comes
        raise AssertionError("unreachable")

    sent: list[bool] = []
    scope = {"type": "http", "method": "POST", "path": URL, "headers": [(b"content-length", b"100")]}
    answer = await receiver.receive_webhook(CONN, Request(scope, receive_message))
    assert answer.status_code == 408
    assert answer.headers["connection"] == "close"  # not kept alive: the server closes it at once
    assert json.loads(bytes(answer.body)) == {"detail": "the body did not arrive within 0.05 s"}
