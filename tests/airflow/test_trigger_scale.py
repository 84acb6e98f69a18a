"""Many triggers in one event loop against the emulator: shared connections, one budget, one pause."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from airflow_provider_coverbase.client import CoverbaseClient, shared_clients
from airflow_provider_coverbase.hooks.coverbase import CoverbaseHook
from airflow_provider_coverbase.testing import CoverbaseEmulator
from airflow_provider_coverbase.triggers.coverbase import CoverbaseWorkflowRunTrigger, WorkflowRunEvent
from tests.airflow.conftest import conn_value


def start_runs(emulator: CoverbaseEmulator, workflow: str, n: int) -> list[str]:
    with CoverbaseClient(emulator.api_key, base_url=emulator.base_url, max_requests_per_second=0) as client:
        return [client.run_workflow(workflow, {}).workflow_run_id for _ in range(n)]


async def first_event(trigger: CoverbaseWorkflowRunTrigger) -> WorkflowRunEvent:
    events = trigger.run()
    try:
        return WorkflowRunEvent.model_validate((await anext(events)).payload)
    finally:
        await events.aclose()


async def test_500_triggers_share_a_handful_of_connections(
    coverbase_emulator: CoverbaseEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = coverbase_emulator
    monkeypatch.setenv("AIRFLOW_CONN_COVERBASE_DEFAULT", conn_value(emulator, max_requests_per_second=0))
    emulator.add_workflow("one-second", [("done", 1.0)])
    emulator.set_speed(0)  # the runs end when the test moves the clock
    run_ids = await asyncio.to_thread(start_runs, emulator, "one-second", 500)
    emulator.clear_requests()
    before = emulator.connections()["accepted"]

    def polls() -> int:
        return sum(1 for r in emulator.requests if r["method"] == "GET")

    triggers = [
        CoverbaseWorkflowRunTrigger(run_id, poll_interval=0.2, max_poll_interval=0.2, deadline=time.time() + 120)
        for run_id in run_ids
    ]
    waiting = asyncio.gather(*(first_event(trigger) for trigger in triggers))
    await asyncio.to_thread(emulator.wait_for, lambda: polls() >= 1500, 60)  # three polls each
    emulator.advance(2)
    events = await waiting

    assert {event.status for event in events} == {"completed"}
    opened = emulator.connections()["accepted"] - before
    assert polls() >= 2000
    assert opened <= 33  # at most the shared transport's 32 connections (+1), not one per trigger or poll
    # The last trigger to finish gave the shared client back, and it closed its connections.
    settings = await CoverbaseHook().aget_settings()
    assert shared_clients.users("coverbase_default", settings.client) == 0
    await asyncio.to_thread(emulator.wait_for, lambda: emulator.connections()["open"] == 0)


async def test_a_429_pauses_every_trigger_of_the_connection(
    coverbase_emulator: CoverbaseEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator allows 10 requests per 3 s: after its first 429, all 30 triggers wait for the window.

    (3 s of the emulator's clock, which runs 20 times faster: about 67 requests/s, below the
    connection's budget of 100/s, so the triggers run into the limit.)

    Without the shared pause each trigger would run into the limit on its own: 30 answers 429 per window.
    """
    emulator = coverbase_emulator
    monkeypatch.setenv("AIRFLOW_CONN_COVERBASE_DEFAULT", conn_value(emulator, max_requests_per_second=100))
    run_ids = await asyncio.to_thread(start_runs, emulator, "stalled-forever", 30)
    emulator.clear_requests()
    emulator.set_limits(requests_per_window=10, window_seconds=3)
    triggers = [
        CoverbaseWorkflowRunTrigger(run_id, poll_interval=0.05, max_poll_interval=0.05, deadline=time.time() + 60)
        for run_id in run_ids
    ]
    tasks = [asyncio.ensure_future(first_event(trigger)) for trigger in triggers]

    def answered(status: int) -> list[dict[str, Any]]:
        return [r for r in emulator.requests if r["status"] == status]

    await asyncio.to_thread(emulator.wait_for, lambda: len(answered(429)) > 0, 20)
    first_429 = answered(429)[0]["time"]
    settings = await CoverbaseHook().aget_settings()
    assert shared_clients.users("coverbase_default", settings.client) == 30  # one client, one budget
    shared = shared_clients.acquire("coverbase_default", settings.client)
    assert shared.budget.paused_until > time.monotonic() - 5  # the 429 paused the shared budget
    await shared_clients.release(shared)
    await asyncio.to_thread(emulator.wait_for, lambda: any(r["time"] > first_429 + 3 for r in answered(200)), 20)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    # Every trigger of the connection held back: only requests already on their way got a 429 too,
    # about two windows' worth in all instead of 30 a window.
    limited = answered(429)
    assert len(limited) <= 20, f"{len(limited)} answers were 429: the triggers did not pause together"
    assert not any(task.done() and not task.cancelled() for task in tasks)  # no trigger gave up
