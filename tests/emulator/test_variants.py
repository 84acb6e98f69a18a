"""Answer variants, org-owned workflows and the legacy dialect's endpoint set, over raw HTTP.

Variants are switched four ways: the CLI flag, the YAML config, the fixture argument and the
``/_emulator/variants`` control (``set_variants`` in Python); ``reset()`` restores the configured ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_coverbase.testing import CoverbaseEmulator, EmulatorConfig, load_config
from airflow_provider_coverbase.testing.config import ConfigError
from airflow_provider_coverbase.testing.process import start_emulator_process

from .conftest import client_for

CONFLICT = "A run already exists for this idempotency key. The original response is returned."
DEFAULTS = {"conflict_shape": "detail", "retry_after": "both", "sparse_get_bodies": False, "legacy_v2_endpoints": False}


def post(client: httpx.Client, name: str, key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(f"/v1/workflows/{name}/run", json={"input": {}}, headers=headers)


# ---- 409 replay shapes --------------------------------------------------------------------------


def test_each_conflict_shape(coverbase_emulator: CoverbaseEmulator) -> None:
    emu = coverbase_emulator
    with client_for(emu) as client:
        original = post(client, "adhoc-campaign", "k").json()
        bodies: dict[str, Any] = {}
        for shape in ("detail", "bare", "flat", "nested", "none"):
            emu.set_variants(conflict_shape=shape)
            replay = post(client, "adhoc-campaign", "k")
            assert replay.status_code == 409, shape
            bodies[shape] = replay.json()
    code = {"code": "idempotency_conflict", "message": CONFLICT}
    assert bodies["detail"] == {"detail": code, **original}  # the default, unchanged
    assert bodies["bare"] == original
    assert bodies["flat"] == {**code, "workflow_run_id": original["workflow_run_id"]}
    assert bodies["nested"] == {"detail": {**code, "original_response": original}}
    assert bodies["none"] == {"detail": code}
    assert emu.run_count() == 1


def test_current_replays_ignore_the_conflict_shape(coverbase_emulator_current: CoverbaseEmulator) -> None:
    emu = coverbase_emulator_current
    emu.set_variants(conflict_shape="flat")
    with client_for(emu) as client:
        first, again = post(client, "adhoc-campaign", "k"), post(client, "adhoc-campaign", "k")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content


# ---- retry_after placements ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("placement", "header", "body_retry_after", "detail_retry_after"),
    [
        ("both", "3", 3, None),
        ("header", "3", None, None),
        ("top_level", None, 3, None),
        ("detail", None, None, 3),
        ("string", None, "3", None),
    ],
)
@pytest.mark.parametrize("source", ["fault", "limit"])
def test_retry_after_placement(
    coverbase_emulator: CoverbaseEmulator,
    placement: str,
    header: str | None,
    body_retry_after: Any,
    detail_retry_after: Any,
    source: str,
) -> None:
    emu = coverbase_emulator
    emu.set_speed(0)
    emu.set_variants(retry_after=placement)
    with client_for(emu) as client:
        if source == "fault":
            emu.fail_next(1, status=429, retry_after=3)
        else:
            emu.set_limits(requests_per_window=1, window_seconds=3)
            assert client.get("/v1/utils/authtest").status_code == 200
        response = client.get("/v1/utils/authtest")
    assert response.status_code == 429
    body = response.json()
    assert response.headers.get("retry-after") == header
    assert body.get("retry_after") == body_retry_after
    assert body["detail"].get("retry_after") == detail_retry_after
    assert body["detail"]["code"] == "rate_limited"


# ---- sparse GET bodies --------------------------------------------------------------------------


def test_sparse_get_bodies(emulator_of_each_dialect: CoverbaseEmulator) -> None:
    emu = emulator_of_each_dialect
    emu.set_speed(0)  # frozen: the run cannot move on between the two reads
    with client_for(emu) as client:
        run_id = post(client, "adhoc-campaign").json()["workflow_run_id"]
        full = client.get(f"/v1/workflows/runs/{run_id}").json()
        emu.set_variants(sparse_get_bodies=True)
        sparse = client.get(f"/v1/workflows/runs/{run_id}").json()
    assert full["workflow_run_id"] == run_id and full["workflow_name"] == "adhoc-campaign"
    assert "workflow_run_id" not in sparse and "workflow_name" not in sparse
    assert sparse["status"] == full["status"]


# ---- the legacy dialect serves only the legacy endpoints ---------------------------------------


def test_legacy_list_runs_is_404_unless_turned_on(coverbase_emulator: CoverbaseEmulator) -> None:
    emu = coverbase_emulator
    with client_for(emu) as client:
        post(client, "adhoc-campaign")
        off = client.get("/v1/workflows/runs")
        emu.set_variants(legacy_v2_endpoints=True)
        on = client.get("/v1/workflows/runs")
        emu.reset()
        after_reset = client.get("/v1/workflows/runs")
    assert (off.status_code, off.json()) == (404, {"detail": "Not Found"})  # a router's 404: no such endpoint
    assert on.status_code == 200 and on.json()["total"] == 1
    assert after_reset.status_code == 404


def test_current_lists_runs_without_any_flag(current_client: httpx.Client) -> None:
    assert current_client.get("/v1/workflows/runs").status_code == 200


# ---- workflows belong to an org -----------------------------------------------------------------


def test_another_orgs_workflow_is_not_found(emulator_of_each_dialect: CoverbaseEmulator) -> None:
    emu = emulator_of_each_dialect
    emu.set_variants(legacy_v2_endpoints=True)
    emu.add_workflow("org-two-only", [("done", 1)], org=emu.other_org_id)
    with client_for(emu) as mine, client_for(emu, emu.other_api_key) as theirs:
        refused = post(mine, "org-two-only")
        listed = mine.get("/v1/workflows/runs", params={"workflow_name": "org-two-only"})
        accepted = post(theirs, "org-two-only")
        by_name = theirs.get("/v1/workflows/runs", params={"workflow_name": "org-two-only"}).json()
    assert refused.status_code == 404
    assert refused.json()["detail"] == {"code": "workflow_not_found", "message": "Workflow 'org-two-only' not found."}
    assert listed.status_code == 404 and listed.json()["detail"]["code"] == "workflow_not_found"
    assert accepted.status_code == 201 and by_name["total"] == 1
    assert emu.runs == {emu.org_id: 0, emu.other_org_id: 1}


def test_another_orgs_definition_id_is_not_found(coverbase_emulator: CoverbaseEmulator) -> None:
    emu = coverbase_emulator
    emu.add_workflow("org-one-only", [("done", 1)], org="Emulator Org One")  # by org name
    body = {"workflow_definition_id": emu.definition_id("org-one-only"), "input": {}}
    with client_for(emu) as mine, client_for(emu, emu.other_api_key) as theirs:
        assert theirs.post("/v1/workflows/runs", json=body).json()["detail"]["code"] == "workflow_not_found"
        assert mine.post("/v1/workflows/runs", json=body).status_code == 201


def test_workflow_org_must_exist(coverbase_emulator: CoverbaseEmulator) -> None:
    with pytest.raises(ConfigError, match="no configured org_id or name"):
        coverbase_emulator.add_workflow("orphan", org="cborg_nobody")
    with pytest.raises(ConfigError, match="no configured org_id or name"):
        EmulatorConfig.from_dict({"workflows": [{"name": "orphan", "org": "Nobody"}]})


# ---- the run page shows why a run failed ---------------------------------------------------------


def test_run_page_shows_the_failure_reason(emulator_of_each_dialect: CoverbaseEmulator) -> None:
    emu = emulator_of_each_dialect
    emu.set_speed(0)
    with client_for(emu) as client:
        run_id = post(client, "always-fails").json()["workflow_run_id"]
        emu.advance(5)
        api_view = client.get(f"/v1/workflows/runs/{run_id}").json()
        page = client.get(f"/_emulator/runs/{run_id}", headers={"Accept": "text/html"}).text
        as_json = client.get(f"/_emulator/runs/{run_id}").json()
    reason = (
        "Failed after checkpoint vendors_selected, at step questionnaires_dispatched: Questionnaire template not found."
    )
    assert f"<strong>Reason:</strong> {reason}" in page
    assert as_json["failure_reason"] == reason
    if emu.dialect == "legacy":
        assert api_view["error"] == "Questionnaire template not found."  # like its workflow.failed webhook
    else:
        assert "error" not in api_view and api_view["steps"][-1]["message"] == "Questionnaire template not found."


# ---- four ways to set the variants ---------------------------------------------------------------


def test_control_api_sets_shows_and_validates_variants(coverbase_emulator: CoverbaseEmulator) -> None:
    emu = coverbase_emulator
    with httpx.Client(base_url=emu.base_url) as admin:
        assert admin.get("/_emulator").json()["variants"] == DEFAULTS
        changed = admin.post("/_emulator/variants", json={"conflict_shape": "bare", "sparse_get_bodies": True})
        assert changed.json() == {**DEFAULTS, "conflict_shape": "bare", "sparse_get_bodies": True}
        bad = admin.post("/_emulator/variants", json={"conflict_shape": "weird"})
        unknown = admin.post("/_emulator/variants", json={"retry_after_where": "header"})
        assert bad.status_code == unknown.status_code == 422
        assert "conflict_shape must be one of" in bad.json()["detail"]
        admin.post("/_emulator/reset")
        assert admin.get("/_emulator").json()["variants"] == DEFAULTS


def test_yaml_config_sets_variants_and_reset_keeps_them(tmp_path: Path, coverbase_emulator_factory: Any) -> None:
    path = tmp_path / "variants.yaml"
    path.write_text(
        "conflict_shape: flat\nretry_after: detail\nsparse_get_bodies: true\nlegacy_v2_endpoints: true\n"
        "workflows:\n  - name: mine\n    org: Emulator Org Two\n    checkpoints: [done]\n"
    )
    config = load_config(path)
    emu = coverbase_emulator_factory(config=config)
    emu.set_variants(conflict_shape="detail")
    emu.reset()
    assert emu.state.variants.as_dict() == {
        "conflict_shape": "flat",
        "retry_after": "detail",
        "sparse_get_bodies": True,
        "legacy_v2_endpoints": True,
    }
    with client_for(emu) as client:
        assert client.get("/v1/workflows/runs").status_code == 200
        assert post(client, "mine").status_code == 404
    with pytest.raises(ConfigError, match="retry_after must be one of"):
        EmulatorConfig.from_dict({"retry_after": "footer"})


def test_fixture_argument_sets_variants(coverbase_emulator_factory: Any) -> None:
    emu = coverbase_emulator_factory("legacy", conflict_shape="nested", legacy_v2_endpoints=True)
    with client_for(emu) as client:
        post(client, "adhoc-campaign", "k")
        assert "original_response" in post(client, "adhoc-campaign", "k").json()["detail"]
        assert client.get("/v1/workflows/runs").status_code == 200


def test_cli_flags_set_variants() -> None:
    flags = ["--conflict-shape", "none", "--retry-after", "string", "--sparse-get-bodies", "--legacy-v2-endpoints"]
    with start_emulator_process(flags) as emulator:
        variants = httpx.get(f"{emulator.base_url}/_emulator", timeout=10).json()["variants"]
    assert variants == {
        "conflict_shape": "none",
        "retry_after": "string",
        "sparse_get_bodies": True,
        "legacy_v2_endpoints": True,
    }
