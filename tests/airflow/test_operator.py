"""CoverbaseRunWorkflowOperator against the emulator over loopback, both dialects, both wait modes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from airflow_provider_coverbase.exceptions import CoverbaseError
from airflow_provider_coverbase.operators.coverbase import STATE_KEY, CoverbaseRunWorkflowOperator
from airflow_provider_coverbase.testing import CoverbaseEmulator
from airflow_provider_coverbase.triggers.coverbase import CoverbaseWorkflowRunTrigger
from airflow_provider_coverbase.waiting.reattach import derive_idempotency_key
from tests.airflow.conftest import (
    SWEEP,
    SWEEP_INPUT,
    FakeTI,
    MemoryStateStore,
    execute,
    make_context,
    operator,
    run_trigger,
)

CHECKPOINTS = ["vendors_selected", "questionnaires_dispatched", "responses_aggregated", "report_delivered"]
STEP_LABELS = ["vendors_selected", "questionnaires_dispatched", "responses_aggregated", "report_delivered"]


@pytest.fixture(params=[False, True], ids=["polling", "deferrable"])
def deferrable(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_completed_run(
    emulator: CoverbaseEmulator, ti: FakeTI, deferrable: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    result = execute(operator(deferrable=deferrable), make_context(ti))

    assert result["status"] == "completed"
    assert result["workflow_name"] == SWEEP
    assert result["checkpoints"] == CHECKPOINTS  # legacy: checkpoints_reached; current: succeeded steps
    if emulator.state.dialect == "legacy":
        assert result["output"]["vendors_processed"] == 38
        assert result["steps"] == []
    else:
        assert result["api_status"] == "completed"
        assert len(result["steps"]) == 4
    run_id = result["workflow_run_id"]
    url = f"{emulator.base_url}/_emulator/runs/{run_id}"
    record = ti.xcoms.pop("coverbase_run")
    assert ti.xcoms == {
        "workflow_run_id": run_id,
        "workflow_run_url": url,
        "_link_CoverbaseWorkflowRunLink": url,
    }
    # The UI's record: this try created the run under the derived key; checkpoints with their times.
    assert record["workflow_run_id"] == run_id
    assert record["origin"] == "created"
    assert record["idempotency_key"].startswith("airflow:sweep_dag:run_sweep:")
    assert record["status"] == "completed"
    assert record["url"] == url
    assert [c["name"] for c in record["checkpoints"]] == CHECKPOINTS
    times = [c["at"] for c in record["checkpoints"]]
    assert times == sorted(times)
    expected_source = "first_seen" if emulator.state.dialect == "legacy" else "coverbase"
    assert {c["source"] for c in record["checkpoints"]} == {expected_source}
    assert record["next_poll_at"] is None
    assert emulator.api_key not in json.dumps(record)
    # A small trigger event: no output and no steps in it.
    assert emulator.run_count() == 1
    # Each checkpoint (or step) is logged once, whatever the mode (Airflow logs to stdout here).
    logged = capsys.readouterr().out.splitlines()
    for name in CHECKPOINTS:
        assert (
            len([line for line in logged if f"Checkpoint reached: {name}" in line or f"Step success: {name}" in line])
            == 1
        )
    assert emulator.api_key not in "\n".join(logged)
    assert emulator.api_key not in json.dumps(ti.xcoms) + json.dumps(result)


def test_deferral_pushes_id_and_link_first_and_serializes_primitives(emulator: CoverbaseEmulator, ti: FakeTI) -> None:
    op = operator(deferrable=True, timeout=timedelta(hours=2))
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(make_context(ti))

    trigger = deferred.value.trigger
    assert isinstance(trigger, CoverbaseWorkflowRunTrigger)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_coverbase.triggers.coverbase.CoverbaseWorkflowRunTrigger"
    assert kwargs["workflow_run_id"] == ti.xcoms["workflow_run_id"]
    assert kwargs["coverbase_conn_id"] == "coverbase_default"
    assert emulator.api_key not in json.dumps(kwargs)
    assert 7100 < kwargs["deadline"] - datetime.now(UTC).timestamp() <= 7200
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == timedelta(seconds=7200 + 300)
    assert ti.xcoms["_link_CoverbaseWorkflowRunLink"].endswith(kwargs["workflow_run_id"])


@pytest.mark.parametrize(
    ("workflow", "detail"),
    [
        ("always-fails", "failed after checkpoint 'vendors_selected'"),
        ("gets-cancelled", "after checkpoint 'vendors_selected' (run "),
    ],
)
def test_failed_or_cancelled_run_fails_retryably_with_a_useful_message(
    emulator: CoverbaseEmulator, ti: FakeTI, deferrable: bool, workflow: str, detail: str
) -> None:
    with pytest.raises(AirflowException) as info:
        execute(operator(workflow_name=workflow, input={}, deferrable=deferrable), make_context(ti))

    assert not isinstance(info.value, AirflowFailException)  # a retry starts a fresh run
    message = str(info.value)
    run_id = ti.xcoms["workflow_run_id"]
    status = {"always-fails": "failed", "gets-cancelled": "cancelled"}[workflow]
    if emulator.state.dialect == "current" and status == "cancelled":
        status = "canceled"
    # The reason first; then the run, the workflow and the link, the URL with whitespace on both
    # sides (Airflow's log view links it); once: no chained traceback of our own.
    assert message.startswith(f"Coverbase run {status} after checkpoint")
    assert detail in message
    assert message.endswith(f"(run {run_id}, workflow '{workflow}', {emulator.base_url}/_emulator/runs/{run_id} )")
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ or not isinstance(info.value.__context__, CoverbaseError)
    if workflow == "always-fails":
        # The reason: the legacy run body's error field, or the current API's failed step message.
        at_step = ", at step 'questionnaires_dispatched'" if emulator.state.dialect == "current" else ""
        assert f"after checkpoint 'vendors_selected'{at_step}: Questionnaire template not found (run" in message
        assert "last checkpoint" not in message


def test_timeout_says_the_run_is_still_going(emulator: CoverbaseEmulator, ti: FakeTI, deferrable: bool) -> None:
    op = operator(workflow_name="stalled-forever", input={}, deferrable=deferrable, timeout=0.3)
    with pytest.raises(AirflowException, match="still going in Coverbase") as info:
        execute(op, make_context(ti))
    assert not isinstance(info.value, AirflowFailException)
    assert ti.xcoms["workflow_run_id"] in str(info.value)


def test_no_wait_returns_the_started_run(emulator: CoverbaseEmulator, ti: FakeTI) -> None:
    result = execute(operator(wait_for_completion=False), make_context(ti))
    assert result["status"] in ("running", "pending")
    assert result["workflow_run_id"] == ti.xcoms["workflow_run_id"]


# ---- errors before and at the start -----------------------------------------------------------


def test_unserialisable_input_fails_before_any_request(emulator: CoverbaseEmulator, ti: FakeTI) -> None:
    emulator.clear_requests()
    op = operator(input={"quarter": "Q4", "vendor_filter": {"since": datetime(2026, 1, 1, tzinfo=UTC)}})
    with pytest.raises(AirflowFailException, match=r"input\['vendor_filter'\]\['since'\] is a datetime"):
        op.execute(make_context(ti))
    assert emulator.requests == []


def test_string_input_must_be_json(emulator: CoverbaseEmulator, ti: FakeTI) -> None:
    with pytest.raises(AirflowFailException, match="not JSON"):
        operator(input="{'quarter': 'Q4'}").execute(make_context(ti))
    result = execute(operator(input=json.dumps(SWEEP_INPUT), wait_for_completion=False), make_context(ti))
    assert result["workflow_name"] == SWEEP


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workflow_name": "no-such-workflow"}, "workflow 'no-such-workflow' not found for this API key's org"),
        ({"workflow_name": "disabled-workflow"}, "is disabled in Coverbase"),
    ],
)
def test_errors_retrying_cannot_fix_fail_without_retry(
    emulator: CoverbaseEmulator, ti: FakeTI, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(AirflowFailException, match=message):
        operator(**kwargs).execute(make_context(ti))


def test_legacy_schema_mismatch_names_the_field(
    coverbase_emulator: CoverbaseEmulator, ti: FakeTI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.airflow.conftest import conn_value

    monkeypatch.setenv("AIRFLOW_CONN_COVERBASE_DEFAULT", conn_value(coverbase_emulator))
    with pytest.raises(AirflowFailException, match=r"rejected the input.*'quarter'"):
        operator(input={"vendor_filter": {}}).execute(make_context(ti))


def test_bad_api_key_fails_without_retry_and_without_the_key(
    emulator: CoverbaseEmulator, ti: FakeTI, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = json.loads(emulator.conn_uri)
    value["password"] = "ak_test_this_key_is_wrong_123"
    monkeypatch.setenv("AIRFLOW_CONN_COVERBASE_DEFAULT", json.dumps(value))
    with pytest.raises(AirflowFailException, match="rejected the API key") as info:
        operator().execute(make_context(ti))
    assert "ak_test_this_key_is_wrong_123" not in str(info.value)


def test_transient_errors_are_retried_and_start_one_run(emulator: CoverbaseEmulator, ti: FakeTI) -> None:
    emulator.fail_next(2, status=503)
    result = execute(operator(), make_context(ti))
    assert result["status"] == "completed"
    assert emulator.run_count() == 1


def test_exhausted_transient_errors_are_retryable(
    emulator: CoverbaseEmulator, ti: FakeTI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.airflow.conftest import conn_value

    monkeypatch.setenv("AIRFLOW_CONN_COVERBASE_DEFAULT", conn_value(emulator, max_retries=1))
    emulator.fail_next(2, status=500)
    with pytest.raises(AirflowException, match=r"server error \(500\).*after 2 attempts") as info:
        operator().execute(make_context(ti))
    assert not isinstance(info.value, AirflowFailException)
    assert emulator.run_count() == 0


def test_lost_response_never_yields_two_runs(emulator: CoverbaseEmulator, ti: FakeTI) -> None:
    emulator.drop_next_response_after_commit(1)
    result = execute(operator(), make_context(ti))
    assert result["status"] == "completed"
    assert emulator.run_count() == 1


# ---- exactly once across Airflow retries and clears -------------------------------------------


@pytest.fixture(params=[None, "store"], ids=["airflow-3.2-key-replay", "airflow-3.3-state-store"])
def store(request: pytest.FixtureRequest) -> MemoryStateStore | None:
    return MemoryStateStore() if request.param else None


def test_retry_reattaches_to_a_run_still_going(emulator: CoverbaseEmulator, store: MemoryStateStore | None) -> None:
    first = FakeTI(try_number=1)
    with pytest.raises(TaskDeferred):  # the worker "dies" while the run goes on
        operator(deferrable=True).execute(make_context(first, store))
    second = FakeTI(try_number=2)
    result = execute(operator(deferrable=True), make_context(second, store))

    assert result["status"] == "completed"
    assert result["workflow_run_id"] == first.xcoms["workflow_run_id"]
    assert emulator.run_count() == 1


def test_retry_after_completion_returns_the_completed_run(
    emulator: CoverbaseEmulator, store: MemoryStateStore | None
) -> None:
    first = execute(operator(), make_context(FakeTI(try_number=1), store))
    again = execute(operator(), make_context(FakeTI(try_number=2), store))
    assert again["workflow_run_id"] == first["workflow_run_id"]
    assert again["status"] == "completed"
    assert emulator.run_count() == 1


def test_retry_after_failure_starts_a_fresh_run_each_time(
    emulator: CoverbaseEmulator, store: MemoryStateStore | None
) -> None:
    seen = set()
    for try_number in (1, 2, 3):
        ti = FakeTI(try_number=try_number)
        with pytest.raises(AirflowException, match="Coverbase run failed after checkpoint"):
            execute(operator(workflow_name="always-fails", input={}), make_context(ti, store))
        seen.add(ti.xcoms["workflow_run_id"])
    assert len(seen) == 3
    assert emulator.run_count() == 3


def test_retry_after_a_failed_run_then_a_running_one_reattaches(
    emulator: CoverbaseEmulator, store: MemoryStateStore | None
) -> None:
    """Try 1's run failed; try 2 started a fresh run and died; try 3 must reattach to try 2's run."""
    with pytest.raises(AirflowException, match="Coverbase run failed after checkpoint"):
        execute(operator(workflow_name="always-fails", input={}), make_context(FakeTI(try_number=1), store))
    emulator.set_speed(0)  # freeze time: try 2's run stays running
    second, third = FakeTI(try_number=2), FakeTI(try_number=3)
    with pytest.raises(TaskDeferred):
        operator(workflow_name="always-fails", input={}, deferrable=True).execute(make_context(second, store))
    with pytest.raises(TaskDeferred):
        operator(workflow_name="always-fails", input={}, deferrable=True).execute(make_context(third, store))
    assert third.xcoms["workflow_run_id"] == second.xcoms["workflow_run_id"]
    assert emulator.run_count() == 2


def test_a_clear_starts_a_new_run(emulator: CoverbaseEmulator, store: MemoryStateStore | None) -> None:
    first = execute(operator(), make_context(FakeTI(try_number=1, max_tries=2), store))
    # A clear after try 1 makes max_tries = try_number + retries: the chain now starts at try 2.
    cleared = execute(operator(), make_context(FakeTI(try_number=2, max_tries=3), store))
    assert cleared["workflow_run_id"] != first["workflow_run_id"]
    assert emulator.run_count() == 2


def test_user_key_is_sent_as_given_and_replays(emulator: CoverbaseEmulator) -> None:
    emulator.clear_requests()
    first = execute(operator(idempotency_key="sweep-2026-10-01"), make_context(FakeTI(try_number=1)))
    again = execute(operator(idempotency_key="sweep-2026-10-01"), make_context(FakeTI(try_number=1, run_id="x")))
    assert again["workflow_run_id"] == first["workflow_run_id"]
    posts = [r for r in emulator.requests if r["method"] == "POST"]
    assert {r["headers"]["idempotency-key"] for r in posts} == {"sweep-2026-10-01"}
    assert emulator.run_count() == 1


def test_mapped_instances_and_workflows_get_their_own_runs(emulator: CoverbaseEmulator) -> None:
    for map_index in (0, 1, 2):
        execute(operator(wait_for_completion=False), make_context(FakeTI(map_index=map_index)))
    execute(operator(workflow_name="adhoc-campaign", input={}, wait_for_completion=False), make_context(FakeTI()))
    assert emulator.run_count() == 4


def test_state_store_record(emulator: CoverbaseEmulator) -> None:
    store = MemoryStateStore()
    result = execute(operator(wait_for_completion=False), make_context(FakeTI(try_number=1), store))
    assert store.values[STATE_KEY] == {
        "chain": 1,
        "generation": 0,
        "workflow": SWEEP,
        "workflow_run_id": result["workflow_run_id"],
    }


def test_derived_keys() -> None:
    base = {
        "dag_id": "d",
        "task_id": "t",
        "run_id": "scheduled__2026-10-01T00:00:00+00:00",
        "map_index": -1,
        "chain": 1,
        "workflow": SWEEP,
    }
    key = derive_idempotency_key(**base)
    assert key == derive_idempotency_key(**base)  # stable: the try number is not part of it
    assert key.startswith("airflow:d:t:")
    assert key.isascii() and len(key) <= 255
    variants = [
        {"map_index": 0},
        {"chain": 2},
        {"workflow": "adhoc-campaign"},
        {"run_id": "manual__x"},
        {"generation": 1},
    ]
    keys = {derive_idempotency_key(**(base | change)) for change in variants}
    assert key not in keys
    assert len(keys) == len(variants)
    long = derive_idempotency_key(**(base | {"dag_id": "d" * 250, "task_id": "t" * 250}))
    assert len(long) <= 200


# ---- construction and templating --------------------------------------------------------------


def test_exactly_one_workflow_reference() -> None:
    with pytest.raises(ValueError, match="exactly one of workflow_name or workflow_definition_id"):
        CoverbaseRunWorkflowOperator(task_id="x")
    with pytest.raises(ValueError, match="exactly one"):
        CoverbaseRunWorkflowOperator(task_id="x", workflow_name="a", workflow_definition_id="b")
    with pytest.raises(ValueError, match="poll_interval must be positive"):
        CoverbaseRunWorkflowOperator(task_id="x", workflow_name="a", poll_interval=0)


def test_templated_input_from_jinja_and_json_file(tmp_path: Path) -> None:
    (tmp_path / "sweep_input.json").write_text('{"quarter": "{{ params.quarter }}", "vendor_filter": {"tier": 1}}')
    with DAG("templating", schedule=None, template_searchpath=[str(tmp_path)], params={"quarter": "2026-Q4"}):
        inline = operator(task_id="inline", input={"quarter": "{{ params.quarter }}", "vendor_filter": {}})
        from_file = operator(task_id="from_file", input="sweep_input.json", idempotency_key="k-{{ params.quarter }}")
    context: dict[str, Any] = {"params": {"quarter": "2026-Q4"}}
    inline.render_template_fields(context)
    from_file.render_template_fields(context)
    assert inline.input == {"quarter": "2026-Q4", "vendor_filter": {}}
    assert json.loads(str(from_file.input)) == {"quarter": "2026-Q4", "vendor_filter": {"tier": 1}}
    assert from_file.idempotency_key == "k-2026-Q4"


def test_definition_id_on_the_legacy_api(
    coverbase_emulator: CoverbaseEmulator, ti: FakeTI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.airflow.conftest import conn_value

    monkeypatch.setenv("AIRFLOW_CONN_COVERBASE_DEFAULT", conn_value(coverbase_emulator))
    op = operator(workflow_name=None, workflow_definition_id=coverbase_emulator.definition_id(SWEEP))
    result = execute(op, make_context(ti))
    assert result["status"] == "completed"
    assert result["workflow_name"] == SWEEP


def test_trigger_event_round_trip_is_validated(emulator: CoverbaseEmulator, ti: FakeTI) -> None:
    op = operator(deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(make_context(ti))
    event = run_trigger(deferred.value)
    assert event.payload["status"] == "completed"
    with pytest.raises(AirflowException, match="malformed trigger event"):
        op.execute_complete(make_context(ti), event={"status": "weird"})
    with pytest.raises(AirflowException, match="without a trigger event"):
        op.execute_complete(make_context(ti), event=None)


def test_polling_keeps_one_connection_for_the_start_and_every_poll(emulator: CoverbaseEmulator, ti: FakeTI) -> None:
    emulator.add_workflow("short", [("only", 6.0)])  # 0.3 s at the fixtures' speed of 20
    before = emulator.connections()["accepted"]
    result = execute(
        operator(workflow_name="short", input={}, max_poll_interval=0.02, deferrable=False), make_context(ti)
    )
    assert result["status"] == "completed"
    assert len([r for r in emulator.requests if r["method"] == "GET"]) >= 5
    assert emulator.connections()["accepted"] - before == 1


def test_worker_wait_backs_off_on_poll_errors_and_gives_up_at_the_limit(
    emulator: CoverbaseEmulator, ti: FakeTI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting in a worker follows the same error policy as the trigger: doubling pauses, then a retryable failure."""
    from types import SimpleNamespace

    from airflow_provider_coverbase.operators import coverbase
    from airflow_provider_coverbase.waiting.errors import MAX_CONSECUTIVE_ERRORS, MAX_ERROR_BACKOFF
    from tests.airflow.conftest import conn_value

    monkeypatch.setenv("AIRFLOW_CONN_COVERBASE_DEFAULT", conn_value(emulator, max_retries=0))
    pauses: list[float] = []

    def sleep(seconds: float) -> None:  # recorded, not slept; the API fails from the first poll on
        if not pauses:
            emulator.fail_next(100, status=502)
        pauses.append(seconds)

    monkeypatch.setattr(coverbase, "time", SimpleNamespace(time=time.time, sleep=sleep))
    op = operator(workflow_name="stalled-forever", input={}, poll_interval=30, max_poll_interval=30, deferrable=False)
    with pytest.raises(AirflowException, match=r"502") as info:
        op.execute(make_context(ti))
    assert not isinstance(info.value, AirflowFailException)  # a retry of the task reattaches
    assert pauses == [30, 30, 60, 120, 240] + [MAX_ERROR_BACKOFF] * (MAX_CONSECUTIVE_ERRORS - 5)
    assert emulator.run_count() == 1
