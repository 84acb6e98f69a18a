"""GET /v1/workflows/runs: filters, pagination, validation."""

from __future__ import annotations

import httpx
import pytest

from airflow_provider_coverbase.testing import CoverbaseEmulator

from .conftest import client_for


def start(client: httpx.Client, name: str) -> str:
    response = client.post(f"/v1/workflows/{name}/run", json={"input": {}})
    assert response.status_code == 201, response.text
    return str(response.json()["workflow_run_id"])


def test_current_list_filters_and_pages(coverbase_emulator_current: CoverbaseEmulator) -> None:
    emu = coverbase_emulator_current
    emu.set_speed(0)
    with client_for(emu) as client:
        early = start(client, "always-fails")
        emu.advance(100)
        t_mid = int(emu.now())
        done = start(client, "adhoc-campaign")
        stalled = start(client, "stalled-forever")
        emu.advance(5)
        newest = start(client, "adhoc-campaign")

        everything = client.get("/v1/workflows/runs").json()
        assert (everything["total"], everything["limit"], everything["offset"]) == (4, 100, 0)
        assert [r["workflow_run_id"] for r in everything["data"]] == [newest, stalled, done, early]
        item = everything["data"][-1]
        assert "steps" not in item
        assert item["step_count"] == 2
        assert item["status"] == "failed"

        by_name = client.get("/v1/workflows/runs", params={"workflow_name": "adhoc-campaign"}).json()
        assert [r["workflow_run_id"] for r in by_name["data"]] == [newest, done]

        statuses = client.get("/v1/workflows/runs", params=[("status", "completed"), ("status", "failed")])
        assert {r["workflow_run_id"] for r in statuses.json()["data"]} == {done, early}

        window = client.get("/v1/workflows/runs", params={"created_at_after": t_mid, "created_at_before": t_mid})
        assert {r["workflow_run_id"] for r in window.json()["data"]} == {done, stalled}

        page = client.get("/v1/workflows/runs", params={"limit": 2, "offset": 1}).json()
        assert [r["workflow_run_id"] for r in page["data"]] == [stalled, done]
        assert (page["total"], page["limit"], page["offset"]) == (4, 2, 1)


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 501}, {"offset": -1}, {"status": "running"}])
def test_current_list_validation(current_client: httpx.Client, params: dict[str, object]) -> None:
    response = current_client.get("/v1/workflows/runs", params=params)  # type: ignore[arg-type]
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)
    assert response.json()["detail"][0]["loc"][0] == "query"
    assert "request_id" in response.json()


def test_list_limit_bounds_accepted(current_client: httpx.Client) -> None:
    for limit in (1, 500):
        assert current_client.get("/v1/workflows/runs", params={"limit": limit}).status_code == 200


def test_unknown_workflow_filter_is_404(current_client: httpx.Client) -> None:
    response = current_client.get("/v1/workflows/runs", params={"workflow_name": "ghost"})
    assert response.status_code == 404
    assert response.json()["detail"]["code"] == "workflow_not_found"


def test_legacy_list_uses_legacy_statuses(coverbase_emulator: CoverbaseEmulator) -> None:
    # List runs is V2+: the legacy dialect serves it on request.
    coverbase_emulator.set_variants(legacy_v2_endpoints=True)
    emu = coverbase_emulator
    emu.set_speed(0)
    with client_for(emu) as client:
        run_id = start(client, "stalled-forever")
        body = client.get("/v1/workflows/runs", params={"status": "running"}).json()
        assert [r["workflow_run_id"] for r in body["data"]] == [run_id]
        assert body["data"][0]["workflow_definition_id"].startswith("cbwfdef_")
        assert client.get("/v1/workflows/runs", params={"status": "started"}).status_code == 422
