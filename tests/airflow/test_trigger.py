"""CoverbaseWorkflowRunTrigger run for real against the emulator: one event, deadline, error handling."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from airflow_provider_coverbase.testing import CoverbaseEmulator
from airflow_provider_coverbase.triggers.coverbase import CoverbaseWorkflowRunTrigger, WorkflowRunEvent
from airflow_provider_coverbase.waiting.errors import ErrorPolicy
from tests.airflow.conftest import conn_value


def start(emulator: CoverbaseEmulator, workflow: str, run_input: dict[str, Any] | None = None) -> str:
    from airflow_provider_coverbase.client import CoverbaseClient

    with CoverbaseClient(emulator.api_key, base_url=emulator.base_url) as client:
        return client.run_workflow(workflow, run_input or {}).workflow_run_id


async def events(trigger: CoverbaseWorkflowRunTrigger) -> list[WorkflowRunEvent]:
    return [WorkflowRunEvent.model_validate(e.payload) async for e in trigger.run()]


def test_serialize_round_trip() -> None:
    trigger = CoverbaseWorkflowRunTrigger(
        "cbwr_1", "my_conn", poll_interval=5, deadline=1.5e9, dashboard_url="u", max_poll_interval=600, started_at=1e9
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_coverbase.triggers.coverbase.CoverbaseWorkflowRunTrigger"
    assert kwargs == {
        "workflow_run_id": "cbwr_1",
        "coverbase_conn_id": "my_conn",
        "poll_interval": 5.0,
        "deadline": 1.5e9,
        "dashboard_url": "u",
        "max_poll_interval": 600.0,
        "started_at": 1e9,
    }
    json.dumps(kwargs)
    assert CoverbaseWorkflowRunTrigger(**kwargs).serialize() == (classpath, kwargs)
    with pytest.raises(ValueError, match="poll_interval must be positive"):
        CoverbaseWorkflowRunTrigger("cbwr_1", poll_interval=0)
    with pytest.raises(ValueError, match="must be at least poll_interval"):
        CoverbaseWorkflowRunTrigger("cbwr_1", poll_interval=60, max_poll_interval=30)


def test_kwargs_serialised_before_adaptive_polling_still_load() -> None:
    """A trigger row written by an older provider (no max_poll_interval, no started_at) deserialises."""
    old = {"workflow_run_id": "cbwr_1", "coverbase_conn_id": "c", "poll_interval": 30.0, "deadline": None}
    before = time.time()
    trigger = CoverbaseWorkflowRunTrigger(**old, dashboard_url=None)
    assert trigger.max_poll_interval == 1800.0  # the default
    assert trigger.started_at >= before
    assert trigger.serialize()[1]["max_poll_interval"] == 1800.0
    # A poll interval above the default longest one is kept as the longest one.
    assert CoverbaseWorkflowRunTrigger("cbwr_1", poll_interval=3600).max_poll_interval == 3600.0


def test_a_restarted_trigger_keeps_the_pace_of_an_old_run() -> None:
    """The schedule follows started_at (serialised), so a triggerer restart does not poll fast again."""
    ten_days_ago = time.time() - 10 * 86400
    first = CoverbaseWorkflowRunTrigger("cbwr_1", poll_interval=30, started_at=ten_days_ago)
    restarted = CoverbaseWorkflowRunTrigger(**first.serialize()[1])
    assert restarted.next_interval(None, time.time()) == 1800.0
    # A fresh run polls at poll_interval; fixed polling stays fixed whatever the age.
    assert CoverbaseWorkflowRunTrigger("cbwr_1", poll_interval=30).next_interval(None, time.time()) == 30.0
    fixed = CoverbaseWorkflowRunTrigger("cbwr_1", poll_interval=30, max_poll_interval=30, started_at=ten_days_ago)
    assert fixed.next_interval(None, time.time()) == 30.0


@pytest.mark.parametrize(
    ("workflow", "status"),
    [("quarterly-privacy-sweep", "completed"), ("always-fails", "failed"), ("gets-cancelled", "cancelled")],
)
async def test_one_event_per_terminal_status(emulator: CoverbaseEmulator, workflow: str, status: str) -> None:
    run_input = {"quarter": "2026-Q4", "vendor_filter": {}} if workflow == "quarterly-privacy-sweep" else {}
    run_id = await asyncio.to_thread(start, emulator, workflow, run_input)
    trigger = CoverbaseWorkflowRunTrigger(run_id, poll_interval=0.02, deadline=time.time() + 30)
    (event,) = await events(trigger)  # exactly one event, then the generator ends
    assert event.status == status
    assert event.workflow_run_id == run_id
    assert event.run is not None
    assert event.run["status"] == status
    assert run_id in event.message
    # A small event (Airflow prints it in "Trigger fired event"): no output and no steps, checkpoints with times.
    assert "output" not in event.run
    assert "steps" not in event.run
    assert len(json.dumps(event.model_dump(mode="json"))) < 1500
    assert all(
        isinstance(c["at"], float) and c["source"] in ("coverbase", "first_seen") for c in event.run["checkpoints"]
    )


async def test_deadline_ends_in_a_timeout_event(emulator: CoverbaseEmulator) -> None:
    run_id = await asyncio.to_thread(start, emulator, "stalled-forever")
    trigger = CoverbaseWorkflowRunTrigger(run_id, poll_interval=0.02, deadline=time.time() + 0.2)
    (event,) = await events(trigger)
    assert event.status == "timeout"
    assert "still going in Coverbase" in event.message
    assert event.run is not None
    assert event.run["status"] == "running"


async def test_transient_errors_back_off_and_recover(
    emulator: CoverbaseEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_COVERBASE_DEFAULT", conn_value(emulator, max_retries=0))
    run_id = await asyncio.to_thread(start, emulator, "adhoc-campaign")
    emulator.fail_next(3, status=503)
    trigger = CoverbaseWorkflowRunTrigger(run_id, poll_interval=0.01, deadline=time.time() + 30)
    (event,) = await events(trigger)
    assert event.status == "completed"
    gets = [r for r in emulator.requests if r["method"] == "GET" and r["status"] == 503]
    assert len(gets) == 3  # each failure was polled again, not given up on


async def test_persistent_transient_errors_end_in_a_retryable_error_event(
    emulator: CoverbaseEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_COVERBASE_DEFAULT", conn_value(emulator, max_retries=0))
    monkeypatch.setattr(CoverbaseWorkflowRunTrigger, "error_policy", ErrorPolicy(give_up_after=3))
    run_id = await asyncio.to_thread(start, emulator, "stalled-forever")
    emulator.fail_next(100, status=502)
    trigger = CoverbaseWorkflowRunTrigger(run_id, poll_interval=0.001, deadline=time.time() + 30)
    (event,) = await events(trigger)
    assert event.status == "error"
    assert event.retryable
    assert "gave up after 3 failed polls in a row" in event.message


async def test_errors_retrying_cannot_fix_end_at_once(emulator: CoverbaseEmulator) -> None:
    trigger = CoverbaseWorkflowRunTrigger("cbwr_does_not_exist", poll_interval=0.01, deadline=time.time() + 30)
    (event,) = await events(trigger)
    assert event.status == "error"
    assert not event.retryable
    assert "not found for this API key's org" in event.message


async def test_cleanup_closes_the_client(emulator: CoverbaseEmulator) -> None:
    run_id = await asyncio.to_thread(start, emulator, "stalled-forever")
    trigger = CoverbaseWorkflowRunTrigger(run_id, poll_interval=0.01, deadline=time.time() + 30)
    generator = trigger.run()
    task = asyncio.ensure_future(anext(generator))
    await asyncio.sleep(0.1)
    assert trigger._client is not None
    task.cancel()  # the triggerer cancels a trigger it moves or stops
    with pytest.raises(asyncio.CancelledError):
        await task
    await trigger.cleanup()
    assert trigger._client is None


async def test_on_kill_says_the_run_goes_on(capsys: pytest.CaptureFixture[str]) -> None:
    url = "https://dash.example/runs/cbwr_1"
    trigger = CoverbaseWorkflowRunTrigger("cbwr_1", poll_interval=1, dashboard_url=url)
    await trigger.on_kill()
    line = f"Stopped waiting for Coverbase run cbwr_1: {url} Coverbase has no API to cancel it"
    assert line in capsys.readouterr().out  # the link is not wrapped in parentheses (Airflow would link the ")")


async def test_pauses_end_on_the_shared_wake_up_grid(
    emulator: CoverbaseEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every pause of 5 s or more ends on the 0.25 s grid of the loop's clock, so polls due together wake once.

    The trigger's ``asyncio.sleep`` is recorded and made instant; the run ends after three polls.
    """
    from types import SimpleNamespace

    from airflow_provider_coverbase.triggers import coverbase
    from airflow_provider_coverbase.waiting.schedule import WAKE_TICK

    emulator.add_workflow("three-polls", [("done", 60.0)])
    emulator.set_speed(0)
    run_id = await asyncio.to_thread(start, emulator, "three-polls")
    loop = asyncio.get_running_loop()
    wakes: list[tuple[float, float]] = []  # (requested pause, when it would have ended on the loop's clock)

    async def recorded_sleep(delay: float) -> None:
        wakes.append((delay, loop.time() + delay))
        if len(wakes) == 3:
            await asyncio.to_thread(emulator.advance, 61)

    monkeypatch.setattr(
        coverbase, "asyncio", SimpleNamespace(sleep=recorded_sleep, get_running_loop=asyncio.get_running_loop)
    )
    trigger = CoverbaseWorkflowRunTrigger(run_id, poll_interval=30, max_poll_interval=30, deadline=time.time() + 3600)

    (event,) = await events(trigger)

    assert event.status == "completed"
    assert len(wakes) == 3
    for delay, end in wakes[1:]:  # the first pause is a random part of the first interval
        assert 30 <= delay < 30 + WAKE_TICK
        assert abs(end / WAKE_TICK - round(end / WAKE_TICK)) < 1e-3


async def test_each_change_is_logged_once(emulator: CoverbaseEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    """Many polls of a run that changes now and then: every status and checkpoint line exactly once."""
    run_input = {"quarter": "2026-Q4", "vendor_filter": {}}
    run_id = await asyncio.to_thread(start, emulator, "quarterly-privacy-sweep", run_input)
    trigger = CoverbaseWorkflowRunTrigger(run_id, poll_interval=0.005, deadline=time.time() + 30)
    (event,) = await events(trigger)
    assert event.status == "completed"
    out = capsys.readouterr().out
    gets = [r for r in emulator.requests if r["method"] == "GET" and run_id in r["path"]]
    checkpoints = [c["name"] for c in event.run["checkpoints"]] if event.run else []
    assert len(gets) > len(checkpoints)  # some answers repeated the one before
    assert out.count(f"Coverbase run {run_id}: running") == 1
    assert out.count(f"Coverbase run {run_id}: completed") == 1
    assert checkpoints
    for number, name in enumerate(checkpoints, start=1):
        # Legacy API: a checkpoint line; current API: the step's result line.
        said = out.count(f"Checkpoint reached: {name} ({number} so far)") + out.count(f"Step success: {name} ")
        assert said == 1, name


async def test_between_polls_a_trigger_keeps_bytes_not_a_parsed_run_nor_a_hook(emulator: CoverbaseEmulator) -> None:
    """What thousands of waiting triggers each hold: the shared client, the prepared call, the last body."""
    from airflow_provider_coverbase.hooks.coverbase import CoverbaseHook
    from airflow_provider_coverbase.models import WorkflowRun

    run_id = await asyncio.to_thread(start, emulator, "stalled-forever")
    trigger = CoverbaseWorkflowRunTrigger(run_id, poll_interval=0.01, max_poll_interval=0.01)
    generator = trigger.run()
    task = asyncio.ensure_future(anext(generator))
    await asyncio.to_thread(
        emulator.wait_for, lambda: sum(1 for r in emulator.requests if run_id in r["path"]) >= 3, 10
    )
    await asyncio.sleep(0)  # the generator is between two polls now (asleep)
    frame = generator.ag_frame
    assert frame is not None
    held = [*frame.f_locals.values(), *vars(trigger).values()]
    assert not [value for value in held if isinstance(value, WorkflowRun | CoverbaseHook)]
    assert isinstance(frame.f_locals["last_body"], bytes) and run_id.encode() in frame.f_locals["last_body"]
    assert trigger._client is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await trigger.cleanup()
