"""Idempotency-Key: 24 h replay, scoped per (org, route template, key); replays start nothing."""

from __future__ import annotations

import httpx

from airflow_provider_coverbase.testing import CoverbaseEmulator

from .conftest import client_for

CONFLICT = "A run already exists for this idempotency key. The original response is returned."


def post(client: httpx.Client, name: str, key: str | None, run_input: object | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(f"/v1/workflows/{name}/run", json={"input": run_input or {}}, headers=headers)


def test_legacy_replay_is_409_with_the_original_run(coverbase_emulator: CoverbaseEmulator) -> None:
    with client_for(coverbase_emulator) as client:
        first = post(client, "adhoc-campaign", "order-1")
        assert first.status_code == 201
        again = post(client, "adhoc-campaign", "order-1", {"different": True})
        assert again.status_code == 409
        body = again.json()
        assert body.pop("detail") == {"code": "idempotency_conflict", "message": CONFLICT}
        assert body == first.json()
        # one key covers every workflow name (route template)
        other_name = post(client, "quarterly-privacy-sweep", "order-1")
        assert other_name.status_code == 409
        assert other_name.json()["workflow_run_id"] == first.json()["workflow_run_id"]
    assert coverbase_emulator.run_count() == 1


def test_current_replay_is_verbatim_201_across_workflow_names(
    coverbase_emulator_current: CoverbaseEmulator,
) -> None:
    emu = coverbase_emulator_current
    with client_for(emu) as client:
        first = post(client, "adhoc-campaign", "ticket-7")
        replay = post(client, "quarterly-privacy-sweep", "ticket-7")
        assert (first.status_code, replay.status_code) == (201, 201)
        assert replay.json() == first.json()
        assert replay.content == first.content
    assert emu.run_count() == 1


def test_keys_are_scoped_per_org_and_route_template(coverbase_emulator: CoverbaseEmulator) -> None:
    emu = coverbase_emulator
    definition_id = emu.definition_id("adhoc-campaign")
    with client_for(emu) as mine, client_for(emu, emu.other_api_key) as theirs:
        assert post(mine, "adhoc-campaign", "k").status_code == 201
        assert post(theirs, "adhoc-campaign", "k").status_code == 201
        by_id = mine.post(
            "/v1/workflows/runs",
            json={"workflow_definition_id": definition_id, "input": {}},
            headers={"Idempotency-Key": "k"},
        )
        assert by_id.status_code == 201
        again_by_id = mine.post(
            "/v1/workflows/runs",
            json={"workflow_definition_id": definition_id, "input": {}},
            headers={"Idempotency-Key": "k"},
        )
        assert again_by_id.status_code == 409
        assert again_by_id.json()["workflow_run_id"] == by_id.json()["workflow_run_id"]
    assert emu.runs == {emu.org_id: 2, emu.config.orgs[1].org_id: 1}


def test_keys_expire_after_24_hours(coverbase_emulator_current: CoverbaseEmulator) -> None:
    emu = coverbase_emulator_current
    emu.set_speed(0)
    with client_for(emu) as client:
        first = post(client, "adhoc-campaign", "daily")
        emu.advance(24 * 3600 - 60)
        assert post(client, "adhoc-campaign", "daily").json() == first.json()
        emu.advance(120)
        fresh = post(client, "adhoc-campaign", "daily")
        assert fresh.status_code == 201
        assert fresh.json()["workflow_run_id"] != first.json()["workflow_run_id"]
    assert emu.run_count() == 2


def test_errors_are_not_stored(coverbase_emulator: CoverbaseEmulator) -> None:
    with client_for(coverbase_emulator) as client:
        assert post(client, "quarterly-privacy-sweep", "k2", {"quarter": 1}).status_code == 400
        ok = post(client, "quarterly-privacy-sweep", "k2", {"quarter": "Q1", "vendor_filter": {}})
        assert ok.status_code == 201


def test_no_key_means_a_new_run_each_time(coverbase_emulator: CoverbaseEmulator) -> None:
    with client_for(coverbase_emulator) as client:
        ids = {post(client, "adhoc-campaign", None).json()["workflow_run_id"] for _ in range(3)}
    assert len(ids) == 3


def test_replays_start_nothing_and_skip_the_concurrency_limit(coverbase_emulator: CoverbaseEmulator) -> None:
    emu = coverbase_emulator
    emu.set_limits(max_concurrent_runs=1)
    with client_for(emu) as client:
        assert post(client, "stalled-forever", "only").status_code == 201
        assert post(client, "stalled-forever", "only").status_code == 409
        assert post(client, "stalled-forever", "another").status_code == 429
    assert emu.run_count() == 1
