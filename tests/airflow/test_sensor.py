"""CoverbaseWorkflowRunSensor in poke and deferrable modes (reschedule runs in the e2e DAG test)."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout, TaskDeferred

from airflow_provider_coverbase.client import CoverbaseClient
from airflow_provider_coverbase.sensors.coverbase import CoverbaseWorkflowRunSensor
from airflow_provider_coverbase.testing import CoverbaseEmulator
from tests.airflow.conftest import FakeTI, execute, make_context, run_trigger


def start(emulator: CoverbaseEmulator, workflow: str) -> str:
    run_input = {"quarter": "2026-Q4", "vendor_filter": {}} if workflow == "quarterly-privacy-sweep" else {}
    with CoverbaseClient(emulator.api_key, base_url=emulator.base_url) as client:
        return client.run_workflow(workflow, run_input).workflow_run_id


def sensor(run_id: str, **kwargs: Any) -> CoverbaseWorkflowRunSensor:
    settings: dict[str, Any] = {"task_id": "wait", "workflow_run_id": run_id, "poke_interval": 0.02, "timeout": 30}
    return CoverbaseWorkflowRunSensor(**(settings | kwargs))


@pytest.fixture(params=[False, True], ids=["poke", "deferrable"])
def deferrable(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_completed(emulator: CoverbaseEmulator, ti: FakeTI, deferrable: bool) -> None:
    run_id = start(emulator, "quarterly-privacy-sweep")
    result = execute(sensor(run_id, deferrable=deferrable), make_context(ti))
    assert result["status"] == "completed"
    assert result["workflow_run_id"] == run_id
    assert ti.xcoms["_link_CoverbaseWorkflowRunLink"].endswith(run_id)


@pytest.mark.parametrize(("workflow", "status"), [("always-fails", "failed"), ("gets-cancelled", "cancel")])
def test_failed_or_cancelled_fails_without_retry(
    emulator: CoverbaseEmulator, ti: FakeTI, deferrable: bool, workflow: str, status: str
) -> None:
    run_id = start(emulator, workflow)
    with pytest.raises(AirflowFailException, match=f"Coverbase run {status}") as info:
        execute(sensor(run_id, deferrable=deferrable), make_context(ti))
    message = str(info.value)
    assert message.endswith(
        f"(run {run_id}, workflow '{workflow}', {ti.xcoms['workflow_run_url']} )"
    )  # whitespace around the link
    if workflow == "always-fails":
        assert "Questionnaire template not found (run" in message  # the reason, in both dialects


def test_unknown_run_fails_at_once(emulator: CoverbaseEmulator, ti: FakeTI, deferrable: bool) -> None:
    with pytest.raises(AirflowFailException, match="workflow run 'cbwr_nope' not found"):
        execute(sensor("cbwr_nope", deferrable=deferrable), make_context(ti))


def test_transient_errors_keep_poking(emulator: CoverbaseEmulator, ti: FakeTI, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.airflow.conftest import conn_value

    monkeypatch.setenv("AIRFLOW_CONN_COVERBASE_DEFAULT", conn_value(emulator, max_retries=0))
    run_id = start(emulator, "adhoc-campaign")
    emulator.fail_next(2, status=503)
    op = sensor(run_id)
    assert op.poke(make_context(ti)).is_done is False
    assert execute(op, make_context(ti))["status"] == "completed"


def test_deferred_timeout(emulator: CoverbaseEmulator, ti: FakeTI) -> None:
    run_id = start(emulator, "stalled-forever")
    op = sensor(run_id, deferrable=True, timeout=0.3)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(make_context(ti))
    event = run_trigger(deferred.value)
    with pytest.raises(AirflowSensorTimeout, match="still going in Coverbase"):
        op.execute_complete(make_context(ti), event=event.payload)


def test_poke_mode_timeout(emulator: CoverbaseEmulator, ti: FakeTI) -> None:
    run_id = start(emulator, "stalled-forever")
    with pytest.raises(AirflowSensorTimeout):
        execute(sensor(run_id, timeout=0.2), make_context(ti))


def test_retryable_error_event(emulator: CoverbaseEmulator, ti: FakeTI) -> None:
    op = sensor("cbwr_1", deferrable=True)
    event = {"status": "error", "workflow_run_id": "cbwr_1", "message": "flaky", "retryable": True}
    with pytest.raises(AirflowException, match="flaky") as info:
        op.execute_complete(make_context(ti), event=event)
    assert not isinstance(info.value, AirflowFailException)


def test_poke_mode_keeps_one_connection_for_all_pokes(emulator: CoverbaseEmulator, ti: FakeTI) -> None:
    emulator.add_workflow("short", [("only", 6.0)])  # 0.3 s at the fixtures' speed of 20
    run_id = start(emulator, "short")
    before = emulator.connections()["accepted"]
    emulator.clear_requests()
    result = execute(sensor(run_id, max_poll_interval=0.02), make_context(ti))
    assert result["status"] == "completed"
    assert len(emulator.requests) >= 5  # several pokes...
    assert emulator.connections()["accepted"] - before == 1  # ...over one kept-alive connection
