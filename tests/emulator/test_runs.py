"""Runs over real loopback HTTP: auth, isolation, progression, validation, dialect shapes."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from airflow_provider_coverbase.testing import CoverbaseEmulator

from .conftest import client_for

SWEEP_INPUT = {"quarter": "2026-Q2", "vendor_filter": {"tags": ["processes_pii"]}}


def start(client: httpx.Client, name: str, run_input: object = None, **kwargs: object) -> httpx.Response:
    body = {"input": {} if run_input is None else run_input}
    return client.post(f"/v1/workflows/{name}/run", json=body, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- auth


@pytest.mark.parametrize("header", [None, "Bearer ak_test_wrong", "Basic abc", "Bearer"])
def test_legacy_rejects_missing_or_wrong_key(coverbase_emulator: CoverbaseEmulator, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = httpx.get(f"{coverbase_emulator.base_url}/v1/utils/authtest", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": {"code": "unauthorized", "message": "Invalid or expired API key."}}


def test_current_401_is_plain_string_with_request_id(coverbase_emulator_current: CoverbaseEmulator) -> None:
    response = httpx.get(f"{coverbase_emulator_current.base_url}/v1/workflows/runs/cbwr_x")
    body = response.json()
    assert response.status_code == 401
    assert body["detail"] == "Invalid or expired API key."
    assert uuid.UUID(body["request_id"]).version == 4
    assert response.headers["x-coverbase-request-id"] == body["request_id"]


def test_authtest(client: httpx.Client) -> None:
    response = client.get("/v1/utils/authtest")
    assert response.status_code == 200
    assert response.json() == {"msg": "Auth successful"}


def test_other_orgs_run_is_404(emulator_of_each_dialect: CoverbaseEmulator) -> None:
    emu = emulator_of_each_dialect
    emu.set_variants(legacy_v2_endpoints=True)  # list runs is V2+: the legacy dialect serves it on request
    with client_for(emu) as mine, client_for(emu, emu.other_api_key) as theirs:
        run_id = start(mine, "adhoc-campaign").json()["workflow_run_id"]
        response = theirs.get(f"/v1/workflows/runs/{run_id}")
        assert response.status_code == 404
        assert response.json()["detail"] == {"code": "workflow_run_not_found", "message": "Workflow run not found."}
        assert theirs.get("/v1/workflows/runs").json()["total"] == 0
        assert mine.get(f"/v1/workflows/runs/{run_id}").status_code == 200
    assert list(emu.runs.values()) == [1, 0]


# ---------------------------------------------------------------- legacy progression


def test_legacy_run_progresses_with_the_injected_clock(coverbase_emulator: CoverbaseEmulator) -> None:
    emu = coverbase_emulator
    emu.set_speed(0)  # frozen: only advance() moves time
    with client_for(emu) as client:
        created = start(client, "quarterly-privacy-sweep", SWEEP_INPUT)
        assert created.status_code == 201
        body = created.json()
        assert re.fullmatch(r"cbwfr_[0-9a-f]{32}", body["workflow_run_id"])
        assert re.fullmatch(r"cbwfdef_[0-9a-f]{16}", body["workflow_definition_id"])
        assert body["status"] == "running"
        assert body["workflow_name"] == "quarterly-privacy-sweep"
        assert body["input"] == SWEEP_INPUT
        assert isinstance(body["started_at"], int)
        url = f"/v1/workflows/runs/{body['workflow_run_id']}"

        run = client.get(url).json()
        assert run["status"] == "running"
        assert run["checkpoints_reached"] == []
        assert run["output"] is None
        assert run["completed_at"] is None

        emu.advance(2.5)
        run = client.get(url).json()
        assert run["checkpoints_reached"] == ["vendors_selected", "questionnaires_dispatched"]
        assert run["status"] == "running"

        emu.advance(2)
        run = client.get(url).json()
        assert run["status"] == "completed"
        assert run["checkpoints_reached"][-1] == "report_delivered"
        assert run["output"]["vendors_processed"] == 38
        assert run["completed_at"] == run["started_at"] + 4


def test_hour_long_checkpoints_finish_in_milliseconds(coverbase_emulator: CoverbaseEmulator) -> None:
    emu = coverbase_emulator
    emu.add_workflow("slow", [("a", 3600), ("b", 3600)], output={"ok": True})
    emu.set_speed(1_000_000)
    with client_for(emu) as client:
        run_id = start(client, "slow").json()["workflow_run_id"]
        emu.wait_for(lambda: client.get(f"/v1/workflows/runs/{run_id}").json()["status"] == "completed", 2)
        assert client.get(f"/v1/workflows/runs/{run_id}").json()["output"] == {"ok": True}


def test_legacy_pending_and_paused_phases(coverbase_emulator: CoverbaseEmulator) -> None:
    emu = coverbase_emulator
    emu.set_speed(0)
    with client_for(emu) as client:
        created = start(client, "pending-then-paused").json()
        assert created["status"] == "pending"
        url = f"/v1/workflows/runs/{created['workflow_run_id']}"
        assert client.get(url).json()["status"] == "pending"
        emu.advance(1.0)  # pending 0.5 + intake_received 0.5: the pause begins
        run = client.get(url).json()
        assert (run["status"], run["checkpoints_reached"]) == ("paused", ["intake_received"])
        emu.advance(1.2)
        assert client.get(url).json()["status"] == "running"
        emu.advance(0.5)
        run = client.get(url).json()
        assert (run["status"], run["output"]) == ("completed", {"approved": True})


@pytest.mark.parametrize(
    ("name", "status", "reached"),
    [("always-fails", "failed", ["vendors_selected"]), ("gets-cancelled", "cancelled", ["vendors_selected"])],
)
def test_legacy_terminal_failures(
    coverbase_emulator: CoverbaseEmulator, name: str, status: str, reached: list[str]
) -> None:
    emu = coverbase_emulator
    emu.set_speed(0)
    with client_for(emu) as client:
        run_id = start(client, name).json()["workflow_run_id"]
        emu.advance(10)
        run = client.get(f"/v1/workflows/runs/{run_id}").json()
        assert run["status"] == status
        assert run["checkpoints_reached"] == reached
        assert run["output"] is None
        assert run["completed_at"] is not None


def test_never_finishing_run_stays_running(coverbase_emulator: CoverbaseEmulator) -> None:
    emu = coverbase_emulator
    emu.set_speed(0)
    with client_for(emu) as client:
        run_id = start(client, "stalled-forever").json()["workflow_run_id"]
        emu.advance(30 * 24 * 3600)
        run = client.get(f"/v1/workflows/runs/{run_id}").json()
        assert (run["status"], run["checkpoints_reached"], run["completed_at"]) == (
            "running",
            ["vendors_selected"],
            None,
        )


# ---------------------------------------------------------------- current dialect


def test_current_run_shapes_and_steps(coverbase_emulator_current: CoverbaseEmulator) -> None:
    emu = coverbase_emulator_current
    emu.set_speed(0)
    with client_for(emu) as client:
        created = start(client, "quarterly-privacy-sweep", {"anything": 1})
        assert created.status_code == 201, created.text  # current: input not validated
        body = created.json()
        assert set(body) == {"workflow_run_id", "workflow_name", "status", "started_at", "input"}
        assert re.fullmatch(r"cbwr_[0-9a-f]{32}", body["workflow_run_id"])
        assert body["status"] == "started"
        url = f"/v1/workflows/runs/{body['workflow_run_id']}"
        run = client.get(url).json()
        assert set(run) == {
            "workflow_run_id",
            "workflow_name",
            "workflow_definition_id",
            "status",
            "started_at",
            "completed_at",
            "steps",
        }
        assert re.fullmatch(r"cbwd_[0-9a-f]{32}", run["workflow_definition_id"])
        assert (run["status"], run["steps"]) == ("started", [])
        emu.advance(1.5)
        steps = client.get(url).json()["steps"]
        assert [s["component_name"] for s in steps] == ["vendors_selected"]
        step = steps[0]
        assert re.fullmatch(r"cbwrs_[0-9a-f]{32}", step["step_id"])
        assert re.fullmatch(r"cbwc_[0-9a-f]{32}", step["component_id"])
        assert (step["status"], step["message"], step["artifacts"]) == ("success", None, [])
        assert step["action_type"] == "select_vendors"
        emu.advance(5)
        run = client.get(url).json()
        assert run["status"] == "completed"
        assert len(run["steps"]) == 4
        assert isinstance(run["completed_at"], int)


def test_current_failed_and_canceled(coverbase_emulator_current: CoverbaseEmulator) -> None:
    emu = coverbase_emulator_current
    emu.set_speed(0)
    with client_for(emu) as client:
        failed_id = start(client, "always-fails").json()["workflow_run_id"]
        canceled_id = start(client, "gets-cancelled").json()["workflow_run_id"]
        paused_id = start(client, "pending-then-paused").json()["workflow_run_id"]
        assert client.get(f"/v1/workflows/runs/{paused_id}").json()["status"] == "started"
        emu.advance(10)
        failed = client.get(f"/v1/workflows/runs/{failed_id}").json()
        assert failed["status"] == "failed"
        assert [s["status"] for s in failed["steps"]] == ["success", "failed"]
        assert failed["steps"][-1]["message"] == "Questionnaire template not found."
        assert client.get(f"/v1/workflows/runs/{canceled_id}").json()["status"] == "canceled"


def test_current_input_echo_rules(current_client: httpx.Client) -> None:
    body = start(current_client, "adhoc-campaign", {"vendor_id": 42, "note": None, "count": 3}).json()
    assert body["input"] == {"vendor_id": "42", "count": 3}


def test_current_input_defaults_and_type(current_client: httpx.Client) -> None:
    assert current_client.post("/v1/workflows/adhoc-campaign/run").json()["input"] == {}
    bad = current_client.post("/v1/workflows/adhoc-campaign/run", json={"input": [1]})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "input"]
    assert "request_id" in bad.json()


# ---------------------------------------------------------------- errors and routes


@pytest.mark.parametrize(
    ("run_input", "fragment"),
    [
        ({"vendor_filter": {}}, "'quarter' is a required property (at input.quarter)"),
        ({"quarter": 3, "vendor_filter": {}}, "3 is not of type 'string' (at input.quarter)"),
        ({"quarter": "Q1", "vendor_filter": []}, "(at input.vendor_filter)"),
        ("nope", "is not of type 'object' (at input)"),
    ],
)
def test_legacy_invalid_input_names_the_field(client: httpx.Client, run_input: object, fragment: str) -> None:
    response = start(client, "quarterly-privacy-sweep", run_input)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail["code"] == "invalid_input"
    assert detail["message"].startswith("Input does not match the workflow's schema: ")
    assert fragment in detail["message"]


def test_legacy_input_is_required(client: httpx.Client, coverbase_emulator: CoverbaseEmulator) -> None:
    response = client.post("/v1/workflows/adhoc-campaign/run", json={})
    assert response.status_code == 400
    assert "'input' is a required property" in response.json()["detail"]["message"]
    assert coverbase_emulator.run_count() == 0


def test_unknown_and_disabled_workflows(emulator_of_each_dialect: CoverbaseEmulator) -> None:
    emu = emulator_of_each_dialect
    with client_for(emu) as client:
        missing = start(client, "no-such-flow")
        assert missing.status_code == 404
        assert missing.json()["detail"] == {
            "code": "workflow_not_found",
            "message": "Workflow 'no-such-flow' not found.",
        }
        disabled = start(client, "disabled-workflow")
        assert disabled.status_code == 409
        assert disabled.json()["detail"] == {
            "code": "workflow_disabled",
            "message": "Workflow 'disabled-workflow' is disabled.",
        }
    assert emu.run_count() == 0


def test_name_needing_url_encoding(client: httpx.Client) -> None:
    response = client.post("/v1/workflows/vendor%20sweep%2Feu/run", json={"input": {}})
    assert response.status_code == 201
    assert response.json()["workflow_name"] == "vendor sweep/eu"


def test_legacy_run_by_definition_id(client: httpx.Client, coverbase_emulator: CoverbaseEmulator) -> None:
    definition_id = coverbase_emulator.definition_id("adhoc-campaign")
    response = client.post("/v1/workflows/runs", json={"workflow_definition_id": definition_id, "input": {}})
    assert response.status_code == 201
    assert response.json()["workflow_definition_id"] == definition_id
    assert response.json()["workflow_name"] == "adhoc-campaign"
    unknown = client.post("/v1/workflows/runs", json={"workflow_definition_id": "cbwfdef_0", "input": {}})
    assert unknown.status_code == 404
    assert unknown.json()["detail"]["code"] == "workflow_not_found"
    missing = client.post("/v1/workflows/runs", json={"input": {}})
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "workflow_definition_id"]


def test_current_has_no_run_by_definition_route(current_client: httpx.Client) -> None:
    response = current_client.post("/v1/workflows/runs", json={"workflow_definition_id": "cbwd_x"})
    assert response.status_code == 404
    assert response.json()["detail"] == "Not Found"


def test_current_dispatch_failure_creates_the_run(coverbase_emulator_current: CoverbaseEmulator) -> None:
    emu = coverbase_emulator_current
    with client_for(emu) as client:
        response = start(client, "dispatch-fails")
        assert response.status_code == 502
        body = response.json()
        assert body["detail"]["code"] == "workflow_dispatch_failed"
        run_id = re.search(r"\((cbwr_[0-9a-f]{32})\)", body["detail"]["message"])
        assert run_id is not None
        assert body["detail"]["message"] == (
            "Workflow run was created but could not be dispatched. "
            f"Retry with the same workflow run id ({run_id.group(1)})."
        )
        assert client.get(f"/v1/workflows/runs/{run_id.group(1)}").json()["status"] == "started"
        emu.fail_next_dispatch(1)
        assert start(client, "adhoc-campaign").status_code == 502
        assert start(client, "adhoc-campaign").status_code == 201
    assert emu.run_count() == 3


def test_legacy_ignores_dispatch_failures(client: httpx.Client) -> None:
    assert start(client, "dispatch-fails").status_code == 201


def test_malformed_json_is_422(client: httpx.Client) -> None:
    response = client.post(
        "/v1/workflows/adhoc-campaign/run", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


async def test_async_client_polls_to_completion(coverbase_emulator_current: CoverbaseEmulator) -> None:
    emu = coverbase_emulator_current
    headers = {"Authorization": f"Bearer {emu.api_key}"}
    async with httpx.AsyncClient(base_url=emu.base_url, headers=headers) as client:
        created = await client.post("/v1/workflows/adhoc-campaign/run", json={"input": {}})
        run_id = created.json()["workflow_run_id"]
        emu.advance(5)
        run = (await client.get(f"/v1/workflows/runs/{run_id}")).json()
        assert run["status"] == "completed"


def test_dashboard_page(coverbase_emulator: CoverbaseEmulator, client: httpx.Client) -> None:
    run_id = start(client, "adhoc-campaign").json()["workflow_run_id"]
    page = httpx.get(coverbase_emulator.dashboard_url(run_id), headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert run_id in page.text
    as_json = httpx.get(coverbase_emulator.dashboard_url(run_id) + "?format=json").json()
    assert as_json["workflow_run_id"] == run_id
    assert httpx.get(coverbase_emulator.dashboard_url("cbwfr_missing")).status_code == 404
    # the client's default dashboard path, under the conn's dashboard_url
    alias = httpx.get(f"{coverbase_emulator.base_url}/_emulator/workflows/runs/{run_id}?format=json")
    assert alias.json()["workflow_run_id"] == run_id
