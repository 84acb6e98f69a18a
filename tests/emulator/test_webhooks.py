"""Webhooks: registration rules, signed deliveries, retries with backoff, both dialects."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from airflow_provider_coverbase.testing import CoverbaseEmulator

from .conftest import Receiver, client_for

SECRET = "whsec_emulator_test_secret_0123"


def verify(delivery_headers: dict[str, str], body: bytes) -> bool:
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, delivery_headers["coverbase-signature"])


def test_registration_validation_order_and_codes(client: httpx.Client) -> None:
    weak = client.post("/v1/webhooks", json={"url": "ftp://x", "events": ["nope"], "secret": "short"})
    assert (weak.status_code, weak.json()["detail"]["code"]) == (400, "weak_secret")
    for url in ("ftp://127.0.0.1/x", "http://example.com/hook", "https://10.0.0.5/hook", "https://u:p@example.com"):
        bad = client.post("/v1/webhooks", json={"url": url, "events": [], "secret": SECRET})
        assert (bad.status_code, bad.json()["detail"]["code"]) == (400, "invalid_url"), url
    unknown = client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h", "events": ["x.y"], "secret": SECRET})
    assert (unknown.status_code, unknown.json()["detail"]["code"]) == (400, "invalid_event_type")
    missing = client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h"})
    assert missing.status_code == 422


def test_current_rejects_unknown_events_with_422(current_client: httpx.Client) -> None:
    response = current_client.post(
        "/v1/webhooks",
        json={
            "url": "https://hooks.example.com/c",
            "events": ["WorkflowRun.Completed", "workflow.completed"],
            "secret": SECRET,
        },
    )
    assert response.status_code == 422
    assert response.json()["detail"] == {
        "code": "invalid_event_types",
        "message": "Unsupported event type(s): workflow.completed",
    }


def test_create_list_delete(coverbase_emulator_current: CoverbaseEmulator) -> None:
    emu = coverbase_emulator_current
    with client_for(emu) as client, client_for(emu, emu.other_api_key) as other:
        created = client.post(
            "/v1/webhooks",
            json={
                "url": "http://localhost:9/h",
                "events": ["WorkflowRun.Failed"],
                "secret": SECRET,
                "description": "d",
            },
        )
        assert created.status_code == 201
        body = created.json()
        assert body["id"].startswith("cbwh_") and len(body["id"]) == 37
        assert "secret" not in body
        assert (body["enabled"], body["delivery_count"], body["last_delivery_status"]) == (True, 0, None)
        assert client.get("/v1/webhooks").json() == {"data": [body]}
        assert other.get("/v1/webhooks").json() == {"data": []}
        assert other.delete(f"/v1/webhooks/{body['id']}").status_code == 404
        deleted = client.delete(f"/v1/webhooks/{body['id']}")
        assert (deleted.status_code, deleted.content) == (204, b"")
        assert client.get("/v1/webhooks").json() == {"data": []}
        assert client.delete(f"/v1/webhooks/{body['id']}").json()["detail"]["code"] == "webhook_not_found"


def test_legacy_deliveries_are_signed_and_retried(coverbase_emulator: CoverbaseEmulator, receiver: Receiver) -> None:
    emu = coverbase_emulator
    receiver.fail_first = 1
    with client_for(emu) as client:
        hook = client.post(
            "/v1/webhooks",
            json={
                "url": receiver.url,
                "events": ["workflow.checkpoint", "workflow.completed", "workflow.failed"],
                "secret": SECRET,
            },
        )
        assert hook.status_code == 201
        run_id = client.post("/v1/workflows/adhoc-campaign/run", json={"input": {}}).json()["workflow_run_id"]
        # 2 checkpoints + completed = 3 events, plus one retry of the first failed attempt
        emu.wait_for(lambda: sum(d.answered == 200 for d in receiver.deliveries) >= 3, timeout=5)

    first, retry = receiver.deliveries[0], None
    assert first.answered == 500
    for delivery in receiver.deliveries:
        assert verify(delivery.headers, delivery.body)
        assert delivery.headers["content-type"] == "application/json"
        envelope = json.loads(delivery.body)
        assert set(envelope) == {"event_id", "event_type", "occurred_at", "data", "workflow_run_id"}
        assert envelope["workflow_run_id"] == run_id
        assert envelope["data"]["workflow_run_id"] == run_id
        # V0 documents only Coverbase-Signature: no timestamp and no event-id/event-type headers.
        assert {h for h in delivery.headers if "coverbase" in h} == {"coverbase-signature"}
        if delivery is not first and envelope["event_id"] == json.loads(first.body)["event_id"]:
            retry = delivery
    assert retry is not None, "the failed delivery was retried with the same event_id"
    events = {json.loads(d.body)["event_type"]: json.loads(d.body) for d in receiver.deliveries}
    assert set(events) == {"workflow.checkpoint", "workflow.completed"}
    checkpoints = {
        json.loads(d.body)["data"]["checkpoint"]
        for d in receiver.deliveries
        if json.loads(d.body)["event_type"] == "workflow.checkpoint"
    }
    assert checkpoints == {"campaign_sent", "campaign_closed"}
    assert events["workflow.completed"]["data"]["output"] == {"recipients": 12}
    emu.wait_for(lambda: sum(a["status"] == "delivered" for a in emu.webhook_deliveries) >= 3)
    log = emu.webhook_deliveries
    assert [a["status"] for a in log].count("error") == 1
    assert any(a["attempt"] == 2 for a in log)


def test_current_workflow_run_events(coverbase_emulator_current: CoverbaseEmulator, receiver: Receiver) -> None:
    emu = coverbase_emulator_current
    with client_for(emu) as client:
        client.post(
            "/v1/webhooks",
            json={
                "url": receiver.url,
                "events": ["WorkflowRun.Created", "WorkflowRun.Failed", "WorkflowRun.Updated"],
                "secret": SECRET,
            },
        ).raise_for_status()
        run_id = client.post("/v1/workflows/always-fails/run", json={"input": {"a": 1}}).json()["workflow_run_id"]
        emu.wait_for(lambda: len(receiver.deliveries) >= 3, timeout=5)
        emu.wait_for(lambda: len(emu.webhook_deliveries) >= 3)
        hooks = client.get("/v1/webhooks").json()["data"]
    envelopes = [json.loads(d.body) for d in receiver.deliveries]
    assert all(verify(d.headers, d.body) for d in receiver.deliveries)
    assert {e["event_type"] for e in envelopes} == {"WorkflowRun.Created", "WorkflowRun.Updated", "WorkflowRun.Failed"}
    for delivery in receiver.deliveries:
        envelope = json.loads(delivery.body)
        assert delivery.headers["x-coverbase-event-id"] == envelope["event_id"]
        assert delivery.headers["x-coverbase-event-type"] == envelope["event_type"]
        assert delivery.headers["coverbase-timestamp"] == str(envelope["occurred_at"])
    for envelope in envelopes:
        assert set(envelope) == {"event_id", "event_type", "occurred_at", "data"}
        assert envelope["data"]["workflow_run_id"] == run_id
        assert envelope["data"]["event_type"] == envelope["event_type"]
        assert envelope["event_id"].startswith("cbevt_")
    created = next(e for e in envelopes if e["event_type"] == "WorkflowRun.Created")
    assert created["data"]["input"] == {"a": 1}
    updated = next(e for e in envelopes if e["event_type"] == "WorkflowRun.Updated")
    assert updated["data"]["field_diffs"]["status"] == {"old_value": "started", "new_value": "failed"}
    assert hooks[0]["delivery_count"] >= 3
    assert hooks[0]["last_delivery_status"] == "delivered"


def test_no_delivery_for_unsubscribed_events_or_other_orgs(
    coverbase_emulator: CoverbaseEmulator, receiver: Receiver
) -> None:
    emu = coverbase_emulator
    with client_for(emu) as client, client_for(emu, emu.other_api_key) as other:
        client.post(
            "/v1/webhooks", json={"url": receiver.url, "events": ["workflow.failed"], "secret": SECRET}
        ).raise_for_status()
        other.post("/v1/workflows/always-fails/run", json={"input": {}}).raise_for_status()
        client.post("/v1/workflows/adhoc-campaign/run", json={"input": {}}).raise_for_status()
        mine = client.post("/v1/workflows/always-fails/run", json={"input": {}}).json()["workflow_run_id"]
        emu.wait_for(lambda: len(receiver.deliveries) >= 1, timeout=5)
        emu.advance(10)
        emu.wait_for(lambda: len(emu.webhook_deliveries) >= 1)
    assert [json.loads(d.body)["workflow_run_id"] for d in receiver.deliveries] == [mine]


def test_disabled_subscription_receives_nothing(coverbase_emulator: CoverbaseEmulator, receiver: Receiver) -> None:
    emu = coverbase_emulator
    emu.set_speed(0)
    with client_for(emu) as client:
        client.post(
            "/v1/webhooks",
            json={"url": receiver.url, "events": ["workflow.completed"], "secret": SECRET, "enabled": False},
        ).raise_for_status()
        client.post("/v1/workflows/adhoc-campaign/run", json={"input": {}}).raise_for_status()
        emu.advance(10)
    time.sleep(0.1)  # a few ticker periods
    assert receiver.deliveries == []
