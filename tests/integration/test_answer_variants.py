"""The real clients against the emulator playing each plausible answer, sync and async, both dialects.

The emulator is switched to the matching variant (``set_variants``), so these exercise the whole path
over loopback HTTP; ``reset()`` between tests restores the defaults.
"""

from __future__ import annotations

import pytest

from airflow_provider_coverbase.exceptions import (
    BadRequestError,
    IdempotencyConflictError,
    IdempotencyKeyReusedError,
    InputRejectedError,
    InvalidInputError,
    NotFoundError,
)
from airflow_provider_coverbase.models import WorkflowRunStatus
from airflow_provider_coverbase.testing import CoverbaseEmulator
from tests.integration.conftest import Api, MakeApi

pytestmark = pytest.mark.integration

# ---- 1. 409 replays in every shape (legacy) -------------------------------------------------------


@pytest.mark.parametrize("shape", ["detail", "bare", "flat", "nested"])
async def test_each_replay_shape_returns_the_original_run(
    legacy_api: Api, legacy_emulator: CoverbaseEmulator, shape: str
) -> None:
    legacy_emulator.set_variants(conflict_shape=shape)
    first = await legacy_api("run_workflow", "adhoc-campaign", idempotency_key="order-1")
    legacy_emulator.advance(0.6)  # the first checkpoint is reached: the replay is read as it is now
    again = await legacy_api("run_workflow", "adhoc-campaign", idempotency_key="order-1")

    assert again.workflow_run_id == first.workflow_run_id
    assert again.replayed and not first.replayed
    assert legacy_emulator.run_count() == 1
    methods = [(e["method"], e["status"]) for e in legacy_emulator.requests]
    if shape == "flat":  # no status in the 409: one GET reads the run
        assert methods == [("POST", 201), ("POST", 409), ("GET", 200)]
        assert again.checkpoints == ["campaign_sent"]
    else:
        assert methods == [("POST", 201), ("POST", 409)]
        assert again.status == WorkflowRunStatus.RUNNING


async def test_replay_without_the_run_fails_clearly_and_is_not_retried(
    legacy_api: Api, legacy_emulator: CoverbaseEmulator
) -> None:
    legacy_emulator.set_variants(conflict_shape="none")
    await legacy_api("run_workflow", "adhoc-campaign", idempotency_key="order-2")
    with pytest.raises(IdempotencyConflictError, match="a run already exists for idempotency key 'order-2'") as info:
        await legacy_api("run_workflow", "adhoc-campaign", idempotency_key="order-2")
    assert "Not retried: the run exists" in str(info.value)
    assert info.value.attempts == 1 and legacy_api.sleeps == []
    assert legacy_emulator.run_count() == 1


@pytest.mark.parametrize("shape", ["detail", "bare", "flat", "nested"])
async def test_lost_response_then_replay_in_any_shape_is_one_run(
    legacy_api: Api, legacy_emulator: CoverbaseEmulator, shape: str
) -> None:
    legacy_emulator.set_variants(conflict_shape=shape)
    legacy_emulator.drop_next_response_after_commit()
    run = await legacy_api("run_workflow", "adhoc-campaign")  # a generated key, reused by the retry
    assert legacy_emulator.run_count() == 1
    assert legacy_emulator.get_run(run.workflow_run_id) is not None
    assert not run.replayed  # the replay answered this call's own first attempt


async def test_reused_key_is_caught_through_a_flat_replay(legacy_api: Api, legacy_emulator: CoverbaseEmulator) -> None:
    legacy_emulator.set_variants(conflict_shape="flat")
    await legacy_api("run_workflow", "adhoc-campaign", idempotency_key="shared")
    with pytest.raises(IdempotencyKeyReusedError, match="of workflow 'adhoc-campaign'"):
        await legacy_api("run_workflow", "gets-cancelled", idempotency_key="shared")
    assert legacy_emulator.run_count() == 1


# ---- 2. retry_after wherever the emulator puts it ----------------------------------------------


@pytest.mark.parametrize("placement", ["both", "header", "top_level", "detail", "string"])
async def test_retry_after_is_honoured_in_every_placement(
    make_api: MakeApi, emulator: CoverbaseEmulator, placement: str
) -> None:
    emulator.set_variants(retry_after=placement)
    emulator.set_limits(requests_per_window=1, window_seconds=7)
    api = make_api(emulator, advance_clock_on_sleep=True)
    first = await api("run_workflow", "adhoc-campaign")
    again = await api("get_workflow_run", first.workflow_run_id)  # over budget: 429, wait, then 200
    assert again.workflow_run_id == first.workflow_run_id
    assert api.sleeps == [7.0]  # the server's hint, not the 0.5 s backoff


# ---- 3. GET bodies without workflow_run_id ------------------------------------------------------


async def test_sparse_get_bodies_are_read(api: Api, emulator: CoverbaseEmulator) -> None:
    run = await api("run_workflow", "adhoc-campaign")
    emulator.set_variants(sparse_get_bodies=True)
    emulator.advance(2)
    got = await api("get_workflow_run", run.workflow_run_id)
    assert got.workflow_run_id == run.workflow_run_id
    assert got.workflow_name is None
    assert got.status == WorkflowRunStatus.COMPLETED


async def test_flat_replay_read_through_a_sparse_get(legacy_api: Api, legacy_emulator: CoverbaseEmulator) -> None:
    legacy_emulator.set_variants(conflict_shape="flat", sparse_get_bodies=True)
    first = await legacy_api("run_workflow", "adhoc-campaign", idempotency_key="k")
    again = await legacy_api("run_workflow", "adhoc-campaign", idempotency_key="k")
    assert again.workflow_run_id == first.workflow_run_id


# ---- 5. the server's invalid_input is an InvalidInputError --------------------------------------


async def test_server_invalid_input_is_caught_as_invalid_input(legacy_api: Api) -> None:
    with pytest.raises(InvalidInputError) as info:
        await legacy_api("run_workflow", "quarterly-privacy-sweep", {"vendor_filter": {}})
    assert isinstance(info.value, InputRejectedError) and isinstance(info.value, BadRequestError)
    assert info.value.status_code == 400 and "'quarter' is a required property" in str(info.value)


# ---- 6. a wrong base URL path ------------------------------------------------------------------


async def test_typo_in_the_base_url_path(make_api: MakeApi, emulator: CoverbaseEmulator) -> None:
    api = make_api(emulator, base_url=f"{emulator.base_url}/vl")
    with pytest.raises(NotFoundError) as info:
        await api("run_workflow", "quarterly-privacy-sweep", {"quarter": "Q4", "vendor_filter": {}})
    message = str(info.value)
    assert f"POST {emulator.base_url}/vl/v1/workflows/quarterly-privacy-sweep/run answered 404" in message
    assert "may be wrong" in message
    assert "not found for this API key's org" not in message
    assert emulator.run_count() == 0


# ---- 12. workflows belong to an org ---------------------------------------------------------------


async def test_another_orgs_workflow_is_not_found(make_api: MakeApi, emulator: CoverbaseEmulator) -> None:
    emulator.add_workflow("org-one-only", [("done", 0.5)], org=emulator.org_id)
    mine, theirs = make_api(emulator), make_api(emulator, api_key=emulator.other_api_key)
    with pytest.raises(NotFoundError, match="workflow 'org-one-only' not found for this API key's org") as info:
        await theirs("run_workflow", "org-one-only")
    assert info.value.code == "workflow_not_found"
    run = await mine("run_workflow", "org-one-only")
    assert run.workflow_name == "org-one-only"
    assert emulator.runs == {emulator.org_id: 1, emulator.other_org_id: 0}


# ---- 13. the legacy dialect has no list endpoint unless turned on ------------------------------


async def test_listing_runs_on_the_legacy_dialect(legacy_api: Api, legacy_emulator: CoverbaseEmulator) -> None:
    await legacy_api("run_workflow", "adhoc-campaign")
    with pytest.raises(NotFoundError, match=r"exists only in the current API \(V2 and later\).*legacy contract"):
        await legacy_api("list_workflow_runs")
    legacy_emulator.set_variants(legacy_v2_endpoints=True)
    assert (await legacy_api("list_workflow_runs")).total == 1
