"""The UI record of a run (monitoring.py): checkpoint times, the output cap, the next poll."""

from __future__ import annotations

from typing import Any

from airflow_provider_coverbase.models import WorkflowRun
from airflow_provider_coverbase.monitoring import (
    MAX_OUTPUT_CHARS,
    XCOM_KEY,
    RunWatch,
    TryRecorder,
    brief,
    checkpoint_times,
    run_record,
)

T0 = 1_790_000_000.0


def legacy(checkpoints: list[str], status: str = "running", **extra: Any) -> WorkflowRun:
    return WorkflowRun.model_validate(
        {"workflow_run_id": "cbwfr_1", "status": status, "started_at": int(T0), "checkpoints_reached": checkpoints}
        | extra
    )


def record(
    run: WorkflowRun | dict[str, Any], previous: dict[str, Any] | None = None, now: float = T0
) -> dict[str, Any]:
    watch = RunWatch("c", "created", "airflow:k", poll_interval=30.0, max_poll_interval=1800.0)
    return run_record(run, watch, url="https://dash/runs/cbwfr_1", try_number=1, previous=previous, polled_at=now)


def test_first_seen_times_are_kept_from_the_previous_reading() -> None:
    first = record(legacy(["a"]), now=T0 + 10)
    second = record(legacy(["a", "b"]), previous=first, now=T0 + 99)
    assert second["checkpoints"] == [
        {"name": "a", "at": T0 + 10, "source": "first_seen"},
        {"name": "b", "at": T0 + 99, "source": "first_seen"},
    ]


def test_current_api_step_times_are_coverbase_times() -> None:
    run = WorkflowRun.model_validate(
        {
            "workflow_run_id": "cbwr_1",
            "status": "started",
            "steps": [
                {"step_id": "s1", "component_name": "Select", "status": "success", "updated_at": int(T0 + 5)},
                {"step_id": "s2", "component_name": "Send", "status": None},
            ],
        }
    )
    facts = brief(run, now=T0 + 50)
    assert facts["checkpoints"] == [{"name": "Select", "at": T0 + 5, "source": "coverbase"}]
    assert facts["current_step"] == "Send"
    assert checkpoint_times(run, now=T0 + 50) == facts["checkpoints"]


def test_output_is_capped_and_said_so() -> None:
    small = record(legacy(["a"], status="completed", output={"n": 1}))
    assert small["output"] == {"n": 1}
    assert small["output_truncated"] is False
    big = record(legacy(["a"], status="completed", output={"blob": "x" * (2 * MAX_OUTPUT_CHARS)}))
    assert big["output_truncated"] is True
    assert len(big["output"]) == MAX_OUTPUT_CHARS


def test_next_poll_follows_the_adaptive_schedule_and_stops_at_the_end() -> None:
    young = record(legacy([]), now=T0 + 60)
    assert young["next_poll_at"] == T0 + 60 + 30.0  # at least poll_interval
    old = record(legacy([]), now=T0 + 36_000)
    assert old["next_poll_at"] == T0 + 36_000 + 1800.0  # 5% of ten hours, capped at max_poll_interval
    assert record(legacy([], status="failed"))["next_poll_at"] is None


def test_a_trigger_brief_merges_with_the_record_pushed_before_deferring() -> None:
    before = record(legacy(["a"]), now=T0 + 1)
    event_run = brief(legacy(["a", "b"], status="failed", error="SMTP down"), now=T0 + 500)
    merged = record(event_run, previous=before, now=T0 + 501)
    assert [(c["name"], c["at"]) for c in merged["checkpoints"]] == [("a", T0 + 1), ("b", T0 + 500)]
    assert merged["failure_reason"] == "SMTP down"
    assert merged["status"] == "failed"
    assert merged["next_poll_at"] is None


class FakeTaskInstance:
    """A task instance's XCom, counting the pulls (each an execution-API call in a worker)."""

    def __init__(self, pushed: dict[str, Any] | None = None) -> None:
        self.try_number, self.map_index, self.pulls = 1, -1, 0
        self.xcoms: dict[str, Any] = {XCOM_KEY: pushed} if pushed is not None else {}

    def xcom_pull(self, key: str, map_indexes: int) -> Any:
        self.pulls += 1
        return self.xcoms.get(key)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def test_a_recorder_pulls_the_earlier_record_once_and_keeps_its_first_seen_times() -> None:
    watch = RunWatch("c", "created", "airflow:k", poll_interval=30.0, max_poll_interval=1800.0)
    deferred = record(legacy(["a"]), now=T0 + 10)  # pushed by the process that deferred
    ti = FakeTaskInstance(pushed=deferred)
    recorder = TryRecorder()
    assert recorder.previous(ti) == deferred
    recorder.push(ti, legacy(["a", "b"]), watch, url=None)
    first_b = ti.xcoms[XCOM_KEY]["checkpoints"][1]
    ti.xcoms[XCOM_KEY] = None  # what is pushed is not read back: the recorder keeps its own
    recorder.push(ti, legacy(["a", "b", "c"]), watch, url=None)
    assert ti.pulls == 1
    checkpoints = ti.xcoms[XCOM_KEY]["checkpoints"]
    assert checkpoints[0]["at"] == T0 + 10  # first seen by the earlier process, kept through both pushes
    assert checkpoints[1] == first_b  # first seen by this process's first push
