"""Which finished workflow runs are new to a watcher: the pull path's bookkeeping, free of I/O.

The pull path (:class:`~airflow_provider_coverbase.triggers.events.CoverbaseWorkflowRunEventTrigger`)
lists a workflow's finished runs every poll and must emit each run that finished *after the watch
began* exactly once, also across triggerer restarts. This module decides which runs of a listing
are new, and what the state that remembers the answer looks like. No Airflow imports, no network:
the trigger feeds it listings and stores the state where it can.

**The state.** ``watermark`` is the highest ``completed_at`` (Unix seconds) of any run handled so
far; ``handled`` maps the IDs of the runs handled near the watermark to their ``completed_at``.
A run is new when its status is one the watcher emits, it is not in ``handled``, and it finished
no earlier than ``watermark - GRACE_SECONDS``. The grace window covers runs that become visible in
the listing a little after a later run (``completed_at`` has one-second resolution, and a run's
completion may commit after another's); ``handled`` keeps exactly the runs inside that window, so
the state stays small however long the watch lasts.

**The baseline.** A watch with no state yet (its first start, or every start when the state
cannot be stored) takes the runs already finished at its first poll as handled without emitting
them: only runs that finish after the watch began are events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow_provider_coverbase.asset_events import asset_event_extra
from airflow_provider_coverbase.models import TERMINAL_STATUSES, WorkflowRun, WorkflowRunStatus

__all__ = [
    "API_STATUS",
    "EVENT_TYPE",
    "GRACE_SECONDS",
    "WatchState",
    "event_payload",
    "normalise_statuses",
    "select_new_runs",
]

#: How far behind the watermark a newly visible run is still accepted (seconds).
GRACE_SECONDS = 600
#: How the current API spells each terminal status in ``?status=``.
API_STATUS: dict[WorkflowRunStatus, str] = {
    WorkflowRunStatus.COMPLETED: "completed",
    WorkflowRunStatus.FAILED: "failed",
    WorkflowRunStatus.CANCELLED: "canceled",
}
#: The webhook event a poll stands in for (the current API's names). A cancel has no event of its
#: own there: it arrives as ``WorkflowRun.Updated`` with the status in ``field_diffs``.
EVENT_TYPE: dict[WorkflowRunStatus, str] = {
    WorkflowRunStatus.COMPLETED: "WorkflowRun.Completed",
    WorkflowRunStatus.FAILED: "WorkflowRun.Failed",
    WorkflowRunStatus.CANCELLED: "WorkflowRun.Updated",
}


def normalise_statuses(statuses: str | Iterable[str]) -> list[str]:
    """Terminal statuses as sorted, de-duplicated provider names (``canceled`` reads as ``cancelled``).

    Raises ``ValueError`` naming the allowed values for anything that is not a terminal status.
    """
    raw = [statuses] if isinstance(statuses, str) else list(statuses)
    if not raw:
        raise ValueError("statuses must name at least one of: completed, failed, cancelled")
    out: set[str] = set()
    for value in raw:
        status = WorkflowRunStatus(str(value))
        if status not in TERMINAL_STATUSES:
            raise ValueError(
                f"statuses: {value!r} is not a terminal status; use completed, failed or cancelled (or canceled)"
            )
        out.add(status.value)
    return sorted(out)


def _unix(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def finished_at(run: WorkflowRun) -> int:
    """When the run finished (Unix seconds): ``completed_at``, else ``started_at``, else 0."""
    return _unix(run.completed_at) or _unix(run.started_at) or 0


@dataclass
class WatchState:
    """What a watcher has handled so far (see the module docstring). JSON round-trips via dicts."""

    watermark: int | None = None
    handled: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "watermark": self.watermark, "handled": dict(self.handled)}

    @classmethod
    def from_json(cls, value: Any) -> WatchState | None:
        """The state stored by :meth:`to_json`, or ``None`` when ``value`` is missing or unreadable."""
        if not isinstance(value, Mapping) or value.get("version") != 1:
            return None
        watermark = value.get("watermark")
        handled = value.get("handled")
        if not (watermark is None or isinstance(watermark, int)) or not isinstance(handled, Mapping):
            return None
        if not all(isinstance(k, str) and isinstance(v, int) for k, v in handled.items()):
            return None
        return cls(watermark, dict(handled))

    def is_new(self, run: WorkflowRun) -> bool:
        if run.workflow_run_id in self.handled:
            return False
        return self.watermark is None or finished_at(run) >= self.watermark - GRACE_SECONDS

    def handle(self, runs: Iterable[WorkflowRun]) -> WatchState:
        """A new state with ``runs`` handled, trimmed to the grace window below the watermark."""
        handled = dict(self.handled)
        watermark = self.watermark
        for run in runs:
            at = finished_at(run)
            handled[run.workflow_run_id] = at
            watermark = at if watermark is None else max(watermark, at)
        if watermark is not None:
            floor = watermark - GRACE_SECONDS
            handled = {k: v for k, v in handled.items() if v >= floor}
        return WatchState(watermark, handled)


def _matching(runs: Iterable[WorkflowRun], statuses: Iterable[str], workflow_name: str | None) -> list[WorkflowRun]:
    wanted = {WorkflowRunStatus(s) for s in statuses}
    seen: dict[str, WorkflowRun] = {}
    for run in runs:
        if run.status not in wanted or not run.is_terminal:
            continue
        if workflow_name is not None and run.workflow_name != workflow_name:
            continue
        seen.setdefault(run.workflow_run_id, run)
    return list(seen.values())


def select_new_runs(
    state: WatchState | None,
    runs: Iterable[WorkflowRun],
    statuses: Iterable[str],
    workflow_name: str | None = None,
) -> tuple[list[WorkflowRun], WatchState]:
    """The runs of one listing to emit, oldest finish first, and the state once they are emitted.

    ``state=None`` means the watch has no state yet: the listing is its baseline, so nothing is
    emitted and every matching run becomes handled. ``workflow_name`` filters a listing that holds
    several workflows (a poll shared by several watchers of one connection).
    """
    matching = _matching(runs, statuses, workflow_name)
    if state is None:
        return [], WatchState().handle(matching)
    new = sorted((r for r in matching if state.is_new(r)), key=lambda r: (finished_at(r), r.workflow_run_id))
    return new, state.handle(new) if new else state


def event_payload(run: WorkflowRun) -> dict[str, Any]:
    """The event for one finished run: the keys of the webhook receiver's asset-event extra.

    ``event_id`` is synthesised and stable (``poll:<run id>:<status>``), so the same run always
    yields the same ID; ``checkpoint`` is ``None`` (a poll sees no checkpoints); ``occurred_at`` is
    the run's ``completed_at``, written as ISO-8601 like the receiver's; ``output`` is the run's
    output, which the current API never returns (``None``). Built by
    :func:`~airflow_provider_coverbase.asset_events.asset_event_extra`, as the receiver's extra is.
    """
    status = run.status
    return asset_event_extra(
        event_id=f"poll:{run.workflow_run_id}:{status.value}",
        event_type=EVENT_TYPE[status],
        workflow_run_id=run.workflow_run_id,
        workflow_name=run.workflow_name,
        status=status.value,
        occurred_at=datetime.fromtimestamp(finished_at(run), UTC),
        output=run.output,
    )
