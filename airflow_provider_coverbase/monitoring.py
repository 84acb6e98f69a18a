"""What a task records about its Coverbase run for the UI views, and the small trigger event. No Airflow imports.

The operator and the sensor push one XCom, :data:`XCOM_KEY` (``coverbase_run``), holding a
:func:`run_record`: the run id, the connection, the idempotency key, whether this try *created* the
run, *reattached* to one an earlier try started, or *watched* one it did not start (sensor), the
status, the checkpoints with the time each was reached (``source="coverbase"``, when the API gives a
time: a current-API step's ``updated_at``) or else first seen by a poll (``source="first_seen"``), the
current step, the failure reason, the last poll and the next poll expected (from the adaptive
schedule), and the output (capped at :data:`MAX_OUTPUT_CHARS` of JSON, with ``output_truncated``).

The record is pushed when the try starts watching (before deferring) and again when it ends. A
deferred task's trigger has no database access, so while it waits the record is not updated; the UI's
API reads the run from Coverbase for the rows on screen instead (see ``plugins/ui_api.py``). The
trigger's event carries only :func:`brief` (status, checkpoints with first-seen times, reason,
current step: what the task needs to resume and to complete the record), never the output or the
steps, so Airflow's "Trigger fired event" log line stays short.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from airflow_provider_coverbase.models import TERMINAL_STATUSES, WorkflowRun
from airflow_provider_coverbase.waiting.schedule import (
    DEFAULT_MAX_POLL_INTERVAL,
    DEFAULT_POLL_INTERVAL,
    poll_interval_for,
    run_age,
)

__all__ = [
    "MAX_CHECKPOINTS",
    "MAX_OUTPUT_CHARS",
    "RECORD_VERSION",
    "TERMINAL",
    "XCOM_KEY",
    "Origin",
    "RunWatch",
    "TryRecorder",
    "brief",
    "checkpoint_times",
    "current_step",
    "pull_record",
    "push_record",
    "run_record",
]

#: The statuses of a finished run, as records hold them (the values of the models' one set).
TERMINAL = frozenset(status.value for status in TERMINAL_STATUSES)
#: XCom key of the record.
XCOM_KEY = "coverbase_run"
RECORD_VERSION = 1
#: The output is kept in the record up to this many characters of JSON; longer is cut, and said so.
MAX_OUTPUT_CHARS = 20_000
#: At most this many checkpoints are carried in a trigger event and in a record (the last ones).
MAX_CHECKPOINTS = 200

Origin = Literal["created", "reattached", "watched"]


@dataclass(frozen=True)
class RunWatch:
    """How a task watches its run: the fields that every record of its try shares.

    The operator and the sensor each say this once (the sensor: ``origin="watched"``, no key);
    :meth:`TryRecorder.push` adds the run's facts of the moment.
    """

    conn_id: str
    origin: Origin
    idempotency_key: str | None
    poll_interval: float
    max_poll_interval: float


def checkpoint_times(
    run: WorkflowRun, previous: Mapping[str, Any] | None = None, now: float | None = None
) -> list[dict[str, Any]]:
    """The run's checkpoints, each with ``name``, ``at`` (Unix seconds) and ``source``.

    ``source="coverbase"``: the time Coverbase gave (a current-API step's ``updated_at``).
    ``source="first_seen"``: no time from Coverbase; ``at`` is when a poll first saw it, kept from
    ``previous`` (an earlier record or a trigger's :func:`brief`) when it was seen before.
    """
    now = time.time() if now is None else now
    seen: dict[str, float] = {}
    for item in (previous or {}).get("checkpoints") or []:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str) and isinstance(item.get("at"), int | float):
            seen.setdefault(str(item["name"]), float(item["at"]))
    step_times: dict[str, float] = {}
    for step in run.steps or ():
        if step.status == "success" and step.updated_at is not None:
            step_times.setdefault(step.label, step.updated_at.timestamp())
    result = []
    for name in run.checkpoints[-MAX_CHECKPOINTS:]:
        if name in step_times:
            result.append({"name": name, "at": step_times[name], "source": "coverbase"})
        else:
            result.append({"name": name, "at": seen.get(name, now), "source": "first_seen"})
    return result


def current_step(run: WorkflowRun) -> str | None:
    """The step the run is at: the first step without a result yet (current API), else ``None``."""
    for step in run.steps or ():
        if step.status is None:
            return step.label
    return None


def _ts(value: Any) -> float | None:
    return value.timestamp() if value is not None else None


def brief(run: WorkflowRun, previous: Mapping[str, Any] | None = None, now: float | None = None) -> dict[str, Any]:
    """The few facts of a run a trigger event carries: no output, no steps (a few hundred bytes)."""
    failed = run.failed_step
    return {
        "workflow_run_id": run.workflow_run_id,
        "workflow_name": run.workflow_name,
        "status": run.status.value,
        "api_status": run.api_status,
        "started_at": _ts(run.started_at),
        "completed_at": _ts(run.completed_at),
        "checkpoints": checkpoint_times(run, previous, now),
        "current_step": current_step(run),
        "failed_step": failed.label if failed is not None else None,
        "failure_reason": run.failure_reason,
    }


def _capped_output(output: Any) -> tuple[Any, bool]:
    if output is None:
        return None, False
    text = json.dumps(output, default=str)
    if len(text) <= MAX_OUTPUT_CHARS:
        return output, False
    return text[:MAX_OUTPUT_CHARS], True


def run_record(
    run: WorkflowRun | Mapping[str, Any],
    watch: RunWatch,
    *,
    url: str | None,
    try_number: int,
    previous: Mapping[str, Any] | None = None,
    polled_at: float | None = None,
    output: Any = None,
) -> dict[str, Any]:
    """The XCom record of one try's run (see the module docstring).

    ``run`` is a :class:`WorkflowRun` read just now, or a trigger event's :func:`brief` (then
    ``output`` may be given separately). ``previous`` (the record pushed earlier in this try) keeps
    the first-seen times of checkpoints.
    """
    polled_at = time.time() if polled_at is None else polled_at
    if isinstance(run, WorkflowRun):
        facts = brief(run, previous, polled_at)
        output = run.output
    else:
        facts = dict(run)
        old = {c["name"]: c for c in (previous or {}).get("checkpoints") or [] if isinstance(c, Mapping)}
        facts["checkpoints"] = [
            old.get(c["name"], c) if c.get("source") == "first_seen" else c
            for c in facts.get("checkpoints") or []
            if isinstance(c, Mapping) and "name" in c
        ]
    value, truncated = _capped_output(output)
    record = {
        "v": RECORD_VERSION,
        **asdict(watch),
        "url": url,
        "try_number": try_number,
        **facts,
        "last_poll_at": polled_at,
        "next_poll_at": None,
        "output": value,
        "output_truncated": truncated,
    }
    record["next_poll_at"] = expected_next_poll(record, polled_at)
    return record


def expected_next_poll(record: Mapping[str, Any], now: float) -> float | None:
    """When the waiting task polls next at the latest, by the adaptive schedule (``None`` once terminal)."""
    if record.get("status") in TERMINAL:
        return None
    started = record.get("started_at") or record.get("last_poll_at") or now
    age = run_age(None, float(started), now)
    return now + poll_interval_for(
        age,
        float(record.get("poll_interval") or DEFAULT_POLL_INTERVAL),
        float(record.get("max_poll_interval") or DEFAULT_MAX_POLL_INTERVAL),
    )


def pull_record(ti: Any) -> dict[str, Any] | None:
    """The record this try pushed earlier (before deferring), or ``None``; never fails the task."""
    try:
        value = ti.xcom_pull(key=XCOM_KEY, map_indexes=ti.map_index)
    except Exception:  # a missing record must not fail the task: its times are re-seen instead
        return None
    return value if isinstance(value, dict) else None


def push_record(ti: Any, record: Mapping[str, Any]) -> None:
    """Push ``record`` under :data:`XCOM_KEY`."""
    ti.xcom_push(key=XCOM_KEY, value=dict(record))


class TryRecorder:
    """Pushes the records of one task try, each keeping the first-seen times of the one before.

    The record pushed before is pulled from XCom once per process (an earlier process of the try, such
    as the one that deferred, may have pushed it), then kept: only this task writes the key, so reading
    back what was just pushed would be an execution-API call for nothing. Make one per ``execute`` and
    per ``execute_complete``: the operator and the sensor record their run through it.
    """

    def __init__(self) -> None:
        self._last: dict[str, Any] | None = None
        self._pulled = False

    def previous(self, ti: Any) -> dict[str, Any] | None:
        """The record this try pushed last, or ``None``."""
        if not self._pulled:
            self._last, self._pulled = pull_record(ti), True
        return self._last

    def push(
        self, ti: Any, run: WorkflowRun | Mapping[str, Any], watch: RunWatch, *, url: str | None, output: Any = None
    ) -> None:
        """Push the :func:`run_record` of ``ti``'s try; the try number comes from ``ti``."""
        record = run_record(
            run, watch, url=url, try_number=int(ti.try_number), previous=self.previous(ti), output=output
        )
        push_record(ti, record)
        self._last = record
