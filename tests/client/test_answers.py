"""Every plausible answer read right: 409 replay shapes, retry hints, sparse runs, clear failures.

Each scenario runs on the sync and the async client, against the stateful fake; where the fake's
behaviour is a variant (how a 409 carries the run, sparse GET bodies), the variant is switched on
the fake rather than the answer scripted, so the whole exchange stays realistic.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from airflow_provider_coverbase.exceptions import (
    BadRequestError,
    CoverbaseConfigError,
    IdempotencyConflictError,
    IdempotencyKeyReusedError,
    InputRejectedError,
    InvalidInputError,
    NotFoundError,
    RateLimitError,
)
from airflow_provider_coverbase.models import WorkflowRunStatus
from airflow_provider_coverbase.waiting.progress import outcome_error
from tests.client.conftest import BASE_URL, Api
from tests.fake_api import FakeCoverbaseAPI

SWEEP = "quarterly-privacy-sweep"

# ---- 1. 409 replays, whatever the envelope ----------------------------------------------------


@pytest.mark.parametrize("shape", ["detail", "bare", "flat", "nested"])
async def test_every_409_replay_shape_returns_the_original_run(kind: str, shape: str) -> None:
    fake = FakeCoverbaseAPI(dialect="legacy")
    fake.conflict_shape = shape
    api = Api(kind, fake)
    first = await api("run_workflow", SWEEP, {"quarter": "Q4"}, idempotency_key="sweep-q4")
    again = await api("run_workflow", SWEEP, {"quarter": "Q4"}, idempotency_key="sweep-q4")

    assert again.workflow_run_id == first.workflow_run_id
    assert again.workflow_name == SWEEP
    assert again.replayed  # the first attempt got a replay: an earlier call started this run
    assert not first.replayed
    assert len(fake.runs) == 1
    statuses = [(r.method, r.url.path) for r in fake.requests]
    if shape == "flat":  # the flat body names the run but not its status: one GET reads it
        assert statuses[-1] == ("GET", f"/v1/workflows/runs/{first.workflow_run_id}")
        assert again.status == WorkflowRunStatus.RUNNING
        assert len(fake.requests) == 3
    else:
        assert len(fake.requests) == 2
    await api.close()


@pytest.mark.parametrize(
    "body",
    [
        {"workflow_run": {"workflow_run_id": "cbwfr_7", "status": "running", "workflow_name": SWEEP}},
        {"data": {"workflow_run_id": "cbwfr_7", "status": "running"}},
        {"run": {"workflow_run_id": "cbwfr_7", "status": "running"}, "detail": "Conflict"},
        {"detail": {"code": "idempotency_conflict", "workflow_run_id": "cbwfr_7", "status": "running"}},
        {"error": {"code": "idempotency_conflict", "run": {"workflow_run_id": "cbwfr_7", "status": "running"}}},
        {"code": "whatever_the_server_calls_it", "workflow_run_id": "cbwfr_7", "status": "running"},
    ],
)
async def test_any_409_carrying_a_run_is_a_replay(api: Api, body: dict[str, Any]) -> None:
    api.fake.script.append(httpx.Response(409, json=body))
    run = await api("run_workflow", SWEEP, idempotency_key="k-7")
    assert run.workflow_run_id == "cbwfr_7"
    assert run.status == WorkflowRunStatus.RUNNING
    assert "code" not in (run.model_extra or {}) and "detail" not in (run.model_extra or {})


async def test_409_without_a_run_says_the_run_exists_and_is_not_retried(kind: str) -> None:
    fake = FakeCoverbaseAPI(dialect="legacy")
    fake.conflict_shape = "none"
    api = Api(kind, fake)
    await api("run_workflow", SWEEP, idempotency_key="sweep-q4")
    with pytest.raises(IdempotencyConflictError) as info:
        await api("run_workflow", SWEEP, idempotency_key="sweep-q4")

    message = str(info.value)
    assert "a run already exists for idempotency key 'sweep-q4'" in message
    assert "Not retried: the run exists" in message
    assert "use another key" in message
    assert info.value.attempts == 1 and api.sleeps == []
    assert len(fake.requests) == 2 and len(fake.runs) == 1
    await api.close()


async def test_flat_409_without_a_run_is_a_conflict_too(api: Api) -> None:
    api.fake.script.append(
        httpx.Response(409, json={"code": "idempotency_conflict", "message": "A run already exists."})
    )
    with pytest.raises(IdempotencyConflictError, match="'k-1'"):
        await api("run_workflow", SWEEP, idempotency_key="k-1")


async def test_a_409_on_a_read_is_never_a_replay(api: Api) -> None:
    api.fake.script.append(httpx.Response(409, json={"workflow_run_id": "cbwr_1", "status": "running"}))
    with pytest.raises(Exception, match="409"):
        await api("get_workflow_run", "cbwr_1")


async def test_lost_answer_then_409_replay_is_one_run_and_not_an_earlier_calls(kind: str) -> None:
    fake = FakeCoverbaseAPI(dialect="legacy")
    fake.conflict_shape = "flat"
    fake.lose_next_response = 1
    api = Api(kind, fake)
    run = await api("run_workflow", SWEEP)  # a generated key: the 409 replays this call's own POST

    assert list(fake.runs) == [run.workflow_run_id]
    assert not run.replayed  # the replay answered a retry: the run may be this call's own
    assert [r.method for r in fake.requests] == ["POST", "POST", "GET"]
    await api.close()


# ---- 2. retry_after wherever it is -------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "body", "wait"),
    [
        ({"Retry-After": "7"}, {"detail": {"code": "rate_limited", "message": "slow"}}, 7.0),
        ({}, {"detail": {"code": "rate_limited", "message": "slow"}, "retry_after": 6}, 6.0),
        ({}, {"detail": {"code": "rate_limited", "message": "slow", "retry_after": 5}}, 5.0),
        ({}, {"detail": {"code": "rate_limited", "message": "slow"}, "retry_after": "4"}, 4.0),
        ({}, {"error": {"code": "rate_limited", "message": "slow", "retry_after": "3.5"}}, 3.5),
        ({}, {"code": "rate_limited", "message": "slow", "retry_after": 2}, 2.0),
    ],
)
async def test_retry_after_is_read_wherever_it_is(
    api: Api, headers: dict[str, str], body: dict[str, Any], wait: float
) -> None:
    api.fake.script.append(httpx.Response(429, json=body, headers=headers))
    run = await api("run_workflow", SWEEP)
    assert api.sleeps == [wait]
    assert list(api.fake.runs) == [run.workflow_run_id]


async def test_retry_after_under_detail_over_the_cap_ends_the_call(api: Api) -> None:
    api.fake.script.append(httpx.Response(429, json={"detail": {"code": "rate_limited", "retry_after": "600"}}))
    with pytest.raises(RateLimitError, match="asked to wait 600 s") as info:
        await api("run_workflow", SWEEP)
    assert info.value.retry_after == 600 and api.sleeps == []


async def test_retry_after_as_an_http_date(api: Api) -> None:
    api.fake.script.append(
        httpx.Response(503, json={"detail": "busy"}, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"})
    )
    with pytest.raises(Exception, match="503"):  # far in the future: over the cap, not waited for
        await api("check_auth")
    assert api.sleeps == []


# ---- 3. sparse run bodies ----------------------------------------------------------------------


async def test_get_without_workflow_run_id_is_filled_from_the_requested_id(api: Api) -> None:
    started = await api("run_workflow", SWEEP)
    api.fake.sparse_get = True
    run = await api("get_workflow_run", started.workflow_run_id)
    assert run.workflow_run_id == started.workflow_run_id
    assert run.workflow_name is None  # a missing name stays allowed
    assert run.status == WorkflowRunStatus.RUNNING


async def test_null_workflow_run_id_is_filled_too_and_a_given_one_is_kept(api: Api) -> None:
    api.fake.script.append(httpx.Response(200, json={"workflow_run_id": None, "status": "completed"}))
    api.fake.script.append(httpx.Response(200, json={"workflow_run_id": "cbwr_9", "status": "completed"}))
    assert (await api("get_workflow_run", "cbwr_asked")).workflow_run_id == "cbwr_asked"
    assert (await api("get_workflow_run", "cbwr_9")).workflow_run_id == "cbwr_9"


async def test_flat_replay_read_through_a_sparse_get(kind: str) -> None:
    fake = FakeCoverbaseAPI(dialect="legacy")
    fake.conflict_shape, fake.sparse_get = "flat", True
    api = Api(kind, fake)
    first = await api("run_workflow", SWEEP, idempotency_key="k")
    again = await api("run_workflow", SWEEP, idempotency_key="k")
    assert again.workflow_run_id == first.workflow_run_id
    await api.close()


# ---- 4. reused-key detection without false alarms ----------------------------------------------


async def test_a_generated_key_on_the_first_attempt_never_raises_reused(api: Api) -> None:
    # The server echoes another spelling (its own name resolution): no replay was possible.
    api.fake.script.append(
        httpx.Response(201, json={"workflow_run_id": "cbwr_1", "workflow_name": "Sweep (v2)", "status": "started"})
    )
    run = await api("run_workflow", SWEEP)
    assert run.workflow_run_id == "cbwr_1"


async def test_letter_case_from_the_servers_name_resolution_is_the_same_workflow(api: Api) -> None:
    api.fake.case_insensitive_names = True
    first = await api("run_workflow", "Quarterly-Privacy-Sweep", idempotency_key="case")
    again = await api("run_workflow", "QUARTERLY-PRIVACY-SWEEP", idempotency_key="case")
    assert first.workflow_name == SWEEP  # the server echoes its own spelling
    assert again.workflow_run_id == first.workflow_run_id
    assert len(api.fake.runs) == 1


async def test_reused_key_is_still_caught_on_a_retry_of_a_generated_key(api: Api) -> None:
    api.fake.add_workflow("adhoc-campaign")
    api.fake.script.extend(
        [
            httpx.ConnectError("refused"),  # the first attempt may have reached the server
            httpx.Response(
                201, json={"workflow_run_id": "cbwr_1", "workflow_name": "adhoc-campaign", "status": "started"}
            ),
        ]
    )
    with pytest.raises(IdempotencyKeyReusedError, match="of workflow 'adhoc-campaign'"):
        await api("run_workflow", SWEEP)


async def test_reused_key_on_a_409_replay_of_another_workflow(kind: str) -> None:
    fake = FakeCoverbaseAPI(dialect="legacy")
    fake.conflict_shape = "flat"  # the other workflow's name only comes with the follow-up GET
    fake.add_workflow("adhoc-campaign")
    api = Api(kind, fake)
    await api("run_workflow", "adhoc-campaign", idempotency_key="shared")
    with pytest.raises(IdempotencyKeyReusedError, match=r"already used for run .* of workflow 'adhoc-campaign'"):
        await api("run_workflow", SWEEP, idempotency_key="shared")
    assert len(fake.runs) == 1
    await api.close()


# ---- 5. one error for "the input is wrong" -----------------------------------------------------


async def test_server_invalid_input_and_the_clients_own_check_share_one_class(api: Api) -> None:
    api.fake.script.append(
        httpx.Response(400, json={"detail": {"code": "invalid_input", "message": "'quarter' is a required property"}})
    )
    caught: list[InvalidInputError] = []
    for value in ({"vendor_filter": {}}, {"when": {1, 2}}):
        try:
            await api("run_workflow", SWEEP, value)
        except InvalidInputError as exc:
            caught.append(exc)
    server, ours = caught
    assert isinstance(server, InputRejectedError) and isinstance(server, BadRequestError)
    assert server.status_code == 400 and server.code == "invalid_input"
    assert "'quarter' is a required property" in str(server)
    assert not isinstance(ours, BadRequestError) and ours.path == "input['when']"
    assert isinstance(server, CoverbaseConfigError) and isinstance(server, ValueError)
    assert len(api.fake.requests) == 1  # the client's own check sent nothing


# ---- 6. a 404 that is not Coverbase's ----------------------------------------------------------


async def test_a_typo_in_the_base_url_path_says_the_url_may_be_wrong(make_api: Any, fake: FakeCoverbaseAPI) -> None:
    api = make_api(fake, base_url=f"{BASE_URL}/vl")
    with pytest.raises(NotFoundError) as info:
        await api("run_workflow", SWEEP)
    message = str(info.value)
    assert f"POST {BASE_URL}/vl/v1/workflows/{SWEEP}/run answered 404 without a Coverbase error" in message
    assert "base URL" in message and "may be wrong" in message
    assert "not found for this API key's org" not in message
    with pytest.raises(NotFoundError, match=f"GET {BASE_URL}/vl/v1/workflows/runs/cbwr_1 answered 404"):
        await api("get_workflow_run", "cbwr_1")


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(404, json={"detail": "Not Found"}),
        httpx.Response(404, text="<html><body>404 page not found</body></html>"),
        httpx.Response(404),
        httpx.Response(404, json={"message": "no Route matched with those values"}),
    ],
)
async def test_any_uncoded_404_points_at_the_url(api: Api, response: httpx.Response) -> None:
    api.fake.script.append(httpx.Response(404, content=response.content, headers=response.headers))
    with pytest.raises(NotFoundError, match="may be wrong"):
        await api("run_workflow", SWEEP)


async def test_coverbase_404s_keep_their_own_messages(api: Api) -> None:
    with pytest.raises(NotFoundError, match="workflow 'nope' not found for this API key's org") as info:
        await api("run_workflow", "nope")
    assert "may be wrong" not in str(info.value)
    with pytest.raises(NotFoundError, match="workflow run 'cbwr_x' not found"):
        await api("get_workflow_run", "cbwr_x")


async def test_replay_is_logged_with_the_run_and_key(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="airflow_provider_coverbase.client")
    fake = FakeCoverbaseAPI(dialect="legacy")
    api = Api(kind, fake)
    run = await api("run_workflow", SWEEP, idempotency_key="k-log")
    await api("run_workflow", SWEEP, idempotency_key="k-log")
    assert f"Coverbase replayed run {run.workflow_run_id}, already started with idempotency key k-log" in caplog.text
    assert json.loads(fake.requests[1].content) == {"input": {}}
    await api.close()


# ---- 8. why a run failed: read from what the API gives, said after which checkpoint ------------


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"error": "Questionnaire template not found."}, "Questionnaire template not found."),
        ({"error": {"code": "template_missing", "message": "No template"}}, "No template"),
        ({"error_message": "SMTP down"}, "SMTP down"),
        ({"failure_reason": "Loop breaker tripped"}, "Loop breaker tripped"),
        ({"reason": "Owner left"}, "Owner left"),
        ({}, None),
    ],
)
async def test_failure_reason_of_a_legacy_run_body(kind: str, extra: dict[str, Any], reason: str | None) -> None:
    fake = FakeCoverbaseAPI(dialect="legacy")
    api = Api(kind, fake)
    body = {
        "workflow_run_id": "cbwfr_1",
        "workflow_name": SWEEP,
        "status": "failed",
        "checkpoints_reached": ["vendors_selected"],
        **extra,
    }
    fake.script.append(httpx.Response(200, json=body))
    run = await api("get_workflow_run", "cbwfr_1")
    error = outcome_error(run, "https://dash.example/runs/cbwfr_1")

    assert run.failure_reason == reason
    assert run.to_summary()["failure_reason"] == reason
    assert error is not None
    text = str(error)
    # The reason first, then the run and its link (a space before the bracket: the log view links the URL).
    assert text.startswith("Coverbase run failed after checkpoint 'vendors_selected'")  # not "last checkpoint"
    assert text.endswith(f"(run cbwfr_1, workflow '{SWEEP}', https://dash.example/runs/cbwfr_1 )")
    if reason:
        assert f"'vendors_selected': {reason.rstrip('.')} (run" in text
    else:
        assert "; Coverbase gave no reason (run" in text
    await api.close()


async def test_failure_reason_of_a_current_run_is_the_failed_steps_message(kind: str) -> None:
    fake = FakeCoverbaseAPI(dialect="current")
    api = Api(kind, fake)
    run = await api("run_workflow", SWEEP)
    fake.set_status(
        run.workflow_run_id,
        "failed",
        steps=[
            {"step_id": "cbwrs_1", "component_name": "Select vendors", "status": "success"},
            {"step_id": "cbwrs_2", "component_name": "Send", "status": "failed", "message": "SMTP down"},
        ],
    )
    got = await api("get_workflow_run", run.workflow_run_id)
    text = str(outcome_error(got))
    assert got.failure_reason == "SMTP down"
    assert text == (
        f"Coverbase run failed after checkpoint 'Select vendors', at step 'Send': SMTP down "
        f"(run {run.workflow_run_id}, workflow '{SWEEP}')"
    )
    fake.set_status(run.workflow_run_id, "canceled", steps=[])
    cancelled = await api("get_workflow_run", run.workflow_run_id)
    assert "Coverbase run canceled before reaching any checkpoint (run" in str(outcome_error(cancelled))
    await api.close()
