"""CoverbaseWorkflowRunEventTrigger against the stateful fake: baseline, restarts, errors, shared polls.

The trigger's hook gets an ``httpx.MockTransport`` over ``FakeCoverbaseAPI`` (the server is faked,
not our code). "Restarting" means what the triggerer does: cancel the running trigger, rebuild a
new one from ``serialize()`` and run it again; the asset state store is an in-memory stand-in
with the accessor's async ``aget``/``aset`` interface.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_coverbase.hooks.coverbase import CoverbaseHook
from airflow_provider_coverbase.models import WorkflowRun
from airflow_provider_coverbase.triggers import events as events_module
from airflow_provider_coverbase.triggers.events import CoverbaseWatchError, CoverbaseWorkflowRunEventTrigger
from airflow_provider_coverbase.waiting.pull_watch import GRACE_SECONDS, WatchState, event_payload, select_new_runs
from tests.fake_api import API_KEY, FakeCoverbaseAPI

WORKFLOW = "quarterly-privacy-sweep"
T0 = 1_800_000_000


class MemoryAssetStore:
    """The asset state store accessor's async interface, in memory (values must be JSON)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes = 0
        self.fail_writes = 0

    async def aget(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.values[key])) if key in self.values else default

    async def aset(self, key: str, value: Any) -> None:
        if self.fail_writes:
            self.fail_writes -= 1
            raise RuntimeError("state store unavailable")
        assert value is not None
        self.values[key] = json.loads(json.dumps(value))
        self.writes += 1


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeCoverbaseAPI:
    api = FakeCoverbaseAPI("current")
    api.add_workflow("adhoc-campaign")
    conn = {"conn_type": "coverbase", "host": "http://127.0.0.1:9", "password": API_KEY}
    conn["extra"] = json.dumps({"retry_initial_delay": 0, "retry_max_delay": 0, "max_retries": 0})  # type: ignore[assignment]
    monkeypatch.setenv("AIRFLOW_CONN_COVERBASE_DEFAULT", json.dumps(conn))
    monkeypatch.setattr(
        events_module,
        "CoverbaseHook",
        functools.partial(CoverbaseHook, async_transport=httpx.MockTransport(api)),
    )
    events_module._recent_fatal.clear()
    return api


def start_run(fake: FakeCoverbaseAPI, name: str = WORKFLOW) -> str:
    with httpx.Client(transport=httpx.MockTransport(fake), base_url="http://fake") as client:
        response = client.post(
            f"/v1/workflows/{name}/run", json={"input": {}}, headers={"Authorization": f"Bearer {API_KEY}"}
        )
    return str(response.json()["workflow_run_id"])


def finish(fake: FakeCoverbaseAPI, run_id: str, status: str = "completed", at: int = T0) -> None:
    fake.set_status(run_id, status, completed_at=at)


def list_calls(fake: FakeCoverbaseAPI) -> int:
    return sum(1 for r in fake.requests if r.method == "GET" and r.url.path == "/v1/workflows/runs")


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polls state changed by other tasks and by the test
            await asyncio.sleep(0.005)


class Running:
    """A trigger's ``run()`` driven in the background, as the triggerer drives it."""

    def __init__(self, trigger: CoverbaseWorkflowRunEventTrigger) -> None:
        self.trigger = trigger
        self.events: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._drive(trigger.run()))

    async def _drive(self, stream: AsyncIterator[TriggerEvent]) -> None:
        async for event in stream:
            self.events.append(event.payload)

    async def stop(self) -> None:
        """Cancel it, like a triggerer shutting down."""
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


async def watch_one_run(
    fake: FakeCoverbaseAPI, trigger: CoverbaseWorkflowRunEventTrigger, *, polls: int = 1
) -> tuple[Running, str]:
    """Run ``trigger`` until it has listed runs ``polls`` times, finish one new run (at T0), and stop
    the trigger once it has emitted that run (``wait_until`` fails the test if it never does)."""
    running = Running(trigger)
    await wait_until(lambda: list_calls(fake) >= polls)
    run_id = start_run(fake)
    finish(fake, run_id, at=T0)
    await wait_until(lambda: len(running.events) == 1)
    await running.stop()
    return running, run_id


def rebuilt(trigger: CoverbaseWorkflowRunEventTrigger, store: MemoryAssetStore | None) -> Any:
    """A new trigger from the old one's serialized kwargs, with the store the triggerer injects."""
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_coverbase.triggers.events.CoverbaseWorkflowRunEventTrigger"
    new = CoverbaseWorkflowRunEventTrigger(**json.loads(json.dumps(kwargs)))
    new.asset_state_store = store
    return new


def watcher(store: MemoryAssetStore | None, **kwargs: Any) -> CoverbaseWorkflowRunEventTrigger:
    trigger = CoverbaseWorkflowRunEventTrigger(WORKFLOW, poll_interval=0.01, **kwargs)
    trigger.asset_state_store = store
    return trigger


# ---- construction ----------------------------------------------------------------------


def test_serialize_is_configuration_only_and_hashes_the_same_on_every_parse() -> None:
    trigger = CoverbaseWorkflowRunEventTrigger(WORKFLOW, "my_conn", statuses=["failed", "canceled", "failed"])
    classpath, kwargs = trigger.serialize()
    assert kwargs == {
        "workflow_name": WORKFLOW,
        "coverbase_conn_id": "my_conn",
        "statuses": ["cancelled", "failed"],
        "poll_interval": 60.0,
        "lookback": 30 * 24 * 3600.0,
        "page_size": 500,
    }
    again = CoverbaseWorkflowRunEventTrigger(WORKFLOW, "my_conn", statuses=("cancelled", "failed"))
    assert BaseEventTrigger.hash(classpath, kwargs) == BaseEventTrigger.hash(*again.serialize())
    assert CoverbaseWorkflowRunEventTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert trigger.shared_stream_key() == again.shared_stream_key()
    assert trigger.shared_stream_key() != CoverbaseWorkflowRunEventTrigger(WORKFLOW).shared_stream_key()
    assert trigger.state_key == "coverbase-watch:my_conn:quarterly-privacy-sweep:cancelled,failed"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"statuses": ["running"]}, "not a terminal status"),
        ({"statuses": []}, "at least one"),
        ({"poll_interval": 0}, "poll_interval must be a positive"),
        ({"lookback": 10}, "lookback must be at least poll_interval"),
        ({"page_size": 501}, "page_size must be between 1 and 500"),
        ({"coverbase_conn_id": ""}, "coverbase_conn_id must be a non-empty string"),
    ],
)
def test_bad_arguments_fail_at_parse_time(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CoverbaseWorkflowRunEventTrigger(WORKFLOW, **kwargs)
    with pytest.raises(ValueError, match="workflow_name must be a non-empty string"):
        CoverbaseWorkflowRunEventTrigger("")


# ---- the bookkeeping, without I/O ------------------------------------------------------


def run_of(run_id: str, status: str, at: int | None, name: str = WORKFLOW) -> WorkflowRun:
    return WorkflowRun.model_validate(
        {"workflow_run_id": run_id, "workflow_name": name, "status": status, "started_at": T0 - 100, "completed_at": at}
    )


def test_baseline_then_only_new_runs_once_each() -> None:
    old = [run_of("r1", "completed", T0), run_of("r2", "failed", T0 + 5), run_of("r3", "started", None)]
    new, state = select_new_runs(None, old, ["completed"])
    assert new == []
    assert state == WatchState(T0, {"r1": T0})
    listing = [*old, run_of("r4", "completed", T0 + 9), run_of("r5", "completed", T0 + 7)]
    new, state = select_new_runs(state, listing, ["completed"])
    assert [r.workflow_run_id for r in new] == ["r5", "r4"]  # oldest finish first
    assert select_new_runs(state, listing, ["completed"]) == ([], state)


def test_a_run_visible_late_within_the_grace_window_is_still_new() -> None:
    state = WatchState(T0, {"a": T0})
    late = run_of("late", "completed", T0 - GRACE_SECONDS + 1)
    too_late = run_of("too-late", "completed", T0 - GRACE_SECONDS - 1)
    new, _ = select_new_runs(state, [late, too_late], ["completed"])
    assert [r.workflow_run_id for r in new] == ["late"]


def test_the_state_keeps_only_runs_near_the_watermark() -> None:
    state = WatchState().handle([run_of("a", "completed", T0), run_of("b", "completed", T0 + 2 * GRACE_SECONDS)])
    assert state == WatchState(T0 + 2 * GRACE_SECONDS, {"b": T0 + 2 * GRACE_SECONDS})
    assert WatchState.from_json(json.loads(json.dumps(state.to_json()))) == state
    for garbage in (None, "x", {"version": 2}, {"version": 1, "watermark": "x", "handled": {}}, {"version": 1}):
        assert WatchState.from_json(garbage) is None


def test_event_payload_has_the_receiver_keys() -> None:
    assert event_payload(run_of("cbwr_1", "canceled", T0)) == {
        "event_id": "poll:cbwr_1:cancelled",
        "event_type": "WorkflowRun.Updated",
        "workflow_run_id": "cbwr_1",
        "workflow_name": WORKFLOW,
        "status": "cancelled",
        "checkpoint": None,
        "occurred_at": datetime.fromtimestamp(T0, UTC).isoformat(),
        "output": None,
        "output_truncated": False,
    }


# ---- the trigger against the fake ------------------------------------------------------


async def test_emits_runs_finished_after_the_watch_began_once(fake: FakeCoverbaseAPI) -> None:
    before = start_run(fake)
    finish(fake, before, at=T0)
    store = MemoryAssetStore()
    running = Running(watcher(store))
    await wait_until(lambda: list_calls(fake) >= 1)
    later = start_run(fake)
    other = start_run(fake)
    finish(fake, later, at=T0 + 60)
    finish(fake, other, "failed", at=T0 + 61)  # not a watched status
    await wait_until(lambda: len(running.events) >= 1)
    polls = list_calls(fake)
    await wait_until(lambda: list_calls(fake) >= polls + 3)
    await running.stop()
    assert running.events == [
        {
            "event_id": f"poll:{later}:completed",
            "event_type": "WorkflowRun.Completed",
            "workflow_run_id": later,
            "workflow_name": WORKFLOW,
            "status": "completed",
            "checkpoint": None,
            "occurred_at": datetime.fromtimestamp(T0 + 60, UTC).isoformat(),
            "output": None,
            "output_truncated": False,
        }
    ]
    query = next(r for r in fake.requests if r.url.path == "/v1/workflows/runs").url.params
    assert query.get_list("status") == ["completed"]
    assert query["workflow_name"] == WORKFLOW
    assert int(query["created_at_after"]) > int(datetime.now(UTC).timestamp()) - 31 * 86400


async def test_restart_with_the_state_store_resumes_without_repeats(fake: FakeCoverbaseAPI) -> None:
    store = MemoryAssetStore()
    first = watcher(store, statuses=["completed", "failed"])
    baseline_run = start_run(fake)
    finish(fake, baseline_run, at=T0)
    running = Running(first)
    await wait_until(lambda: list_calls(fake) >= 1)
    a = start_run(fake)
    finish(fake, a, "failed", at=T0 + 10)
    await wait_until(lambda: len(running.events) == 1)
    await running.stop()

    # The triggerer is down: one more run finishes, in the same second as the last one emitted.
    b = start_run(fake, "quarterly-privacy-sweep")
    finish(fake, b, at=T0 + 10)
    second = Running(rebuilt(first, store))
    await wait_until(lambda: len(second.events) == 1)
    polls = list_calls(fake)
    await wait_until(lambda: list_calls(fake) >= polls + 3)
    await second.stop()

    third = Running(rebuilt(first, store))  # and once more: nothing left to emit
    polls = list_calls(fake)
    await wait_until(lambda: list_calls(fake) >= polls + 3)
    await third.stop()
    emitted = [e["workflow_run_id"] for e in running.events + second.events + third.events]
    assert emitted == [a, b]
    assert [e["status"] for e in running.events + second.events] == ["failed", "completed"]


async def test_restart_without_a_state_store_takes_a_new_baseline(fake: FakeCoverbaseAPI) -> None:
    running, a = await watch_one_run(fake, watcher(None))
    b = start_run(fake)
    finish(fake, b, at=T0 + 5)  # finishes while the triggerer is down: part of the new baseline
    second = Running(rebuilt(running.trigger, None))
    await wait_until(lambda: list_calls(fake) >= 5)
    c = start_run(fake)
    finish(fake, c, at=T0 + 9)
    await wait_until(lambda: len(second.events) == 1)
    await second.stop()
    assert [e["workflow_run_id"] for e in running.events + second.events] == [a, c]


async def test_nothing_is_emitted_until_the_state_is_stored(fake: FakeCoverbaseAPI) -> None:
    store = MemoryAssetStore()
    running = Running(watcher(store))
    await wait_until(lambda: store.writes == 1)  # the baseline
    store.fail_writes = 2
    a = start_run(fake)
    finish(fake, a, at=T0)
    await wait_until(lambda: len(running.events) == 1)
    await running.stop()
    assert store.fail_writes == 0
    assert [e["workflow_run_id"] for e in running.events] == [a]
    assert store.values[running.trigger.state_key]["handled"] == {a: T0}


async def test_transient_errors_back_off_and_polling_goes_on(fake: FakeCoverbaseAPI) -> None:
    fake.script.append(httpx.Response(503, json={"detail": "Service Unavailable"}))
    running, run_id = await watch_one_run(fake, watcher(MemoryAssetStore()), polls=2)
    assert not fake.script  # the scripted 503 was answered, and the watch went on
    assert [e["workflow_run_id"] for e in running.events] == [run_id]
    assert list_calls(fake) >= 3  # the failed poll, the baseline, the poll that saw the run


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(404, json={"detail": "Not Found"}),
        httpx.Response(404, json={"detail": {"code": "not_found", "message": "Not found."}}),
        httpx.Response(405, json={"detail": "Method Not Allowed"}),
    ],
    ids=["404-plain", "404-code", "405"],
)
async def test_the_legacy_api_fails_at_once_and_a_restart_does_not_hammer_it(
    fake: FakeCoverbaseAPI, answer: httpx.Response
) -> None:
    fake.script.append(answer)
    trigger = watcher(None)
    with pytest.raises(CoverbaseWatchError, match="legacy contract, which has no list endpoint"):
        await anext(trigger.run())
    assert list_calls(fake) == 1
    restarted = rebuilt(trigger, None).run()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(restarted), 0.2)  # it waits FATAL_RECHECK_SECONDS first
    assert list_calls(fake) == 1


async def test_an_unknown_workflow_fails_with_its_name(fake: FakeCoverbaseAPI) -> None:
    trigger = CoverbaseWorkflowRunEventTrigger("no-such-workflow", poll_interval=0.01)
    with pytest.raises(CoverbaseWatchError, match="workflow 'no-such-workflow' not found"):
        await anext(trigger.run())


def test_the_client_says_legacy_for_a_missing_list_endpoint(fake: FakeCoverbaseAPI) -> None:
    from airflow_provider_coverbase.client import CoverbaseClient
    from airflow_provider_coverbase.exceptions import NotFoundError

    fake.script.append(httpx.Response(404, json={"detail": "Not Found"}))
    with CoverbaseClient(API_KEY, base_url="http://127.0.0.1:9", transport=httpx.MockTransport(fake)) as client:
        with pytest.raises(NotFoundError, match="exists only in the current API") as caught:
            client.list_workflow_runs(workflow_name=WORKFLOW)
        with pytest.raises(NotFoundError, match="workflow 'nope' not found"):
            client.list_workflow_runs(workflow_name="nope")
    assert "legacy contract" in str(caught.value)


# ---- shared poll through Airflow's own SharedStreamManager -----------------------------


async def test_watchers_of_one_connection_share_one_poll(fake: FakeCoverbaseAPI) -> None:
    SharedStreamManager = pytest.importorskip("airflow.triggers.shared_stream").SharedStreamManager  # Airflow >= 3.3

    manager = SharedStreamManager()
    store_done, store_failed, store_other = MemoryAssetStore(), MemoryAssetStore(), MemoryAssetStore()
    done = watcher(store_done, statuses=["completed"])
    failed = watcher(store_failed, statuses=["failed"])
    other = CoverbaseWorkflowRunEventTrigger("adhoc-campaign", poll_interval=0.01)
    other.asset_state_store = store_other
    assert done.shared_stream_key() == failed.shared_stream_key() == other.shared_stream_key()
    got: dict[int, list[dict[str, Any]]] = {1: [], 2: [], 3: []}

    async def drive(trigger_id: int, trigger: CoverbaseWorkflowRunEventTrigger) -> None:
        stream = manager.subscribe(trigger_id=trigger_id, trigger=trigger, key=trigger.shared_stream_key())
        async for event in trigger.filter_shared_stream(stream):
            got[trigger_id].append(event.payload)

    tasks = [asyncio.create_task(drive(i, t)) for i, t in ((1, done), (2, failed), (3, other))]
    await wait_until(lambda: all(s.writes == 1 for s in (store_done, store_failed, store_other)))
    a, b, c = start_run(fake), start_run(fake), start_run(fake, "adhoc-campaign")
    finish(fake, a, at=T0)
    finish(fake, b, "failed", at=T0 + 1)
    finish(fake, c, at=T0 + 2)
    await wait_until(lambda: all(got.values()))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await manager.stop_all()
    assert [e["workflow_run_id"] for e in got[1]] == [a]
    assert [e["workflow_run_id"] for e in got[2]] == [b]
    assert [e["workflow_run_id"] for e in got[3]] == [c]
    shared = [r for r in fake.requests if r.url.path == "/v1/workflows/runs" and "workflow_name" not in r.url.params]
    checks = [r for r in fake.requests if r.url.path == "/v1/workflows/runs" and "workflow_name" in r.url.params]
    assert len(checks) == 3  # each watcher checks its workflow once
    assert all(r.url.params["limit"] == "1" for r in checks)
    assert shared, "the listing was shared"
    assert sorted(shared[0].url.params.get_list("status")) == ["canceled", "completed", "failed"]


# ---- against the emulator's current dialect, across a restart ---------------------------


def test_pull_path_against_the_emulator_emits_each_finished_run_once_across_a_restart(
    coverbase_emulator_current: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each "triggerer" is its own event loop; the second is rebuilt from the first's serialized kwargs."""
    from airflow_provider_coverbase.client import CoverbaseClient
    from tests.airflow.conftest import conn_value

    emu = coverbase_emulator_current
    emu.set_speed(0)
    monkeypatch.setenv("AIRFLOW_CONN_COVERBASE_DEFAULT", conn_value(emu))
    events_module._recent_fatal.clear()
    client = CoverbaseClient(emu.api_key, base_url=emu.base_url)

    def finished_run(workflow: str = "adhoc-campaign") -> str:
        run_id = client.run_workflow(workflow, {}).workflow_run_id
        emu.advance(5)  # adhoc-campaign takes 1 emulated second
        return run_id

    def polls() -> int:
        return sum(1 for r in emu.requests if r["method"] == "GET" and r["path"] == "/v1/workflows/runs")

    async def triggerer(trigger: Any, during: Callable[[], list[str]]) -> tuple[list[str], list[dict[str, Any]]]:
        running = Running(trigger)
        await wait_until(lambda: polls() >= 1)
        started = await asyncio.to_thread(during)
        await wait_until(lambda: len(running.events) >= len(started))
        seen = polls()
        await wait_until(lambda: polls() >= seen + 5)  # and nothing more comes
        await running.stop()
        return started, running.events

    store = MemoryAssetStore()
    before = finished_run()
    first = CoverbaseWorkflowRunEventTrigger("adhoc-campaign", statuses=["completed", "failed"], poll_interval=0.02)
    first.asset_state_store = store
    try:
        emu.clear_requests()
        started_1, events_1 = asyncio.run(triggerer(first, lambda: [finished_run(), finished_run()]))
        finished_run("always-fails")  # another workflow: never this watcher's event
        while_down = finished_run()  # finishes while no triggerer runs
        emu.clear_requests()
        _, events_2 = asyncio.run(triggerer(rebuilt(first, store), list))
        started_3, events_3 = asyncio.run(triggerer(rebuilt(first, store), lambda: [finished_run()]))
    finally:
        client.close()
    emitted = [e["workflow_run_id"] for e in events_1 + events_2 + events_3]
    assert emitted == [*started_1, while_down, *started_3]
    assert before not in emitted
    assert {e["event_id"] for e in events_1 + events_2 + events_3} == {f"poll:{r}:completed" for r in emitted}
    assert all(e["workflow_name"] == "adhoc-campaign" and e["status"] == "completed" for e in events_1)


async def test_a_shared_watcher_on_the_legacy_api_fails_at_once(fake: FakeCoverbaseAPI) -> None:
    SharedStreamManager = pytest.importorskip("airflow.triggers.shared_stream").SharedStreamManager  # Airflow >= 3.3

    fake.script.extend([httpx.Response(404, json={"detail": "Not Found"})] * 2)
    manager = SharedStreamManager()
    trigger = watcher(None)
    stream = manager.subscribe(trigger_id=1, trigger=trigger, key=trigger.shared_stream_key())
    try:
        with pytest.raises(CoverbaseWatchError, match="legacy contract"):
            async with asyncio.timeout(5):
                await anext(trigger.filter_shared_stream(stream))
    finally:
        await manager.unsubscribe(1, trigger.shared_stream_key())
        await manager.stop_all()
    assert ("coverbase_default", WORKFLOW) in events_module._recent_fatal


async def test_a_missing_connection_fails_with_its_id(fake: FakeCoverbaseAPI) -> None:
    trigger = CoverbaseWorkflowRunEventTrigger(WORKFLOW, coverbase_conn_id="no_such_conn", poll_interval=0.01)
    with pytest.raises(CoverbaseWatchError, match="cannot poll connection 'no_such_conn'"):
        await anext(trigger.run())
    assert list_calls(fake) == 0
    assert ("no_such_conn", WORKFLOW) in events_module._recent_fatal


async def test_a_store_of_another_shape_falls_back_to_memory(fake: FakeCoverbaseAPI) -> None:
    class SeveralAssets:
        async def aget(self, key: str, default: Any = None) -> Any:
            raise ValueError("Task has 2 concrete inlets and outlets")

        async def aset(self, key: str, value: Any) -> None:
            raise ValueError("Task has 2 concrete inlets and outlets")

    trigger = watcher(None)
    trigger.asset_state_store = SeveralAssets()
    running, run_id = await watch_one_run(fake, trigger)
    assert [e["workflow_run_id"] for e in running.events] == [run_id]
    assert trigger._store() is None  # the unusable store is left alone: the state is kept in memory


def test_a_watcher_of_several_assets_keeps_its_state_with_the_first_by_name() -> None:
    from airflow.sdk import Asset

    context = pytest.importorskip("airflow.sdk.execution_time.context")
    if not hasattr(context, "AssetStateStoreAccessors"):
        pytest.skip("the asset state store is new in Airflow 3.3")
    AssetStateStoreAccessors = context.AssetStateStoreAccessors

    trigger = watcher(None)
    trigger.asset_state_store = AssetStateStoreAccessors(inlets=[Asset("zeta"), Asset("alpha")])
    assert repr(trigger._store()) == "<AssetStateStoreAccessor name='alpha'>"
    trigger.asset_state_store = AssetStateStoreAccessors(inlets=[Asset("only")])
    assert trigger._store() is trigger.asset_state_store
