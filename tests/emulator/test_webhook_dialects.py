"""Webhooks per dialect: retry rules, the management endpoints (PATCH, /test, /deliveries), test controls.

Retry waits are not really slept: the emulator's clock is asked how long to wait for each emulated
delay, and the test's clock answers "1 ms" and records what was asked.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_coverbase.testing import CoverbaseEmulator
from airflow_provider_coverbase.testing.config import DEFAULT_WEBHOOK_RETRY_DELAYS, LEGACY_WEBHOOK_RETRY_DELAYS

from .conftest import Receiver, client_for

SECRET = "whsec_emulator_test_secret_0123"
OTHER = "whsec_someone_else_entirely_987"
LEGACY_EVENTS = ["workflow.checkpoint", "workflow.completed", "workflow.failed"]
CURRENT_EVENTS = ["WorkflowRun.Created", "WorkflowRun.Completed", "WorkflowRun.Failed"]


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def waits(
    coverbase_emulator: CoverbaseEmulator, coverbase_emulator_current: CoverbaseEmulator
) -> Iterator[list[float]]:
    """Emulated retry waits asked for by either emulator; each really lasts 1 ms."""
    asked: list[float] = []

    def real_seconds(emulated: float, floor: float = 0.01) -> float:
        asked.append(emulated)
        return 0.001

    patched = [coverbase_emulator.state.clock, coverbase_emulator_current.state.clock]
    for clock in patched:
        clock.real_seconds = real_seconds  # type: ignore[method-assign]
    yield asked
    for clock in patched:
        del clock.real_seconds


def subscribe(emu: CoverbaseEmulator, receiver: Receiver, events: list[str] | None = None) -> dict[str, Any]:
    if events is None:
        events = LEGACY_EVENTS if emu.dialect == "legacy" else CURRENT_EVENTS
    with client_for(emu) as client:
        response = client.post("/v1/webhooks", json={"url": receiver.url, "events": events, "secret": SECRET})
    assert response.status_code == 201, response.text
    return dict(response.json())


def start(emu: CoverbaseEmulator, workflow: str = "adhoc-campaign") -> str:
    with client_for(emu) as client:
        return str(client.post(f"/v1/workflows/{workflow}/run", json={"input": {}}).json()["workflow_run_id"])


def bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(d.body) for d in receiver.deliveries]


# ---- retries ---------------------------------------------------------------------------


def test_legacy_retries_with_exponential_backoff_for_24_hours(
    coverbase_emulator: CoverbaseEmulator, receiver: Receiver, waits: list[float]
) -> None:
    emu = coverbase_emulator
    receiver.fail_first, receiver.fail_status = 10_000, 400  # the legacy rule retries any failure
    subscribe(emu, receiver, ["workflow.failed"])
    start(emu, "always-fails")
    emu.wait_for(lambda: len(emu.webhook_deliveries) == len(LEGACY_WEBHOOK_RETRY_DELAYS) + 1, timeout=10)
    attempts = emu.webhook_deliveries
    assert [a["attempt"] for a in attempts] == list(range(1, 23))
    assert len({a["event_id"] for a in attempts}) == 1
    assert waits == list(LEGACY_WEBHOOK_RETRY_DELAYS)
    assert waits[:3] == [10.0, 20.0, 40.0]
    assert all(later >= earlier for earlier, later in itertools.pairwise(waits))
    assert 24 * 3600 <= sum(waits) < 26 * 3600


@pytest.mark.parametrize(("status", "attempts"), [(400, 1), (404, 1), (301, 1), (408, 6), (429, 6), (503, 6)])
def test_current_retries_only_timeouts_408_429_and_5xx(
    coverbase_emulator_current: CoverbaseEmulator, receiver: Receiver, waits: list[float], status: int, attempts: int
) -> None:
    emu = coverbase_emulator_current
    receiver.fail_first, receiver.fail_status = 10_000, status
    subscribe(emu, receiver, ["WorkflowRun.Failed"])
    start(emu, "always-fails")
    emu.wait_for(lambda: len(emu.webhook_deliveries) == attempts, timeout=5)
    emu.advance(1)
    log = emu.webhook_deliveries
    assert [a["status"] for a in log] == ["error"] * attempts
    assert {a["response_status"] for a in log} == {status}
    assert waits == list(DEFAULT_WEBHOOK_RETRY_DELAYS[: attempts - 1])
    if attempts == 6:
        assert waits == [4.0, 16.0, 64.0, 240.0, 240.0]


# ---- PATCH -----------------------------------------------------------------------------


def test_patch_changes_only_given_fields_and_a_new_secret_signs_at_once(
    coverbase_emulator_current: CoverbaseEmulator, receiver: Receiver
) -> None:
    emu = coverbase_emulator_current
    hook = subscribe(emu, receiver, ["WorkflowRun.Created"])
    path = f"/v1/webhooks/{hook['id']}"
    with client_for(emu) as client, client_for(emu, emu.other_api_key) as other:
        described = client.patch(path, json={"description": "GRC", "url": None})
        assert described.status_code == 200
        assert described.json() == {**hook, "description": "GRC"}
        assert client.patch(path, json={"secret": "short"}).json()["detail"]["code"] == "weak_secret"
        assert client.patch(path, json={"url": "https://10.1.2.3/x"}).json()["detail"]["code"] == "invalid_url"
        bad_events = client.patch(path, json={"events": ["workflow.completed"]})
        assert (bad_events.status_code, bad_events.json()["detail"]["code"]) == (422, "invalid_event_types")
        assert other.patch(path, json={"enabled": False}).status_code == 404
        assert client.patch("/v1/webhooks/cbwh_nope", json={}).json()["detail"]["code"] == "webhook_not_found"
        changed = client.patch(path, json={"secret": OTHER, "events": ["WorkflowRun.Created", "WorkflowRun.Failed"]})
        assert changed.json()["events"] == ["WorkflowRun.Created", "WorkflowRun.Failed"]
        assert client.patch(path, json={"description": None}).json()["description"] is None  # V3 clears it
        assert client.get("/v1/webhooks").json()["data"][0]["description"] is None
    start(emu)
    emu.wait_for(lambda: len(receiver.deliveries) >= 1)
    delivery = receiver.deliveries[0]
    assert delivery.headers["coverbase-signature"] == signature(OTHER, delivery.body)


def test_legacy_patch_keeps_the_description_on_null_and_disabling_stops_deliveries(
    coverbase_emulator: CoverbaseEmulator, receiver: Receiver
) -> None:
    emu = coverbase_emulator
    hook = subscribe(emu, receiver)
    with client_for(emu) as client:
        client.patch(f"/v1/webhooks/{hook['id']}", json={"description": "kept"}).raise_for_status()
        patched = client.patch(f"/v1/webhooks/{hook['id']}", json={"description": None, "enabled": False}).json()
    assert (patched["description"], patched["enabled"]) == ("kept", False)
    emu.set_speed(0)
    start(emu)
    emu.advance(10)
    emu.wait_for(lambda: not emu.state.webhooks.pending_runs, timeout=2)
    assert receiver.deliveries == []


# ---- /test -----------------------------------------------------------------------------


def test_current_test_delivery_is_enqueued_carries_the_payload_and_is_never_retried(
    coverbase_emulator_current: CoverbaseEmulator, receiver: Receiver, waits: list[float]
) -> None:
    emu = coverbase_emulator_current
    receiver.fail_first = 10  # the receiver answers 500: a real event would be retried
    hook = subscribe(emu, receiver, ["WorkflowRun.Completed"])
    with client_for(emu) as client:
        test = {"event_type": "Anything.Goes", "payload": {"a": 1}}
        answer = client.post(f"/v1/webhooks/{hook['id']}/test", json=test)
        default = client.post(f"/v1/webhooks/{hook['id']}/test")
    assert answer.status_code == 200
    body = answer.json()
    assert body["event_id"].startswith("cbevt_test_")
    assert (body["delivered"], body["response_status"], body["response_time_ms"]) == (True, None, None)
    emu.wait_for(lambda: len(emu.webhook_deliveries) == 2)
    sent = {b["event_id"]: b for b in bodies(receiver)}
    assert sent[body["event_id"]] == {
        "event_id": body["event_id"],
        "event_type": "Anything.Goes",
        "occurred_at": sent[body["event_id"]]["occurred_at"],
        "data": {"a": 1},
    }
    assert sent[default.json()["event_id"]]["event_type"] == "webhook.test"
    assert sent[default.json()["event_id"]]["data"] == {"test": True}
    assert waits == []  # no retry


def test_legacy_test_delivery_is_synchronous_and_needs_a_subscribed_type(
    coverbase_emulator: CoverbaseEmulator, receiver: Receiver
) -> None:
    emu = coverbase_emulator
    hook = subscribe(emu, receiver, ["workflow.completed"])
    with client_for(emu) as client:
        refused = client.post(f"/v1/webhooks/{hook['id']}/test", json={"event_type": "vendor.created"})
        answer = client.post(f"/v1/webhooks/{hook['id']}/test", json={"event_type": "workflow.completed"})
    assert (refused.status_code, refused.json()["detail"]["code"]) == (400, "invalid_event_type")
    assert answer.json()["delivered"] is True
    assert answer.json()["response_status"] == 200
    assert isinstance(answer.json()["response_time_ms"], int)
    (delivery,) = receiver.deliveries  # already there when the answer came
    envelope = json.loads(delivery.body)
    assert set(envelope) == {"event_id", "event_type", "occurred_at", "data", "workflow_run_id"}
    assert envelope["workflow_run_id"] is None


# ---- /deliveries -----------------------------------------------------------------------


def test_delivery_history_shape_order_clamping_and_paging(
    coverbase_emulator_current: CoverbaseEmulator, receiver: Receiver
) -> None:
    emu = coverbase_emulator_current
    hook = subscribe(emu, receiver, ["WorkflowRun.Created"])
    for _ in range(3):
        start(emu)
    emu.wait_for(lambda: len(emu.webhook_deliveries) == 3)
    path = f"/v1/webhooks/{hook['id']}/deliveries"
    with client_for(emu) as client, client_for(emu, emu.other_api_key) as other:
        page = client.get(path).json()
        assert (page["total"], page["limit"], page["offset"]) == (3, 50, 0)
        item = page["data"][0]
        assert set(item) == {
            "id",
            "webhook_id",
            "event_id",
            "event_type",
            "status",
            "response_status",
            "response_time_ms",
            "error",
            "payload",
            "attempted_at",
            "created_at",
        }
        assert item["id"].startswith("cbwhd_")
        assert (item["status"], item["response_status"]) == ("delivered", 200)
        assert item["event_type"] == "WorkflowRun.Created"
        assert item["payload"]["event_type"] == "WorkflowRun.Created"
        newest_first = [d["event_id"] for d in reversed(emu.webhook_deliveries)]
        assert [d["event_id"] for d in page["data"]] == newest_first
        assert client.get(path, params={"limit": 0}).json()["limit"] == 1
        assert client.get(path, params={"limit": 1000}).json()["limit"] == 100
        clamped = client.get(path, params={"offset": -5, "limit": 2}).json()
        assert (clamped["offset"], len(clamped["data"])) == (0, 2)
        rest = client.get(path, params={"offset": 2, "limit": 2}).json()
        assert [d["event_id"] for d in rest["data"]] == newest_first[2:]
        assert other.get(path).status_code == 404


def test_legacy_has_no_delivery_history(coverbase_emulator: CoverbaseEmulator, receiver: Receiver) -> None:
    hook = subscribe(coverbase_emulator, receiver)
    with client_for(coverbase_emulator) as client:
        assert client.get(f"/v1/webhooks/{hook['id']}/deliveries").status_code == 404


# ---- test controls ---------------------------------------------------------------------


def test_redeliver_again_unsigned_or_with_another_secret(
    emulator_of_each_dialect: CoverbaseEmulator, receiver: Receiver
) -> None:
    emu = emulator_of_each_dialect
    subscribe(emu, receiver, ["workflow.failed"] if emu.dialect == "legacy" else ["WorkflowRun.Failed"])
    run_id = start(emu, "always-fails")
    emu.wait_for(lambda: len(receiver.deliveries) == 1)
    (event,) = emu.webhook_events
    assert event["workflow_run_id"] == run_id
    again = emu.redeliver(event["event_id"])
    unsigned = emu.redeliver(event["event_id"], signature="none")
    forged = emu.redeliver(event["event_id"], signature="secret", secret=OTHER)
    assert [again["attempt"], unsigned["attempt"], forged["attempt"]] == [2, 3, 4]
    assert again["status"] == "delivered"
    _, second, third, fourth = receiver.deliveries
    assert {json.loads(d.body)["event_id"] for d in receiver.deliveries} == {event["event_id"]}
    assert second.headers["coverbase-signature"] == signature(SECRET, second.body)
    assert "coverbase-signature" not in third.headers
    assert fourth.headers["coverbase-signature"] == signature(OTHER, fourth.body)
    assert fourth.headers["coverbase-signature"] != signature(SECRET, fourth.body)
    with pytest.raises(RuntimeError, match="404"):
        emu.redeliver("cbevt_never_raised")


def test_next_deliveries_unsigned_then_signed_again(
    coverbase_emulator_current: CoverbaseEmulator, receiver: Receiver
) -> None:
    emu = coverbase_emulator_current
    subscribe(emu, receiver, ["WorkflowRun.Created"])
    emu.sign_next_deliveries(1, signature="none")
    start(emu)
    emu.wait_for(lambda: len(receiver.deliveries) == 1)
    emu.sign_next_deliveries(1, signature="secret", secret=OTHER)
    start(emu)
    emu.wait_for(lambda: len(receiver.deliveries) == 2)
    start(emu)
    emu.wait_for(lambda: len(receiver.deliveries) == 3)
    emu.wait_for(lambda: len(emu.webhook_deliveries) == 3)  # recorded once the answer is back
    unsigned, forged, valid = receiver.deliveries
    assert "coverbase-signature" not in unsigned.headers
    assert forged.headers["coverbase-signature"] == signature(OTHER, forged.body)
    assert valid.headers["coverbase-signature"] == signature(SECRET, valid.body)
    assert [a["signature"] for a in emu.webhook_deliveries] == ["none", "secret", "valid"]


def test_hold_and_release_delivers_out_of_order(coverbase_emulator: CoverbaseEmulator, receiver: Receiver) -> None:
    emu = coverbase_emulator
    subscribe(emu, receiver)
    emu.set_speed(0)
    emu.hold_deliveries()
    run_id = start(emu)
    emu.advance(10)
    emu.wait_for(lambda: len(emu.held_deliveries) == 3)
    assert receiver.deliveries == []
    released = emu.release_deliveries("reverse")
    assert [e["event_type"] for e in released] == ["workflow.completed", "workflow.checkpoint", "workflow.checkpoint"]
    sent = bodies(receiver)
    assert [b["event_type"] for b in sent] == ["workflow.completed", "workflow.checkpoint", "workflow.checkpoint"]
    assert [b["data"].get("checkpoint") for b in sent] == [None, "campaign_closed", "campaign_sent"]
    assert {b["workflow_run_id"] for b in sent} == {run_id}
    # Released: later events flow again.
    start(emu)
    emu.advance(10)
    emu.wait_for(lambda: len(receiver.deliveries) == 6)


def test_release_in_an_explicit_order(coverbase_emulator_current: CoverbaseEmulator, receiver: Receiver) -> None:
    emu = coverbase_emulator_current
    subscribe(emu, receiver, ["WorkflowRun.Created", "WorkflowRun.Completed"])
    emu.set_speed(0)
    emu.hold_deliveries()
    start(emu)
    emu.advance(10)
    emu.wait_for(lambda: len(emu.held_deliveries) == 2)
    created, completed = (e["event_id"] for e in emu.held_deliveries)
    emu.release_deliveries([completed])
    assert [b["event_id"] for b in bodies(receiver)] == [completed]
    assert [e["event_id"] for e in emu.held_deliveries] == [created]
    emu.release_deliveries([created])
    assert [b["event_id"] for b in bodies(receiver)] == [completed, created]
    with httpx.Client(base_url=emu.base_url) as admin:
        assert admin.post("/_emulator/webhooks/release", json={"order": ["cbevt_x"]}).status_code == 422
        assert admin.post("/_emulator/webhooks/release", json={"order": "sideways"}).status_code == 422
    emu.hold_deliveries()
    with httpx.Client(base_url=emu.base_url) as admin:
        assert admin.post("/_emulator/webhooks/release", json={"order": ["cbevt_x"]}).status_code == 422
    start(emu)
    emu.advance(10)
    emu.wait_for(lambda: len(emu.held_deliveries) == 2)  # a refused release keeps holding
    assert len(receiver.deliveries) == 2
