"""Client behaviour against a stateful fake server, each scenario on the sync and the async client."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from airflow_provider_coverbase import exceptions as errors
from airflow_provider_coverbase.client import RetryPolicy
from airflow_provider_coverbase.models import WorkflowRunStatus
from tests.client.conftest import Api
from tests.fake_api import API_KEY, OTHER_ORG_KEY, FakeCoverbaseAPI

SWEEP = "quarterly-privacy-sweep"
SWEEP_INPUT = {"quarter": "2026-Q4", "vendor_filter": {"tags": ["processes_pii"], "tier": 1}}


def error(status: int, detail: Any, headers: dict[str, str] | None = None, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"detail": detail, **extra}, headers=headers)


# ---- starting runs ----------------------------------------------------------------------------


async def test_run_workflow_sends_input_key_and_auth(api: Api) -> None:
    run = await api("run_workflow", SWEEP, SWEEP_INPUT)

    assert run.workflow_name == SWEEP
    assert run.status == WorkflowRunStatus.RUNNING  # "running" (legacy) and "started" (current)
    assert run.started_at == datetime(2025, 5, 7, tzinfo=UTC)
    (request,) = api.fake.requests
    assert request.method == "POST"
    assert request.url.raw_path == b"/v1/workflows/quarterly-privacy-sweep/run"
    assert json.loads(request.content) == {"input": SWEEP_INPUT}
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"].startswith("cbaf-")
    assert len(api.fake.runs) == 1


async def test_run_without_input_sends_an_empty_object(api: Api) -> None:
    await api("run_workflow", SWEEP)
    assert json.loads(api.fake.requests[0].content) == {"input": {}}


async def test_caller_idempotency_key_is_sent_as_given(api: Api) -> None:
    await api("run_workflow", SWEEP, {}, idempotency_key="sweep-2026-Q4")
    assert api.fake.requests[0].headers["idempotency-key"] == "sweep-2026-Q4"


@pytest.mark.parametrize(
    "name",
    ["vendor sweep", "eu/vendors", "what?", "tier#1", "100% pii", "fournisseurs-été", "供应商", "..", "."],
)
async def test_workflow_name_is_one_encoded_path_segment(api: Api, name: str) -> None:
    api.fake.add_workflow(name)
    run = await api("run_workflow", name)

    raw = api.fake.requests[0].url.raw_path.decode("ascii")
    assert raw.startswith("/v1/workflows/") and raw.endswith("/run")
    assert raw.count("/") == 4  # the name never adds a path segment, and no query or fragment appears
    assert "?" not in raw and "#" not in raw
    assert run.workflow_name == name  # the fake decoded exactly the name we sent
    assert [r.name for r in api.fake.runs.values()] == [name]


async def test_same_key_twice_starts_one_run_and_returns_it(api: Api) -> None:
    first = await api("run_workflow", SWEEP, SWEEP_INPUT, idempotency_key="k-1")
    second = await api("run_workflow", SWEEP, SWEEP_INPUT, idempotency_key="k-1")

    assert second.workflow_run_id == first.workflow_run_id
    assert len(api.fake.runs) == 1


async def test_legacy_conflict_without_the_run_is_an_error(kind: str, legacy_fake: FakeCoverbaseAPI) -> None:
    api = Api(kind, legacy_fake)
    legacy_fake.script.append(
        error(409, {"code": "idempotency_conflict", "message": "A run already exists for this idempotency key."})
    )
    with pytest.raises(errors.IdempotencyConflictError, match="k-9") as info:
        await api("run_workflow", SWEEP, idempotency_key="k-9")
    assert info.value.status_code == 409
    assert len(legacy_fake.requests) == 1


async def test_key_reused_for_another_workflow_is_reported(api: Api) -> None:
    api.fake.add_workflow("adhoc-campaign")
    # Current API: a 201 replay of the first run. Legacy: a 409 carrying it. Both are detected.
    await api("run_workflow", SWEEP, idempotency_key="shared")
    with pytest.raises(errors.IdempotencyKeyReusedError, match=r"already used for run .* of workflow 'quarterly"):
        await api("run_workflow", "adhoc-campaign", idempotency_key="shared")
    assert len(api.fake.runs) == 1


async def test_run_workflow_definition_posts_the_id(kind: str, legacy_fake: FakeCoverbaseAPI) -> None:
    api = Api(kind, legacy_fake)
    run = await api("run_workflow_definition", "cbwfdef_1a2b3c4d5e6f7a8b", {"quarter": "Q1"})

    request = legacy_fake.requests[0]
    assert request.url.raw_path == b"/v1/workflows/runs"
    assert json.loads(request.content) == {
        "workflow_definition_id": "cbwfdef_1a2b3c4d5e6f7a8b",
        "input": {"quarter": "Q1"},
    }
    assert "idempotency-key" in request.headers
    assert run.workflow_definition_id == "cbwfdef_1a2b3c4d5e6f7a8b"


# ---- input checks, before any request ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"due": datetime(2026, 12, 31, tzinfo=UTC)}, "input['due']"),
        ({"vendor_filter": {"since": {datetime(2026, 1, 1).date()}}}, "input['vendor_filter']['since']"),
        ({"tiers": [1, 2, float("nan")]}, "input['tiers'][2]"),
        ({"x": {1: "int key"}}, "input['x']"),
    ],
)
async def test_unserialisable_input_is_rejected_before_sending(api: Api, value: Any, path: str) -> None:
    with pytest.raises(errors.InvalidInputError) as info:
        await api("run_workflow", SWEEP, value)
    assert info.value.path == path
    assert path in str(info.value)
    assert api.fake.requests == []


async def test_input_must_be_an_object(api: Api) -> None:
    with pytest.raises(errors.InvalidInputError, match="must be a JSON object"):
        await api("run_workflow", SWEEP, ["not", "an", "object"])
    assert api.fake.requests == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workflow_name": ""}, "non-empty"),
        ({"workflow_name": " padded "}, "leading or trailing"),
        ({"workflow_name": SWEEP, "idempotency_key": "bad\nkey"}, "printable ASCII"),
        ({"workflow_name": SWEEP, "idempotency_key": "x" * 300}, "at most 255"),
    ],
)
async def test_bad_arguments_fail_before_sending(api: Api, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.CoverbaseConfigError, match=message):
        await api("run_workflow", **kwargs)
    assert api.fake.requests == []


# ---- retries ---------------------------------------------------------------------------------


async def test_transient_errors_are_retried_with_one_key_and_one_run(api: Api) -> None:
    api.fake.script.extend(
        [
            error(503, {"code": "unavailable", "message": "try later"}),
            httpx.ConnectError("connection refused"),
            error(500, "Internal Server Error"),
        ]
    )
    run = await api("run_workflow", SWEEP, SWEEP_INPUT)

    assert len(api.fake.requests) == 4
    assert len({r.headers["idempotency-key"] for r in api.fake.requests}) == 1
    assert len({r.content for r in api.fake.requests}) == 1
    assert api.sleeps == [0.5, 1.0, 2.0]  # exponential backoff (jitter off in this fixture)
    assert list(api.fake.runs) == [run.workflow_run_id]


async def test_lost_response_is_retried_and_replayed_not_restarted(api: Api) -> None:
    api.fake.lose_next_response = 1  # the run is committed, then the answer never arrives
    run = await api("run_workflow", SWEEP, SWEEP_INPUT)

    assert len(api.fake.requests) == 2
    assert api.fake.requests[0].headers["idempotency-key"] == api.fake.requests[1].headers["idempotency-key"]
    assert list(api.fake.runs) == [run.workflow_run_id]
    assert run.workflow_name == SWEEP


async def test_retry_after_header_and_body_are_honoured(api: Api) -> None:
    api.fake.script.extend(
        [
            error(429, {"code": "rate_limited", "message": "slow down"}, headers={"Retry-After": "7"}),
            error(429, {"code": "rate_limited", "message": "slow down"}, retry_after=3),
            error(503, "busy", headers={"Retry-After": "0"}),
        ]
    )
    await api("run_workflow", SWEEP)
    assert api.sleeps == [7.0, 3.0, 0.0]


async def test_retry_after_beyond_the_cap_is_not_waited_for(make_api: Any, fake: FakeCoverbaseAPI) -> None:
    api = make_api(fake, retry=RetryPolicy(max_attempts=4, jitter=0.0, max_retry_after=30))
    fake.script.append(error(429, {"code": "rate_limited", "message": "later"}, retry_after=600))

    with pytest.raises(errors.RateLimitError, match="asked to wait 600 s") as info:
        await api("run_workflow", SWEEP)
    assert info.value.retry_after == 600
    assert info.value.attempts == 1
    assert api.sleeps == []
    assert fake.runs == {}


async def test_exhausted_retries_say_how_many_attempts(api: Api) -> None:
    api.fake.script.extend([error(502, "Bad Gateway")] * 4)
    with pytest.raises(errors.ServerError) as info:
        await api("get_workflow_run", "cbwr_x")
    assert info.value.attempts == 4
    assert "(after 4 attempts)" in str(info.value)
    assert len(api.fake.requests) == 4
    assert len(api.sleeps) == 3


async def test_exhausted_connection_errors_raise_a_transport_error(api: Api) -> None:
    api.fake.script.extend([httpx.ConnectError("refused")] * 4)
    with pytest.raises(errors.CoverbaseConnectionError, match="could not reach Coverbase") as info:
        await api("check_auth")
    assert not isinstance(info.value, errors.CoverbaseTimeoutError)
    assert info.value.attempts == 4


async def test_timeouts_are_retried_then_reported(api: Api) -> None:
    api.fake.script.extend([httpx.ReadTimeout("slow")] * 4)
    with pytest.raises(errors.CoverbaseTimeoutError, match="did not answer in time") as info:
        await api("check_auth")
    assert info.value.attempts == 4


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
async def test_client_errors_are_never_retried(api: Api, status: int) -> None:
    api.fake.script.append(error(status, {"code": "whatever", "message": "no"}))
    with pytest.raises(Exception, match=str(status)):
        await api("run_workflow", SWEEP)
    assert len(api.fake.requests) == 1
    assert api.sleeps == []


async def test_default_timeouts_are_set_on_every_request(api: Api) -> None:
    await api("check_auth")
    timeout = api.fake.requests[0].extensions["timeout"]
    assert timeout == {"connect": 10.0, "read": 30.0, "write": 30.0, "pool": 30.0}


async def test_timeouts_are_configurable(make_api: Any, fake: FakeCoverbaseAPI) -> None:
    api = make_api(fake, timeout=5.0, connect_timeout=2.0)
    await api("check_auth")
    assert fake.requests[0].extensions["timeout"] == {"connect": 2.0, "read": 5.0, "write": 5.0, "pool": 5.0}


# ---- every documented error, both contracts ---------------------------------------------------


@pytest.mark.parametrize(
    ("response", "cls", "text"),
    [
        (
            error(400, {"code": "invalid_input", "message": "'quarter' is a required property"}),
            errors.BadRequestError,
            "rejected the input to start workflow 'quarterly-privacy-sweep': 'quarter' is a required",
        ),
        (
            error(401, {"code": "unauthorized", "message": "Invalid or expired API key."}),
            errors.AuthenticationError,
            "rejected the API key: Invalid or expired API key",
        ),
        (error(401, "Invalid or expired API key."), errors.AuthenticationError, "Check the connection's API key"),
        (error(403, "Not authenticated"), errors.PermissionDeniedError, "(permission denied): Not authenticated"),
        (
            error(403, {"code": "ip_not_allowed", "message": "This request originates from ..."}),
            errors.PermissionDeniedError,
            "not in the org's API allowlist",
        ),
        (
            error(404, {"code": "workflow_not_found", "message": "Workflow 'x' not found."}),
            errors.NotFoundError,
            "workflow 'quarterly-privacy-sweep' not found for this API key's org",
        ),
        (
            error(409, {"code": "workflow_disabled", "message": "Workflow 'q' is disabled."}),
            errors.WorkflowDisabledError,
            "is disabled in Coverbase; enable it there",
        ),
        (
            error(
                422,
                [
                    {
                        "loc": ["body", "input"],
                        "msg": "Input should be a valid dictionary",
                        "type": "dict_type",
                    }
                ],
            ),
            errors.UnprocessableEntityError,
            "body.input: Input should be a valid dictionary",
        ),
    ],
)
async def test_error_mapping(api: Api, response: httpx.Response, cls: type[Exception], text: str) -> None:
    # A fresh copy: a parametrized response object is shared by the sync and async runs.
    api.fake.script.append(httpx.Response(response.status_code, content=response.content, headers=response.headers))
    with pytest.raises(cls) as info:
        await api("run_workflow", SWEEP)
    assert text in str(info.value)
    assert f"HTTP {response.status_code}" in str(info.value)


async def test_unknown_run_of_this_or_another_org_is_not_found(api: Api) -> None:
    run = await api("run_workflow", SWEEP)
    other = Api(api.kind, api.fake, api_key=OTHER_ORG_KEY)
    with pytest.raises(errors.NotFoundError, match=f"workflow run '{run.workflow_run_id}' not found") as info:
        await other("get_workflow_run", run.workflow_run_id)
    assert info.value.code == "workflow_run_not_found"
    await other.close()


async def test_real_fake_errors_for_unknown_and_disabled_workflows(api: Api) -> None:
    api.fake.add_workflow("paused-wf", enabled=False)
    with pytest.raises(errors.NotFoundError, match="workflow 'nope' not found") as missing:
        await api("run_workflow", "nope")
    with pytest.raises(errors.WorkflowDisabledError) as disabled:
        await api("run_workflow", "paused-wf")
    assert missing.value.code == "workflow_not_found"
    assert disabled.value.code == "workflow_disabled"
    if api.fake.dialect == "current":
        assert missing.value.request_id == "41ff4305-740d-4181-bed9-1fbe21bd69ab"
        assert "[request_id=41ff4305" in str(missing.value)
    else:
        assert missing.value.request_id is None


async def test_request_id_from_header_only(api: Api) -> None:
    api.fake.script.append(
        error(
            404,
            {"code": "workflow_not_found", "message": "nope"},
            headers={"x-coverbase-request-id": "rid-1"},
        )
    )
    with pytest.raises(errors.NotFoundError) as info:
        await api("run_workflow", SWEEP)
    assert info.value.request_id == "rid-1"


async def test_dispatch_failed_is_not_retried_and_names_the_run(api: Api) -> None:
    message = (
        "Workflow run was created but could not be dispatched. "
        "Retry with the same workflow run id (cbwr_a8f2c19e3d4b5e6f7a8b9c0d1e2f3a4b)."
    )
    api.fake.script.append(error(502, {"code": "workflow_dispatch_failed", "message": message}))
    with pytest.raises(errors.WorkflowDispatchFailedError, match="Not retried") as info:
        await api("run_workflow", SWEEP)
    assert info.value.workflow_run_id == "cbwr_a8f2c19e3d4b5e6f7a8b9c0d1e2f3a4b"
    assert info.value.attempts == 1
    assert len(api.fake.requests) == 1  # the run exists: another POST could start a second one
    assert isinstance(info.value, errors.ServerError)


async def test_plain_text_error_body(api: Api) -> None:
    api.fake.script.append(httpx.Response(404, text="no such thing"))
    with pytest.raises(errors.NotFoundError, match="no such thing"):
        await api("get_workflow_run", "cbwr_1")


async def test_bad_success_body_is_a_validation_error(api: Api) -> None:
    api.fake.script.append(httpx.Response(200, json={"workflow_run_id": "cbwr_1"}))
    with pytest.raises(errors.CoverbaseResponseValidationError, match="status"):
        await api("get_workflow_run", "cbwr_1")
    api.fake.script.append(httpx.Response(201, json={"status": "running"}))
    with pytest.raises(errors.CoverbaseResponseValidationError, match="workflow_run_id"):
        await api("run_workflow", SWEEP)  # a start must name its run: no id was asked for


async def test_conflict_is_a_conflict_error(api: Api) -> None:
    api.fake.script.append(error(409, {"code": "something_new", "message": "?"}))
    with pytest.raises(errors.ConflictError):
        await api("run_workflow", SWEEP)


# ---- reading runs -----------------------------------------------------------------------------


async def test_get_run_reads_both_contracts(api: Api) -> None:
    run = await api("run_workflow", SWEEP)
    if api.fake.dialect == "legacy":
        api.fake.set_status(
            run.workflow_run_id,
            "completed",
            checkpoints=["vendors_selected", "report_delivered"],
            output={"vendors_processed": 38},
            completed_at=1746579600,
        )
    else:
        api.fake.set_status(
            run.workflow_run_id,
            "canceled",
            completed_at=1746579600,
            steps=[
                {"step_id": "cbwrs_1", "component_name": "Select vendors", "status": "success"},
                {"step_id": "cbwrs_2", "component_name": "Send", "status": "failed", "message": "SMTP down"},
            ],
        )
    got = await api("get_workflow_run", run.workflow_run_id)

    assert got.is_terminal
    assert got.completed_at == datetime(2025, 5, 7, 1, 0, tzinfo=UTC)
    if api.fake.dialect == "legacy":
        assert got.status == WorkflowRunStatus.COMPLETED
        assert got.checkpoints == ["vendors_selected", "report_delivered"]
        assert got.output == {"vendors_processed": 38}
    else:
        assert got.status == WorkflowRunStatus.CANCELLED
        assert got.api_status == "canceled"
        assert got.checkpoints == ["Select vendors"]
        assert got.failed_step is not None and got.failed_step.message == "SMTP down"


async def test_unknown_status_is_kept_and_not_terminal(api: Api) -> None:
    api.fake.script.append(
        httpx.Response(200, json={"workflow_run_id": "cbwr_1", "status": "awaiting_approval", "extra": 1})
    )
    run = await api("get_workflow_run", "cbwr_1")
    assert run.status == "awaiting_approval"
    assert not run.status.is_known
    assert not run.is_terminal
    assert run.model_extra == {"extra": 1}


async def test_list_runs_sends_filters(api: Api) -> None:
    for _ in range(3):
        await api("run_workflow", SWEEP)
    page = await api(
        "list_workflow_runs",
        workflow_name=SWEEP,
        status=["started", "running"],
        created_at_after=datetime(2026, 1, 1, tzinfo=UTC),
        created_at_before=1893456000,
        limit=2,
        offset=0,
    )
    request = api.fake.requests[-1]
    assert request.url.params.multi_items() == [
        ("workflow_name", SWEEP),
        ("status", "started"),
        ("status", "running"),
        ("created_at_after", "1767225600"),
        ("created_at_before", "1893456000"),
        ("limit", "2"),
        ("offset", "0"),
    ]
    assert page.total == 3 and len(page.data) == 2 and page.has_more


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0},
        {"limit": 501},
        {"limit": -1},
        {"offset": -1},
        {"created_at_after": datetime(2026, 1, 1)},  # naive on purpose
        {"created_at_before": "yesterday"},
        {"workflow_name": ""},
    ],
)
async def test_list_arguments_are_checked_before_sending(api: Api, kwargs: dict[str, Any]) -> None:
    with pytest.raises(errors.CoverbaseConfigError):
        await api("list_workflow_runs", **kwargs)
    assert api.fake.requests == []


async def test_check_auth(api: Api) -> None:
    assert await api("check_auth") == "Auth successful"
    bad = Api(api.kind, api.fake, api_key="ak_test_wrong_key")
    with pytest.raises(errors.AuthenticationError):
        await bad("check_auth")
    await bad.close()


# ---- the key never leaks ----------------------------------------------------------------------


async def test_api_key_never_appears_in_logs_errors_reprs_or_urls(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api.fake.script.extend(
        [
            error(503, "busy"),
            httpx.ConnectError(f"refused by {API_KEY[:3]}"),
            error(401, "Invalid or expired API key."),
        ]
    )
    errors: list[BaseException] = []
    try:
        await api("run_workflow", SWEEP)
    except Exception as exc:
        errors.append(exc)
    api.fake.script.extend([error(500, "boom")] * 4)
    try:
        await api("get_workflow_run", "cbwr_1")
    except Exception as exc:
        errors.append(exc)
    await api("run_workflow", SWEEP)

    assert len(errors) == 2
    texts = [caplog.text, repr(api.client), repr(api.client.config)]
    for exc in errors:
        texts += [str(exc), repr(exc), repr(exc.args), repr(vars(exc))]
    texts += [str(request.url) for request in api.fake.requests]
    for text in texts:
        assert API_KEY not in text
        assert API_KEY[8:] not in text
    assert "Retrying in" in caplog.text  # the retries were logged, without the key


async def test_definition_id_on_the_current_api_explains_itself(kind: str) -> None:
    fake = FakeCoverbaseAPI(dialect="current")
    api = Api(kind, fake)
    with pytest.raises(errors.NotFoundError, match="exists only in Coverbase's legacy API; start it by workflow_name"):
        await api("run_workflow_definition", "cbwd_1")
    await api.close()
