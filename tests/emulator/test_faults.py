"""Fault injection, request log, reset and the /_emulator admin API."""

from __future__ import annotations

import time

import httpx
import pytest

from airflow_provider_coverbase.testing import CoverbaseEmulator

from .conftest import client_for


def test_fail_next_n_requests(coverbase_emulator: CoverbaseEmulator, client: httpx.Client) -> None:
    coverbase_emulator.fail_next(2, status=503, retry_after=7)
    for _ in range(2):
        response = client.get("/v1/utils/authtest")
        assert response.status_code == 503
        assert response.json()["detail"]["code"] == "service_unavailable"
        assert response.json()["retry_after"] == 7
        assert response.headers["Retry-After"] == "7"
    assert client.get("/v1/utils/authtest").status_code == 200


def test_fail_next_path_prefix_and_nothing_committed(
    coverbase_emulator: CoverbaseEmulator, client: httpx.Client
) -> None:
    coverbase_emulator.fail_next(1, status=429, path_prefix="/v1/workflows/")
    assert client.get("/v1/utils/authtest").status_code == 200
    limited = client.post("/v1/workflows/adhoc-campaign/run", json={"input": {}})
    assert limited.status_code == 429
    assert limited.json()["detail"]["code"] == "rate_limited"
    assert coverbase_emulator.run_count() == 0


def test_drop_after_commit_is_a_transport_error_but_the_run_exists(
    coverbase_emulator: CoverbaseEmulator, client: httpx.Client
) -> None:
    # List runs is V2+: the legacy dialect serves it on request.
    coverbase_emulator.set_variants(legacy_v2_endpoints=True)
    emu = coverbase_emulator
    emu.drop_next_response_after_commit()
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/v1/workflows/adhoc-campaign/run", json={"input": {}}, headers={"Idempotency-Key": "lost"})
    assert emu.run_count() == 1
    # the retry with the same key sees the committed run, and the connection pool recovers
    again = client.post("/v1/workflows/adhoc-campaign/run", json={"input": {}}, headers={"Idempotency-Key": "lost"})
    assert again.status_code == 409
    listed = client.get("/v1/workflows/runs").json()
    assert listed["data"][0]["workflow_run_id"] == again.json()["workflow_run_id"]
    assert emu.run_count() == 1

    # The dropped request is logged once its abort settles, which may be after the fast retry.
    def posts() -> list[str]:
        return sorted(str(r["status"]) for r in emu.requests if r["method"] == "POST")

    emu.wait_for(lambda: len(posts()) == 2)
    assert posts() == ["409", "dropped"]


async def test_drop_after_commit_async(coverbase_emulator_current: CoverbaseEmulator) -> None:
    emu = coverbase_emulator_current
    emu.drop_next_response_after_commit(1)
    headers = {"Authorization": f"Bearer {emu.api_key}", "Idempotency-Key": "a1"}
    async with httpx.AsyncClient(base_url=emu.base_url, headers=headers) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/v1/workflows/adhoc-campaign/run", json={"input": {}})
        replay = await client.post("/v1/workflows/adhoc-campaign/run", json={"input": {}})
    assert replay.status_code == 201
    assert emu.run_count() == 1


def test_delay(coverbase_emulator: CoverbaseEmulator, client: httpx.Client) -> None:
    coverbase_emulator.delay(0.3)
    started = time.monotonic()
    assert client.get("/v1/utils/authtest").status_code == 200
    assert time.monotonic() - started >= 0.3
    with pytest.raises(httpx.ReadTimeout):
        client.get("/v1/utils/authtest", timeout=0.05)
    coverbase_emulator.delay(0)


def test_request_log_hides_the_key(coverbase_emulator: CoverbaseEmulator, client: httpx.Client) -> None:
    client.post("/v1/workflows/adhoc-campaign/run", json={"input": {"x": 1}}, headers={"Idempotency-Key": "abc"})
    client.get("/v1/workflows/runs", params={"limit": 5})
    first, second = coverbase_emulator.requests
    assert (first["method"], first["path"], first["status"]) == ("POST", "/v1/workflows/adhoc-campaign/run", 201)
    assert first["body"] == {"input": {"x": 1}}
    assert first["headers"]["authorization"] == "***"
    assert first["headers"]["idempotency-key"] == "abc"
    assert coverbase_emulator.api_key not in repr(coverbase_emulator.requests)
    assert (second["method"], second["query"], second["body"]) == ("GET", [("limit", "5")], None)


def test_reset_forgets_everything(coverbase_emulator: CoverbaseEmulator, client: httpx.Client) -> None:
    emu = coverbase_emulator
    client.post("/v1/workflows/adhoc-campaign/run", json={"input": {}}, headers={"Idempotency-Key": "r"})
    emu.fail_next(5)
    emu.set_speed(0)
    emu.reset()
    assert emu.run_count() == 0 and emu.requests == []
    assert (
        client.post(
            "/v1/workflows/adhoc-campaign/run", json={"input": {}}, headers={"Idempotency-Key": "r"}
        ).status_code
        == 201
    )
    assert emu.state.clock.speed == emu.config.speed


def test_admin_api_over_http(coverbase_emulator_current: CoverbaseEmulator) -> None:
    emu = coverbase_emulator_current
    admin = httpx.Client(base_url=f"{emu.base_url}/_emulator")
    with client_for(emu) as client:
        assert admin.get("").json()["dialect"] == "current"
        admin.post("/clock/speed", json={"speed": 0}).raise_for_status()
        admin.post("/faults", json={"fail_next": 1, "status": 500}).raise_for_status()
        failed = client.get("/v1/utils/authtest")
        assert failed.status_code == 500
        assert failed.json()["request_id"] == failed.headers["x-coverbase-request-id"]
        admin.post(
            "/workflows",
            json={"name": "from-admin", "checkpoints": [{"name": "only", "duration_seconds": 60}]},
        ).raise_for_status()
        run_id = client.post("/v1/workflows/from-admin/run").json()["workflow_run_id"]
        admin.post("/clock/advance", json={"seconds": 61}).raise_for_status()
        assert client.get(f"/v1/workflows/runs/{run_id}").json()["status"] == "completed"
        assert admin.get("/runs").json()["total"] == 1
        admin.post("/faults", json={"drop_after_commit": 1}).raise_for_status()
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/v1/workflows/from-admin/run")
        admin.post("/faults", json={"dispatch_fail_next": 1}).raise_for_status()
        assert client.post("/v1/workflows/from-admin/run").status_code == 502
        admin.post("/limits", json={"requests_per_window": 1}).raise_for_status()
        client.get("/v1/utils/authtest")
        assert client.get("/v1/utils/authtest").status_code == 429
        log = admin.get("/requests").json()["data"]
        assert all(entry["headers"].get("authorization") == "***" for entry in log)
        assert admin.get("/webhook_deliveries").json() == {"data": []}
        admin.post("/reset").raise_for_status()
        assert client.get("/v1/utils/authtest").status_code == 200
        assert admin.get("/runs").json()["total"] == 0
        assert admin.delete("/faults").status_code == 204
    admin.close()
