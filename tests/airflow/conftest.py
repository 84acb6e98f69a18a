"""Fixtures for operator, sensor and trigger tests: the emulator over loopback and a task context.

The task instance is a small stand-in with the attributes the operator reads (identity, try
numbers, ``xcom_push``); Airflow's task state store is a dict with its get/set interface. Whole
Airflow runs (``dag.test()``) are in ``tests/e2e``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred
from airflow.triggers.base import TriggerEvent

from airflow_provider_coverbase.operators.coverbase import CoverbaseRunWorkflowOperator
from airflow_provider_coverbase.testing import CoverbaseEmulator


@dataclass
class FakeTI:
    dag_id: str = "sweep_dag"
    task_id: str = "run_sweep"
    run_id: str = "scheduled__2026-10-01T00:00:00+00:00"
    map_index: int = -1
    try_number: int = 1
    max_tries: int = 2
    xcoms: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value

    def xcom_pull(self, key: str = "return_value", *, map_indexes: int | None = None, **_: Any) -> Any:
        assert map_indexes == self.map_index  # this task instance's own XCom
        return self.xcoms.get(key)


class MemoryStateStore:
    """Airflow 3.3's ``task_state_store`` interface, in memory."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        assert value is not None
        json.dumps(value)  # must be JSON, like the real store
        self.values[key] = value


def make_context(ti: FakeTI, store: MemoryStateStore | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {"ti": ti, "task_instance": ti}
    if store is not None:
        context["task_state_store"] = store
    return context


def run_trigger(deferred: TaskDeferred) -> TriggerEvent:
    """Serialize the trigger as Airflow does, rebuild it, run it for real, return its one event."""
    classpath, kwargs = deferred.trigger.serialize()
    json.dumps(kwargs)  # primitives only
    module, _, name = classpath.rpartition(".")
    trigger = getattr(importlib.import_module(module), name)(**kwargs)

    async def first_event() -> TriggerEvent:
        events = trigger.run()
        event = await asyncio.wait_for(anext(events), 30)
        with pytest.raises(StopAsyncIteration):
            await anext(events)  # exactly one event
        return event

    return asyncio.run(first_event())


def execute(op: Any, context: dict[str, Any]) -> Any:
    """``execute``; if it defers, drive the trigger for real and resume like the task runner does."""
    try:
        return op.execute(context)
    except TaskDeferred as deferred:
        event = run_trigger(deferred)
        return getattr(op, deferred.method_name)(context, event=event.payload)


def conn_value(emulator: CoverbaseEmulator, **extra: Any) -> str:
    """The emulator's connection, without retry backoff (tests never sleep for retries)."""
    value = json.loads(emulator.conn_uri)
    value["extra"] = {
        **value.get("extra", {}),
        "dashboard_run_path": "/runs/{workflow_run_id}",
        "retry_initial_delay": 0,
        "retry_max_delay": 0,
        **extra,
    }
    return json.dumps(value)


@pytest.fixture(params=["legacy", "current"])
def emulator(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> CoverbaseEmulator:
    """The emulator in each dialect, with ``coverbase_default`` pointing at it."""
    name = "coverbase_emulator" if request.param == "legacy" else "coverbase_emulator_current"
    emu: CoverbaseEmulator = request.getfixturevalue(name)
    monkeypatch.setenv("AIRFLOW_CONN_COVERBASE_DEFAULT", conn_value(emu))
    return emu


@pytest.fixture
def ti() -> FakeTI:
    return FakeTI()


# ---- the operator under test, as the operator and task-log tests build it ----------------------

SWEEP = "quarterly-privacy-sweep"
SWEEP_INPUT = {"quarter": "2026-Q4", "vendor_filter": {"tags": ["processes_pii"], "tier": 1}}


def operator(**kwargs: Any) -> CoverbaseRunWorkflowOperator:
    settings: dict[str, Any] = {
        "task_id": "run_sweep",
        "workflow_name": SWEEP,
        "input": SWEEP_INPUT,
        "poll_interval": 0.02,
        "retries": 2,
    }
    settings.update(kwargs)
    return CoverbaseRunWorkflowOperator(**settings)
