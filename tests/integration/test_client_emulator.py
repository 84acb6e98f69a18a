"""Loopback integration: the real sync and async clients against the emulator, over real HTTP.

Every test runs with both clients (``kind``) and, where the behaviour exists in both contracts,
both dialects (``dialect``). The emulator's clock is frozen; tests move it with ``advance()``.
Sections follow the emulator's behaviours: run lifecycle, path encoding, idempotency and lost
responses, injected faults, limits, errors, definitions, listing, auth and the request log, and
sync/async parity.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from airflow_provider_coverbase.client import RetryPolicy
from airflow_provider_coverbase.exceptions import (
    AuthenticationError,
    BadRequestError,
    CoverbaseConnectionError,
    CoverbaseTimeoutError,
    IdempotencyKeyReusedError,
    NotFoundError,
    RateLimitError,
    ServerError,
    UnprocessableEntityError,
    WorkflowDisabledError,
    WorkflowDispatchFailedError,
)
from airflow_provider_coverbase.models import WorkflowRun, WorkflowRunStatus
from airflow_provider_coverbase.testing import CoverbaseEmulator
from tests.integration.conftest import Api, MakeApi
from tests.ports import free_port

pytestmark = pytest.mark.integration

SWEEP = "quarterly-privacy-sweep"
SWEEP_INPUT: dict[str, Any] = {"quarter": "2026-Q4", "vendor_filter": {"tier": [1, 2]}}
SWEEP_CHECKPOINTS = ["vendors_selected", "questionnaires_dispatched", "responses_aggregated", "report_delivered"]
#: The backoff of the tests' RetryPolicy (0.5 s doubling, no jitter) before attempts 2, 3 and 4.
BACKOFF = [0.5, 1.0, 2.0]
RUN_ID = {"legacy": re.compile(r"^cbwfr_[0-9a-f]{32}$"), "current": re.compile(r"^cbwr_[0-9a-f]{32}$")}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: The API's spelling of a still-going run in each dialect.
RUNNING = {"legacy": "running", "current": "started"}


# ---------------------------------------------------------------------------------------------
# Helpers


async def poll_until_terminal(
    api: Api, emulator: CoverbaseEmulator, run_id: str, *, step: float = 0.35, max_polls: int = 200
) -> tuple[WorkflowRun, list[str], list[list[str]]]:
    """GET the run, advance the frozen clock by ``step``, repeat until terminal.

    Returns the final run, the distinct ``api_status`` values seen in order, and every
    ``checkpoints`` list seen. ``step`` = 0.35 never lands on a built-in workflow's boundary.
    """
    statuses: list[str] = []
    checkpoints: list[list[str]] = []
    for _ in range(max_polls):
        run: WorkflowRun = await api("get_workflow_run", run_id)
        assert run.workflow_run_id == run_id
        if not statuses or statuses[-1] != run.api_status:
            statuses.append(run.api_status)
        checkpoints.append(run.checkpoints)
        if run.is_terminal:
            return run, statuses, checkpoints
        emulator.advance(step)
    raise AssertionError(f"run {run_id} not terminal after {max_polls} polls; statuses {statuses}")


def logged(emulator: CoverbaseEmulator, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
    """The emulator's request log, optionally filtered by method and exact (decoded) path."""
    return [
        entry
        for entry in emulator.requests
        if (method is None or entry["method"] == method) and (path is None or entry["path"] == path)
    ]


def run_posts(emulator: CoverbaseEmulator) -> list[dict[str, Any]]:
    """Every run-starting POST the emulator received (by name or by definition)."""
    return [
        e
        for e in emulator.requests
        if e["method"] == "POST" and (e["path"].endswith("/run") or e["path"] == "/v1/workflows/runs")
    ]


def settled_requests(emulator: CoverbaseEmulator, count: int) -> list[dict[str, Any]]:
    """The request log once it holds ``count`` entries, each dropped request put back before its retry.

    The emulator logs a dropped request only after aborting its connection, so its entry can land
    after the retry's entry, or even after the client has returned (see the report of this suite).
    """
    emulator.wait_for(lambda: len(emulator.requests) >= count, timeout=5)
    entries = emulator.requests
    assert len(entries) == count, [e["status"] for e in entries]
    dropped = [e for e in entries if e["status"] == "dropped"]
    ordered = [e for e in entries if e["status"] != "dropped"]
    for entry in dropped:
        key = entry["headers"].get("idempotency-key")
        retry = next(i for i, e in enumerate(ordered) if e["headers"].get("idempotency-key") == key)
        ordered.insert(retry, entry)
    return ordered


def keys(entries: list[dict[str, Any]]) -> list[str | None]:
    return [e["headers"].get("idempotency-key") for e in entries]


def closed_port_url() -> str:
    """A loopback URL nobody listens on."""
    return f"http://127.0.0.1:{free_port()}"


# ---------------------------------------------------------------------------------------------
# 1. Run lifecycle: start by name, poll to the end state


async def test_start_and_poll_to_completion(api: Api, emulator: CoverbaseEmulator, dialect: str) -> None:
    started: WorkflowRun = await api("run_workflow", SWEEP, SWEEP_INPUT)
    assert RUN_ID[dialect].match(started.workflow_run_id)
    assert started.workflow_name == SWEEP
    assert started.status is WorkflowRunStatus.RUNNING
    assert started.api_status == RUNNING[dialect]
    assert started.input == SWEEP_INPUT
    assert started.started_at is not None and started.started_at.tzinfo is not None

    run, statuses, seen = await poll_until_terminal(api, emulator, started.workflow_run_id)

    assert statuses == [RUNNING[dialect], "completed"]
    assert run.status is WorkflowRunStatus.COMPLETED
    assert run.api_status == "completed"
    assert run.checkpoints == SWEEP_CHECKPOINTS
    # Checkpoints only grow, one prefix of the final list after another.
    assert all(c == SWEEP_CHECKPOINTS[: len(c)] for c in seen)
    assert len({len(c) for c in seen}) == len(SWEEP_CHECKPOINTS) + 1  # 0, 1, 2, 3 and 4 were all observed
    assert run.completed_at is not None and run.started_at is not None
    assert (run.completed_at - run.started_at).total_seconds() == pytest.approx(4, abs=1)
    assert run.workflow_definition_id == emulator.definition_id(SWEEP)
    if dialect == "legacy":
        assert run.checkpoints_reached == SWEEP_CHECKPOINTS
        assert run.steps is None
        assert run.output == {
            "vendors_processed": 38,
            "responses_received": 32,
            "report_url": "https://dashboard.coverbase.app/reports/cbrpt_emulator",
        }
    else:
        assert run.checkpoints_reached is None
        assert run.output is None
        assert run.steps is not None and len(run.steps) == 4
        assert [s.status for s in run.steps] == ["success"] * 4
        assert [s.action_type for s in run.steps] == [
            "select_vendors",
            "send_questionnaire",
            "aggregate_responses",
            "deliver_report",
        ]
        assert all(s.step_id and s.component_id and s.created_at and s.updated_at for s in run.steps)


async def test_run_that_fails(api: Api, emulator: CoverbaseEmulator, dialect: str) -> None:
    started = await api("run_workflow", "always-fails")
    run, statuses, _ = await poll_until_terminal(api, emulator, started.workflow_run_id)

    assert statuses == [RUNNING[dialect], "failed"]
    assert run.status is WorkflowRunStatus.FAILED
    assert run.is_terminal
    assert run.checkpoints == ["vendors_selected"]  # the failing step is not a checkpoint reached
    assert run.output is None
    if dialect == "current":
        assert run.failed_step is not None
        assert run.failed_step.label == "questionnaires_dispatched"
        assert run.failed_step.message == "Questionnaire template not found."
    else:
        assert run.failed_step is None  # the legacy contract carries no step detail


async def test_run_that_gets_cancelled(api: Api, emulator: CoverbaseEmulator, dialect: str) -> None:
    started = await api("run_workflow", "gets-cancelled")
    run, statuses, _ = await poll_until_terminal(api, emulator, started.workflow_run_id)

    spelled = {"legacy": "cancelled", "current": "canceled"}[dialect]
    assert statuses == [RUNNING[dialect], spelled]
    assert run.status is WorkflowRunStatus.CANCELLED
    assert run.api_status == spelled
    assert run.completed_at is not None


async def test_legacy_run_passes_through_pending_and_paused(
    legacy_api: Api, legacy_emulator: CoverbaseEmulator
) -> None:
    started = await legacy_api("run_workflow", "pending-then-paused")
    assert started.status is WorkflowRunStatus.PENDING

    run, statuses, seen = await poll_until_terminal(legacy_api, legacy_emulator, started.workflow_run_id)

    assert statuses == ["pending", "running", "paused", "running", "completed"]
    assert run.checkpoints == ["intake_received", "approved"]
    assert run.output == {"approved": True}
    assert seen[0] == []


async def test_current_run_reports_pending_and_paused_as_started(
    current_api: Api, current_emulator: CoverbaseEmulator
) -> None:
    started = await current_api("run_workflow", "pending-then-paused")
    run, statuses, _ = await poll_until_terminal(current_api, current_emulator, started.workflow_run_id)

    assert statuses == ["started", "completed"]
    assert run.checkpoints == ["intake_received", "approved"]


async def test_stalled_run_never_finishes(api: Api, emulator: CoverbaseEmulator, dialect: str) -> None:
    started = await api("run_workflow", "stalled-forever")
    emulator.advance(24 * 3600)

    run: WorkflowRun = await api("get_workflow_run", started.workflow_run_id)

    assert run.status is WorkflowRunStatus.RUNNING
    assert run.api_status == RUNNING[dialect]
    assert not run.is_terminal
    assert run.completed_at is None
    assert run.checkpoints == ["vendors_selected"]


async def test_input_is_echoed_per_dialect(api: Api, dialect: str) -> None:
    """The current (V3) API drops nulls and echoes numbers under well-known id keys as strings."""
    sent = {"vendor_id": 42, "note": None, "count": 3, "tags": ["a"]}
    run = await api("run_workflow", "adhoc-campaign", sent)

    if dialect == "legacy":
        assert run.input == sent
    else:
        assert run.input == {"vendor_id": "42", "count": 3, "tags": ["a"]}


# ---------------------------------------------------------------------------------------------
# 2. Path encoding


@pytest.mark.parametrize(
    "name",
    [
        "vendor sweep/eu",  # built in
        "what?now",
        "tier#1",
        "100% vendors",
        "fournisseurs/été ☃",
        "..",
        ".",
        "x/run",
        "%2F",
        "a+b&c=d",
    ],
)
async def test_workflow_names_reach_the_server_intact(
    api: Api, emulator: CoverbaseEmulator, name: str, dialect: str
) -> None:
    emulator.set_variants(legacy_v2_endpoints=True)  # list runs is V2+: the legacy dialect serves it on request
    if name != "vendor sweep/eu":
        emulator.add_workflow(name, [("step_one", 0.5), ("step_two", 0.5)], output={"name": name})

    started = await api("run_workflow", name)
    assert started.workflow_name == name
    [post] = run_posts(emulator)
    assert post["path"] == f"/v1/workflows/{name}/run"  # the emulator logs the decoded path

    run, _, _ = await poll_until_terminal(api, emulator, started.workflow_run_id)
    assert run.workflow_name == name
    assert run.status is WorkflowRunStatus.COMPLETED
    assert run.checkpoints == (
        ["vendors_selected", "report_delivered"] if name == "vendor sweep/eu" else ["step_one", "step_two"]
    )

    listed = await api("list_workflow_runs", workflow_name=name)
    assert [r.workflow_run_id for r in listed.data] == [started.workflow_run_id]


async def test_odd_run_ids_are_one_path_segment(api: Api, emulator: CoverbaseEmulator) -> None:
    """A run id never escapes its path segment (no traversal to another endpoint, no query)."""
    await api("run_workflow", "adhoc-campaign")  # something a traversal could wrongly find
    for run_id in ("..", ".", "../../utils/authtest", "a/b", "?limit=1", "#frag", "%2E%2E"):
        with pytest.raises(NotFoundError):
            await api("get_workflow_run", run_id)
        last = emulator.requests[-1]
        assert (last["method"], last["path"], last["query"]) == ("GET", f"/v1/workflows/runs/{run_id}", []), run_id


# ---------------------------------------------------------------------------------------------
# 3-4. Idempotency and lost responses


async def test_same_key_twice_is_one_run(api: Api, emulator: CoverbaseEmulator, dialect: str) -> None:
    first = await api("run_workflow", SWEEP, SWEEP_INPUT, idempotency_key="sweep-2026-Q4")
    emulator.advance(1.5)
    second = await api("run_workflow", SWEEP, SWEEP_INPUT, idempotency_key="sweep-2026-Q4")

    assert second.workflow_run_id == first.workflow_run_id
    assert emulator.run_count() == 1
    assert api.sleeps == []
    # Legacy answers 409 idempotency_conflict carrying the run; current replays the 201.
    assert [e["status"] for e in run_posts(emulator)] == [201, 409 if dialect == "legacy" else 201]
    assert keys(run_posts(emulator)) == ["sweep-2026-Q4", "sweep-2026-Q4"]


async def test_same_key_for_another_workflow_is_refused(api: Api, emulator: CoverbaseEmulator) -> None:
    first = await api("run_workflow", "adhoc-campaign", idempotency_key="shared-key")

    with pytest.raises(IdempotencyKeyReusedError) as caught:
        await api("run_workflow", SWEEP, SWEEP_INPUT, idempotency_key="shared-key")

    error = caught.value
    assert error.code == "idempotency_key_reused"
    assert first.workflow_run_id in str(error)
    assert "adhoc-campaign" in str(error) and SWEEP in str(error)
    assert emulator.run_count() == 1
    assert api.sleeps == []


async def test_keys_are_per_org(make_api: MakeApi, emulator: CoverbaseEmulator) -> None:
    org1 = make_api(emulator)
    org2 = make_api(emulator, api_key=emulator.other_api_key)

    one = await org1("run_workflow", "adhoc-campaign", idempotency_key="nightly")
    two = await org2("run_workflow", "adhoc-campaign", idempotency_key="nightly")
    again = await org2("run_workflow", "adhoc-campaign", idempotency_key="nightly")

    assert two.workflow_run_id != one.workflow_run_id
    assert again.workflow_run_id == two.workflow_run_id
    assert emulator.run_count() == 1
    assert emulator.run_count(emulator.other_api_key) == 1


async def test_keys_expire_after_a_day(api: Api, emulator: CoverbaseEmulator) -> None:
    first = await api("run_workflow", "adhoc-campaign", idempotency_key="daily")
    emulator.advance(24 * 3600 + 1)
    second = await api("run_workflow", "adhoc-campaign", idempotency_key="daily")

    assert second.workflow_run_id != first.workflow_run_id
    assert emulator.run_count() == 2


async def test_generated_key_is_fresh_per_call(api: Api, emulator: CoverbaseEmulator) -> None:
    first = await api("run_workflow", "adhoc-campaign")
    second = await api("run_workflow", "adhoc-campaign")

    assert first.workflow_run_id != second.workflow_run_id
    generated = keys(run_posts(emulator))
    assert len(set(generated)) == 2
    assert all(k is not None and re.fullmatch(r"cbaf-[0-9a-f-]{36}", k) for k in generated)


@pytest.mark.parametrize("explicit_key", [None, "lost-response-key"])
async def test_lost_response_is_retried_into_one_run(
    api: Api, emulator: CoverbaseEmulator, dialect: str, explicit_key: str | None
) -> None:
    emulator.drop_next_response_after_commit()

    run = await api("run_workflow", SWEEP, SWEEP_INPUT, idempotency_key=explicit_key)

    assert emulator.run_count() == 1
    [stored] = emulator.state.runs  # the one run the emulator committed
    assert run.workflow_run_id == stored
    posts = settled_requests(emulator, 2)
    assert [e["status"] for e in posts] == ["dropped", 409 if dialect == "legacy" else 201]
    sent = keys(posts)
    assert sent[0] is not None and sent[0] == sent[1]
    if explicit_key is not None:
        assert sent[0] == explicit_key
    assert api.sleeps == [0.5]


async def test_only_run_posts_are_dropped(api: Api, emulator: CoverbaseEmulator, dialect: str) -> None:
    """An armed drop waits for the next successful run POST; reads before it are answered."""
    emulator.set_variants(legacy_v2_endpoints=True)  # list runs is V2+: the legacy dialect serves it on request
    emulator.drop_next_response_after_commit()
    assert await api("check_auth") == "Auth successful"
    assert (await api("list_workflow_runs")).total == 0

    started = await api("run_workflow", "adhoc-campaign")

    statuses = [e["status"] for e in settled_requests(emulator, 4)]
    assert statuses == [200, 200, "dropped", 409 if dialect == "legacy" else 201]
    assert emulator.run_count() == 1
    assert (await api("get_workflow_run", started.workflow_run_id)).workflow_name == "adhoc-campaign"


# ---------------------------------------------------------------------------------------------
# 5. Injected faults and the retry policy


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_transient_server_errors_are_retried(
    api: Api, emulator: CoverbaseEmulator, status: int, dialect: str
) -> None:
    emulator.fail_next(2, status=status)

    run = await api("run_workflow", SWEEP, SWEEP_INPUT)

    assert api.sleeps == BACKOFF[:2]
    posts = run_posts(emulator)
    assert [e["status"] for e in posts] == [status, status, 201]
    assert len(set(keys(posts))) == 1  # every retry re-sends the call's one key
    assert emulator.run_count() == 1
    assert RUN_ID[dialect].match(run.workflow_run_id)


async def test_server_errors_past_the_budget_raise(api: Api, emulator: CoverbaseEmulator, dialect: str) -> None:
    emulator.fail_next(5, status=500)

    with pytest.raises(ServerError) as caught:
        await api("run_workflow", "adhoc-campaign")

    error = caught.value
    assert type(error) is ServerError
    assert error.attempts == 4
    assert error.status_code == 500
    assert error.code == "internal_error"
    assert error.api_message == "Injected fault."
    assert "(after 4 attempts)" in str(error)
    assert api.sleeps == BACKOFF
    assert len(run_posts(emulator)) == 4
    assert emulator.run_count() == 0  # nothing is committed for a failed request
    if dialect == "current":
        assert error.request_id is not None and UUID.match(error.request_id)
    else:
        assert error.request_id is None
    # The fifth fault is still armed: the next request gets it (and is retried).
    assert await api("check_auth") == "Auth successful"
    assert api.sleeps == [*BACKOFF, 0.5]
    assert [e["status"] for e in logged(emulator, "GET")] == [500, 200]


async def test_rate_limit_fault_honours_retry_after(api: Api, emulator: CoverbaseEmulator) -> None:
    emulator.fail_next(1, status=429, retry_after=3)

    run = await api("run_workflow", "adhoc-campaign")

    assert api.sleeps == [3.0]
    assert [e["status"] for e in run_posts(emulator)] == [429, 201]
    assert emulator.run_count() == 1
    assert run.workflow_name == "adhoc-campaign"


def assert_raised_at_once_without_a_run(error: RateLimitError, api: Api, emulator: CoverbaseEmulator) -> None:
    """A 429 asking for a 600 s wait, over the retry cap: raised on the first attempt, no sleep, no run."""
    assert error.attempts == 1
    assert error.retry_after == 600
    assert error.code == "rate_limited"
    assert api.sleeps == []
    assert emulator.run_count() == 0


async def test_rate_limit_fault_over_the_cap_raises_at_once(api: Api, emulator: CoverbaseEmulator) -> None:
    emulator.fail_next(1, status=429, retry_after=600)

    with pytest.raises(RateLimitError) as caught:
        await api("run_workflow", "adhoc-campaign")

    assert_raised_at_once_without_a_run(caught.value, api, emulator)
    assert "wait 600 s" in str(caught.value)


async def test_fault_limited_to_a_path_prefix(api: Api, emulator: CoverbaseEmulator) -> None:
    started = await api("run_workflow", "adhoc-campaign")
    emulator.fail_next(1, status=503, path_prefix="/v1/workflows/runs/")

    await api("check_auth")  # not under the prefix: unaffected
    run = await api("get_workflow_run", started.workflow_run_id)

    assert run.workflow_run_id == started.workflow_run_id
    assert api.sleeps == [0.5]
    assert [e["status"] for e in logged(emulator, "GET")] == [200, 503, 200]


async def test_slow_server_times_out_and_is_retried(make_api: MakeApi, legacy_emulator: CoverbaseEmulator) -> None:
    emulator = legacy_emulator
    api = make_api(emulator, timeout=0.05, retry=RetryPolicy(max_attempts=2, jitter=0.0))
    emulator.delay(0.2)
    try:
        with pytest.raises(CoverbaseTimeoutError) as caught:
            await api("check_auth")
    finally:
        emulator.delay(0)
        # The server still answers (and logs) the abandoned requests: wait, so no later test sees them.
        emulator.wait_for(lambda: len(emulator.requests) >= 2, timeout=5)

    assert caught.value.attempts == 2
    assert api.sleeps == [0.5]
    assert "did not answer in time" in str(caught.value)


async def test_nothing_listening_is_a_connection_error(make_api: MakeApi, legacy_emulator: CoverbaseEmulator) -> None:
    emulator = legacy_emulator
    api = make_api(emulator, base_url=closed_port_url())

    with pytest.raises(CoverbaseConnectionError) as caught:
        await api("run_workflow", "adhoc-campaign")

    assert caught.value.attempts == 4
    assert api.sleeps == BACKOFF
    assert emulator.requests == []


# ---------------------------------------------------------------------------------------------
# 6. Per-org limits


async def test_request_budget_waits_out_the_window(make_api: MakeApi, emulator: CoverbaseEmulator) -> None:
    api = make_api(emulator, advance_clock_on_sleep=True)
    emulator.set_limits(requests_per_window=3, window_seconds=10)
    for _ in range(3):
        await api("check_auth")

    run = await api("run_workflow", "adhoc-campaign")  # over budget: told to wait out the window

    assert api.sleeps == [10.0]
    assert [e["status"] for e in emulator.requests] == [200, 200, 200, 429, 201]
    assert run.workflow_name == "adhoc-campaign"
    assert emulator.run_count() == 1


async def test_request_budget_exhausts_retries_when_time_stands_still(api: Api, emulator: CoverbaseEmulator) -> None:
    emulator.set_limits(requests_per_window=1, window_seconds=10)
    await api("check_auth")

    with pytest.raises(RateLimitError) as caught:
        await api("check_auth")

    assert caught.value.attempts == 4
    assert caught.value.retry_after == 10
    assert api.sleeps == [10.0, 10.0, 10.0]


async def test_request_budget_over_the_cap_raises_at_once(api: Api, emulator: CoverbaseEmulator, dialect: str) -> None:
    emulator.set_limits(requests_per_window=1, window_seconds=600)
    await api("check_auth")

    with pytest.raises(RateLimitError) as caught:
        await api("run_workflow", "adhoc-campaign")

    error = caught.value
    assert_raised_at_once_without_a_run(error, api, emulator)
    assert error.api_message is not None and "rate limit" in error.api_message
    assert (error.request_id is not None) is (dialect == "current")


async def test_budget_is_per_org(make_api: MakeApi, emulator: CoverbaseEmulator) -> None:
    org1 = make_api(emulator)
    org2 = make_api(emulator, api_key=emulator.other_api_key)
    emulator.set_limits(requests_per_window=1, window_seconds=600, org_id=emulator.org_id)
    await org1("check_auth")

    with pytest.raises(RateLimitError):
        await org1("check_auth")
    assert await org2("check_auth") == "Auth successful"
    assert await org2("check_auth") == "Auth successful"


async def test_concurrency_limit_blocks_until_the_first_run_finishes(
    make_api: MakeApi, emulator: CoverbaseEmulator
) -> None:
    api = make_api(emulator, advance_clock_on_sleep=True)
    emulator.set_limits(max_concurrent_runs=1)
    first = await api("run_workflow", SWEEP, SWEEP_INPUT)  # finishes 4 emulated seconds later

    second = await api("run_workflow", "adhoc-campaign")

    assert api.sleeps == [4.0]  # the emulator's retry_after: when the first run ends
    posts = run_posts(emulator)
    assert [e["status"] for e in posts] == [201, 429, 201]
    assert keys(posts)[1] == keys(posts)[2]
    assert (await api("get_workflow_run", first.workflow_run_id)).status is WorkflowRunStatus.COMPLETED
    assert second.workflow_run_id != first.workflow_run_id
    assert emulator.run_count() == 2


async def test_concurrency_limit_with_a_run_that_never_ends(api: Api, emulator: CoverbaseEmulator) -> None:
    emulator.set_limits(max_concurrent_runs=1)
    await api("run_workflow", "stalled-forever")

    with pytest.raises(RateLimitError) as caught:
        await api("run_workflow", "adhoc-campaign")

    assert caught.value.attempts == 4
    assert caught.value.retry_after == 60  # nothing will finish: the emulator says a minute
    assert api.sleeps == [60.0, 60.0, 60.0]
    assert caught.value.api_message is not None and "concurrency" in caught.value.api_message
    assert emulator.run_count() == 1


# ---------------------------------------------------------------------------------------------
# 7. Errors of both dialects


async def test_unknown_workflow(api: Api, emulator: CoverbaseEmulator, dialect: str) -> None:
    with pytest.raises(NotFoundError) as caught:
        await api("run_workflow", "no-such-workflow")

    error = caught.value
    assert "workflow 'no-such-workflow' not found for this API key's org" in str(error)
    assert error.code == "workflow_not_found"
    assert error.status_code == 404
    assert error.attempts == 1
    assert emulator.run_count() == 0
    if dialect == "current":
        assert error.request_id is not None and UUID.match(error.request_id)
        assert f"[request_id={error.request_id}]" in str(error)
    else:
        assert error.request_id is None


async def test_disabled_workflow(api: Api, emulator: CoverbaseEmulator) -> None:
    with pytest.raises(WorkflowDisabledError) as caught:
        await api("run_workflow", "disabled-workflow")

    assert caught.value.status_code == 409
    assert "disabled in Coverbase" in str(caught.value)
    assert caught.value.attempts == 1
    assert emulator.run_count() == 0


async def test_legacy_schema_mismatch_names_the_field(legacy_api: Api, legacy_emulator: CoverbaseEmulator) -> None:
    with pytest.raises(BadRequestError) as caught:
        await legacy_api("run_workflow", SWEEP, {"vendor_filter": {}})

    error = caught.value
    assert error.code == "invalid_input"
    assert "'quarter' is a required property" in str(error)
    assert "input.quarter" in str(error)
    assert error.attempts == 1
    assert legacy_emulator.run_count() == 0


async def test_legacy_schema_type_mismatch(legacy_api: Api) -> None:
    with pytest.raises(BadRequestError, match=r"quarter"):
        await legacy_api("run_workflow", SWEEP, {"quarter": 4, "vendor_filter": {}})


async def test_current_dialect_does_not_check_the_schema(current_api: Api, current_emulator: CoverbaseEmulator) -> None:
    run = await current_api("run_workflow", SWEEP, {"vendor_filter": {}})
    assert run.input == {"vendor_filter": {}}
    assert current_emulator.run_count() == 1


async def test_wrong_key_is_rejected_without_leaking_it(
    make_api: MakeApi, emulator: CoverbaseEmulator, dialect: str
) -> None:
    secret = "ak_live_not_a_real_key_0123456789abcdef"
    api = make_api(emulator, api_key=secret)

    for call in (("check_auth",), ("run_workflow", "adhoc-campaign"), ("get_workflow_run", "cbwr_x")):
        with pytest.raises(AuthenticationError) as caught:
            await api(*call)
        error = caught.value
        assert error.status_code == 401
        assert error.attempts == 1
        for text in (str(error), repr(error), repr(error.args), repr(error.body)):
            assert secret not in text
        assert "rejected the API key" in str(error)
        assert (error.request_id is not None) is (dialect == "current")
    assert api.sleeps == []
    assert emulator.run_count() == 0
    assert all(e["headers"]["authorization"] == "***" for e in emulator.requests)


async def test_another_orgs_run_is_not_found(make_api: MakeApi, emulator: CoverbaseEmulator) -> None:
    emulator.set_variants(legacy_v2_endpoints=True)  # list runs is V2+: the legacy dialect serves it on request
    org1 = make_api(emulator)
    org2 = make_api(emulator, api_key=emulator.other_api_key)
    run = await org1("run_workflow", "adhoc-campaign")

    with pytest.raises(NotFoundError) as caught:
        await org2("get_workflow_run", run.workflow_run_id)

    assert f"workflow run '{run.workflow_run_id}' not found for this API key's org" in str(caught.value)
    assert caught.value.code == "workflow_run_not_found"
    assert (await org2("list_workflow_runs")).total == 0
    assert (await org1("get_workflow_run", run.workflow_run_id)).workflow_run_id == run.workflow_run_id


async def test_current_dispatch_failure_is_not_retried_and_names_the_run(
    current_api: Api, current_emulator: CoverbaseEmulator
) -> None:
    with pytest.raises(WorkflowDispatchFailedError) as caught:
        await current_api("run_workflow", "dispatch-fails")

    error = caught.value
    assert error.status_code == 502
    assert error.code == "workflow_dispatch_failed"
    assert error.attempts == 1  # the run exists: a second POST could start another one
    assert not error.retryable
    assert current_api.sleeps == []
    assert error.request_id is not None and UUID.match(error.request_id)
    assert error.workflow_run_id is not None and RUN_ID["current"].match(error.workflow_run_id)
    # The named run exists, was never dispatched, and stays "started".
    named = current_emulator.get_run(error.workflow_run_id)
    assert named is not None and named["status"] == "started"
    current_emulator.advance(3600)
    run = await current_api("get_workflow_run", error.workflow_run_id)
    assert run.status is WorkflowRunStatus.RUNNING and run.steps == []
    posts = run_posts(current_emulator)
    assert [e["status"] for e in posts] == [502]
    assert current_emulator.run_count() == 1
    assert list(current_emulator.state.runs) == [error.workflow_run_id]


async def test_one_dispatch_failure_leaves_exactly_one_run(
    current_api: Api, current_emulator: CoverbaseEmulator
) -> None:
    current_emulator.fail_next_dispatch()
    with pytest.raises(WorkflowDispatchFailedError):
        await current_api("run_workflow", "adhoc-campaign")
    assert current_emulator.run_count() == 1
    assert [e["status"] for e in run_posts(current_emulator)] == [502]


async def test_dispatch_failure_under_a_concurrency_limit(
    current_api: Api, current_emulator: CoverbaseEmulator
) -> None:
    current_emulator.set_limits(max_concurrent_runs=1)
    current_emulator.fail_next_dispatch()

    with pytest.raises(WorkflowDispatchFailedError):
        await current_api("run_workflow", "adhoc-campaign")
    # The undispatched run holds no concurrency slot: the org can start its next run.
    run = await current_api("run_workflow", "adhoc-campaign")
    assert run.status is WorkflowRunStatus.RUNNING
    assert current_emulator.run_count() == 2


async def test_legacy_ignores_dispatch_failures(legacy_api: Api, legacy_emulator: CoverbaseEmulator) -> None:
    legacy_emulator.fail_next_dispatch()
    run = await legacy_api("run_workflow", "dispatch-fails")
    assert run.status is WorkflowRunStatus.RUNNING
    assert legacy_api.sleeps == []
    assert legacy_emulator.run_count() == 1


async def test_unknown_status_filter_is_422(api: Api, dialect: str) -> None:
    """Status values are not checked by the client; the emulator answers 422 naming the bad one."""
    api.emulator.set_variants(legacy_v2_endpoints=True)  # list runs is V2+: the legacy dialect serves it on request
    other = {"legacy": "started", "current": "running"}[dialect]

    with pytest.raises(UnprocessableEntityError) as caught:
        await api("list_workflow_runs", status=["completed", other])

    assert caught.value.code == "validation_error"
    assert "query.status.1" in str(caught.value)
    assert caught.value.attempts == 1


# ---------------------------------------------------------------------------------------------
# Start by definition id


async def test_legacy_start_by_definition(legacy_api: Api, legacy_emulator: CoverbaseEmulator) -> None:
    definition = legacy_emulator.definition_id(SWEEP)
    assert definition.startswith("cbwfdef_")

    run = await legacy_api("run_workflow_definition", definition, SWEEP_INPUT, idempotency_key="by-def")
    again = await legacy_api("run_workflow_definition", definition, SWEEP_INPUT, idempotency_key="by-def")

    assert run.workflow_definition_id == definition
    assert run.workflow_name == SWEEP
    assert again.workflow_run_id == run.workflow_run_id
    assert legacy_emulator.run_count() == 1
    [first, second] = run_posts(legacy_emulator)
    assert first["path"] == "/v1/workflows/runs"
    assert first["body"] == {"workflow_definition_id": definition, "input": SWEEP_INPUT}
    assert [first["status"], second["status"]] == [201, 409]

    final, _, _ = await poll_until_terminal(legacy_api, legacy_emulator, run.workflow_run_id)
    assert final.checkpoints == SWEEP_CHECKPOINTS


async def test_legacy_definition_key_reused_for_another_definition(
    legacy_api: Api, legacy_emulator: CoverbaseEmulator
) -> None:
    await legacy_api("run_workflow_definition", legacy_emulator.definition_id("adhoc-campaign"), idempotency_key="k1")

    with pytest.raises(IdempotencyKeyReusedError):
        await legacy_api(
            "run_workflow_definition", legacy_emulator.definition_id(SWEEP), SWEEP_INPUT, idempotency_key="k1"
        )

    assert legacy_emulator.run_count() == 1


async def test_legacy_unknown_definition(legacy_api: Api, legacy_emulator: CoverbaseEmulator) -> None:
    with pytest.raises(NotFoundError) as caught:
        await legacy_api("run_workflow_definition", "cbwfdef_0000000000000000")
    assert caught.value.code == "workflow_not_found"
    assert legacy_emulator.run_count() == 0


async def test_current_has_no_start_by_definition(current_api: Api, current_emulator: CoverbaseEmulator) -> None:
    with pytest.raises(NotFoundError) as caught:
        await current_api("run_workflow_definition", current_emulator.definition_id(SWEEP), SWEEP_INPUT)

    assert caught.value.attempts == 1
    assert caught.value.request_id is not None
    assert current_emulator.run_count() == 0


# ---------------------------------------------------------------------------------------------
# 8. Listing runs


async def _four_runs(api: Api, emulator: CoverbaseEmulator) -> list[WorkflowRun]:
    """r1 adhoc (completed), r2 always-fails (failed), r3 stalled (running), r4 adhoc (running),
    started 10 emulated seconds apart; the clock ends 0.3 s after r4 started."""
    runs: list[WorkflowRun] = []
    for index, name in enumerate(["adhoc-campaign", "always-fails", "stalled-forever", "adhoc-campaign"]):
        if index:
            emulator.advance(10)
        runs.append(await api("run_workflow", name))
    emulator.advance(0.3)
    return runs


def _ids(page: Any) -> list[str]:
    return [run.workflow_run_id for run in page.data]


async def test_list_is_newest_first_with_filters(api: Api, emulator: CoverbaseEmulator, dialect: str) -> None:
    emulator.set_variants(legacy_v2_endpoints=True)  # list runs is V2+: the legacy dialect serves it on request
    r1, r2, r3, r4 = (r.workflow_run_id for r in await _four_runs(api, emulator))

    everything = await api("list_workflow_runs")
    assert _ids(everything) == [r4, r3, r2, r1]
    assert (everything.total, everything.limit, everything.offset, everything.has_more) == (4, 100, 0, False)
    assert [r.status for r in everything.data] == [
        WorkflowRunStatus.RUNNING,
        WorkflowRunStatus.RUNNING,
        WorkflowRunStatus.FAILED,
        WorkflowRunStatus.COMPLETED,
    ]
    # List items are summaries: a step count, no steps or checkpoints.
    assert [r.step_count for r in everything.data] == [0, 1, 2 if dialect == "current" else 1, 2]
    assert all(r.steps is None and r.checkpoints_reached is None for r in everything.data)

    assert _ids(await api("list_workflow_runs", workflow_name="adhoc-campaign")) == [r4, r1]
    assert _ids(await api("list_workflow_runs", status="completed")) == [r1]
    assert _ids(await api("list_workflow_runs", status=["completed", "failed"])) == [r2, r1]
    assert _ids(await api("list_workflow_runs", status=(RUNNING[dialect],))) == [r4, r3]
    assert _ids(await api("list_workflow_runs", workflow_name="adhoc-campaign", status=RUNNING[dialect])) == [r4]
    [repeated] = logged(emulator, "GET", "/v1/workflows/runs")[3:4]
    assert repeated["query"] == [("status", "completed"), ("status", "failed")]


async def test_list_created_at_bounds(api: Api, emulator: CoverbaseEmulator) -> None:
    emulator.set_variants(legacy_v2_endpoints=True)  # list runs is V2+: the legacy dialect serves it on request
    runs = await _four_runs(api, emulator)
    r1, r2, r3, r4 = (r.workflow_run_id for r in runs)
    second, third = runs[1].started_at, runs[2].started_at
    assert second is not None and third is not None

    assert _ids(await api("list_workflow_runs", created_at_after=second)) == [r4, r3, r2]
    assert _ids(await api("list_workflow_runs", created_at_before=third)) == [r3, r2, r1]  # inclusive
    both = await api("list_workflow_runs", created_at_after=second, created_at_before=third)
    assert _ids(both) == [r3, r2]
    unix = await api("list_workflow_runs", created_at_after=int(second.timestamp()) + 1)
    assert _ids(unix) == [r4, r3]
    sent = logged(emulator, "GET", "/v1/workflows/runs")[-1]["query"]
    assert sent == [("created_at_after", str(int(second.timestamp()) + 1))]


async def test_list_paging(api: Api, emulator: CoverbaseEmulator) -> None:
    emulator.set_variants(legacy_v2_endpoints=True)  # list runs is V2+: the legacy dialect serves it on request
    r1, r2, r3, r4 = (r.workflow_run_id for r in await _four_runs(api, emulator))

    first = await api("list_workflow_runs", limit=2)
    assert _ids(first) == [r4, r3]
    assert (first.total, first.limit, first.offset, first.has_more) == (4, 2, 0, True)
    second = await api("list_workflow_runs", limit=2, offset=2)
    assert _ids(second) == [r2, r1]
    assert not second.has_more
    middle = await api("list_workflow_runs", limit=1, offset=1)
    assert _ids(middle) == [r3] and middle.has_more
    past = await api("list_workflow_runs", offset=4)
    assert past.data == [] and past.total == 4 and not past.has_more
    assert _ids(await api("list_workflow_runs", limit=500)) == [r4, r3, r2, r1]


async def test_list_limit_out_of_range_is_422_at_the_emulator(emulator: CoverbaseEmulator, dialect: str) -> None:
    headers = {"Authorization": f"Bearer {emulator.api_key}"}
    async with httpx.AsyncClient(base_url=emulator.base_url, headers=headers, timeout=5) as raw:
        too_big = await raw.get("/v1/workflows/runs", params={"limit": 501})
        too_small = await raw.get("/v1/workflows/runs", params={"limit": 0})
        negative = await raw.get("/v1/workflows/runs", params={"offset": -1})

    for response, field in ((too_big, "limit"), (too_small, "limit"), (negative, "offset")):
        assert response.status_code == 422
        body = response.json()
        assert isinstance(body["detail"], list)
        assert body["detail"][0]["loc"] == ["query", field]
        assert ("request_id" in body) is (dialect == "current")


async def test_list_unknown_workflow_name(api: Api) -> None:
    api.emulator.set_variants(legacy_v2_endpoints=True)  # list runs is V2+: the legacy dialect serves it on request
    with pytest.raises(NotFoundError, match="workflow 'nope' not found for this API key's org"):
        await api("list_workflow_runs", workflow_name="nope")


# ---------------------------------------------------------------------------------------------
# 9. check_auth and the request log


async def test_check_auth(api: Api, emulator: CoverbaseEmulator) -> None:
    assert await api("check_auth") == "Auth successful"
    [entry] = emulator.requests
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/v1/utils/authtest", 200)
    assert entry["body"] is None


async def test_request_log_masks_the_key_and_shows_idempotency_keys(
    make_api: MakeApi, emulator: CoverbaseEmulator
) -> None:
    emulator.set_variants(legacy_v2_endpoints=True)  # list runs is V2+: the legacy dialect serves it on request
    api = make_api(emulator)
    other = make_api(emulator, api_key=emulator.other_api_key)
    await api("check_auth")
    run = await api("run_workflow", SWEEP, SWEEP_INPUT)
    await api("run_workflow", "adhoc-campaign", idempotency_key="mine")
    await api("get_workflow_run", run.workflow_run_id)
    await api("list_workflow_runs", limit=5)
    await other("run_workflow", "adhoc-campaign")
    if emulator.dialect == "legacy":
        await api("run_workflow_definition", emulator.definition_id("adhoc-campaign"))

    entries = emulator.requests
    assert entries
    for entry in entries:
        headers = entry["headers"]
        assert headers["authorization"] == "***"
        assert headers["user-agent"].startswith("airflow-provider-coverbase/")
        assert headers["accept"] == "application/json"
        assert emulator.api_key not in repr(entry) and emulator.other_api_key not in repr(entry)
        is_start = entry["method"] == "POST"
        assert ("idempotency-key" in headers) is is_start
        if is_start:
            assert headers["content-type"] == "application/json"
    posts = run_posts(emulator)
    assert len(posts) == (4 if emulator.dialect == "legacy" else 3)
    assert keys(posts)[1] == "mine"
    assert posts[0]["body"] == {"input": SWEEP_INPUT}
    assert posts[1]["body"] == {"input": {}}  # no input is sent as an empty object


# ---------------------------------------------------------------------------------------------
# 10. Sync and async clients send the same requests


async def _scenario(api: Api, emulator: CoverbaseEmulator) -> None:
    await api("check_auth")
    run = await api("run_workflow", SWEEP, SWEEP_INPUT, idempotency_key="parity-1")
    await api("run_workflow", SWEEP, SWEEP_INPUT, idempotency_key="parity-1")  # replay
    emulator.fail_next(1, status=503)
    await api("run_workflow", "vendor sweep/eu", {"n": 1.5, "ok": True}, idempotency_key="parity-2")
    emulator.drop_next_response_after_commit()
    await api("run_workflow", "adhoc-campaign", idempotency_key="parity-3")
    emulator.fail_next(1, status=429, retry_after=2)
    await api("get_workflow_run", run.workflow_run_id)
    await api(
        "list_workflow_runs",
        workflow_name="vendor sweep/eu",
        status=["completed", "failed"],
        created_at_after=1,
        created_at_before=2_000_000_000,
        limit=10,
        offset=0,
    )
    with pytest.raises(NotFoundError):
        await api("run_workflow", "no such/workflow", idempotency_key="parity-4")
    if emulator.dialect == "legacy":
        await api("run_workflow_definition", emulator.definition_id("adhoc-campaign"), idempotency_key="parity-5")


def _comparable(entry: dict[str, Any], run_ids: dict[str, str]) -> dict[str, Any]:
    path = entry["path"]
    for run_id, label in run_ids.items():
        path = path.replace(run_id, label)
    return {k: entry[k] for k in ("method", "query", "body", "status")} | {"path": path, "headers": entry["headers"]}


async def test_sync_and_async_send_identical_requests(emulator: CoverbaseEmulator, dialect: str) -> None:
    logs: dict[str, list[dict[str, Any]]] = {}
    sleeps: dict[str, list[float]] = {}
    for kind in ("sync", "async"):
        emulator.reset()
        emulator.set_speed(0)
        emulator.set_variants(legacy_v2_endpoints=True)  # list runs is V2+: the legacy dialect serves it on request
        api = Api(kind, emulator)
        try:
            await _scenario(api, emulator)
        finally:
            await api.close()
        run_ids = {run_id: f"<run{i}>" for i, run_id in enumerate(emulator.state.runs)}
        count = 12 if dialect == "legacy" else 11
        logs[kind] = [_comparable(e, run_ids) for e in settled_requests(emulator, count)]
        sleeps[kind] = api.sleeps

    assert logs["sync"] == logs["async"]
    assert sleeps["sync"] == sleeps["async"] == [0.5, 0.5, 2.0]
    statuses = [e["status"] for e in logs["sync"]]
    replay = 409 if dialect == "legacy" else 201
    expected = [200, 201, replay, 503, 201, "dropped", replay, 429, 200, 200, 404]
    assert statuses == ([*expected, 201] if dialect == "legacy" else expected)
