"""Runs: the run store (runs per org, idempotency keys) and the rules that derive what a run shows.

A run's state is computed at read time from its age and its definition's timeline (status =
f(now - started, definition)); nothing runs per run. The views are pure functions of a run, a time
and a dialect. The store's methods take the emulator's shared lock.

No Airflow imports, no client imports.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from airflow_provider_coverbase.testing.catalog import CURRENT_OF, JSON, WELL_KNOWN_INPUT_KEYS, new_id
from airflow_provider_coverbase.testing.config import Dialect, OrgConfig, WorkflowDefinition


@dataclass(slots=True)
class Run:
    """A run: everything else about it is derived from ``started`` and the clock."""

    run_id: str
    org_id: str
    definition: WorkflowDefinition
    started: float
    input: JSON
    dispatched: bool
    events: tuple[tuple[float, str, JSON], ...] = ()
    event_cursor: int = 0

    def terminal_time(self) -> float | None:
        """When the run ends (emulated Unix time), or ``None`` when it never does."""
        d = self.definition
        if not self.dispatched or d.never_finishes:
            return None
        return self.started + d.timeline.terminal_offset


# ---------------------------------------------------------------------------------- the rules


def ok_checkpoints(d: WorkflowDefinition) -> int:
    """How many checkpoints a run of ``d`` passes (a failed run fails at its last one)."""
    n = len(d.checkpoints)
    return n - 1 if d.final_status == "failed" and n else n


def legacy_status(run: Run, now: float) -> str:
    """The run's status at ``now`` in the legacy vocabulary (the richer one)."""
    d = run.definition
    tl = d.timeline
    elapsed = now - run.started
    if not run.dispatched:
        return "running"
    if not d.never_finishes and elapsed >= tl.terminal_offset:
        return d.final_status
    if elapsed < tl.pending_until:
        return "pending"
    if tl.pause_window is not None and tl.pause_window[0] <= elapsed < tl.pause_window[1]:
        return "paused"
    return "running"


def status(run: Run, now: float, dialect: Dialect) -> str:
    legacy = legacy_status(run, now)
    return legacy if dialect == "legacy" else CURRENT_OF[legacy]


def normalize_input(raw: JSON, dialect: Dialect) -> JSON:
    """V3 echo rules (current dialect): drop nulls, stringify numbers under well-known keys."""
    if dialect == "legacy":
        return raw
    out: JSON = {}
    for key, value in raw.items():
        if value is None:
            continue
        if key in WELL_KNOWN_INPUT_KEYS and isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        out[key] = value
    return out


def run_view(run: Run, now: float, dialect: Dialect, *, summary: bool = False) -> JSON:
    """The GET-run body in ``dialect`` (``summary``: list item, without steps)."""
    d = run.definition
    legacy = legacy_status(run, now)
    terminal = legacy in ("completed", "failed", "cancelled")
    reached = min(d.reached_count(now - run.started), ok_checkpoints(d)) if run.dispatched else 0
    completed_at = int(run.started + d.timeline.terminal_offset) if terminal else None
    if dialect == "legacy":
        body: JSON = {
            "workflow_run_id": run.run_id,
            "workflow_definition_id": d.definition_id("legacy"),
            "workflow_name": d.name,
            "status": legacy,
            "started_at": int(run.started),
            "completed_at": completed_at,
        }
        names = [c.name for c in d.checkpoints[:reached]]
        if summary:
            body["step_count"] = len(names)
        else:
            body["checkpoints_reached"] = names
        body["output"] = dict(d.output or {}) if legacy == "completed" else None
        if legacy == "failed":
            # Not on the legacy page's field list; its workflow.failed webhook carries "error".
            body["error"] = d.failure_message
        return body
    steps = _steps(run, reached, legacy == "failed")
    body = {
        "workflow_run_id": run.run_id,
        "workflow_name": d.name,
        "workflow_definition_id": d.definition_id("current"),
        "status": CURRENT_OF[legacy],
        "started_at": int(run.started),
        "completed_at": completed_at,
    }
    if summary:
        body["step_count"] = len(steps)
    else:
        body["steps"] = steps
    return body


def _steps(run: Run, reached: int, failed: bool) -> list[JSON]:
    d = run.definition
    offsets = d.timeline.reach_offsets
    count = reached + (1 if failed and d.checkpoints else 0)
    steps: list[JSON] = []
    for i in range(count):
        cp = d.checkpoints[i]
        begin = offsets[i - 1] if i else d.timeline.pending_until
        is_failure = failed and i == len(d.checkpoints) - 1
        steps.append(
            {
                "step_id": f"cbwrs_{run.run_id[-24:]}{i:08x}",
                "component_id": d.component_id(cp.name),
                "component_name": cp.name,
                "action_type": cp.action_type,
                "status": "failed" if is_failure else "success",
                "message": d.failure_message if is_failure else None,
                "artifacts": [],
                "created_at": int(run.started + begin),
                "updated_at": int(run.started + offsets[i]),
            }
        )
    return steps


def failure_reason(run: Run, now: float) -> str | None:
    """Why a failed run failed (its definition's ``failure_message``) and where; None otherwise.

    For the emulator's run page, which the provider's run link opens.
    """
    if legacy_status(run, now) != "failed":
        return None
    d = run.definition
    ok = ok_checkpoints(d)
    where = f"after checkpoint {d.checkpoints[ok - 1].name}" if ok else "before reaching any checkpoint"
    step = f", at step {d.checkpoints[-1].name}" if d.checkpoints else ""
    return f"Failed {where}{step}: {d.failure_message}"


def post_view(run: Run, dialect: Dialect) -> JSON:
    """The 201 body of a run POST."""
    d = run.definition
    if dialect == "legacy":
        return {
            "workflow_run_id": run.run_id,
            "workflow_definition_id": d.definition_id("legacy"),
            "workflow_name": d.name,
            "status": "pending" if d.timeline.pending_until > 0 else "running",
            "started_at": int(run.started),
            "input": run.input,
        }
    return {
        "workflow_run_id": run.run_id,
        "workflow_name": d.name,
        "status": "started",
        "started_at": int(run.started),
        "input": run.input,
    }


@dataclass(frozen=True)
class RunFilter:
    """Which runs a list request asks for (``None`` or empty: any)."""

    workflow_name: str | None = None
    statuses: Sequence[str] = ()
    created_after: int | None = None
    created_before: int | None = None

    def matches(self, run: Run, now: float, dialect: Dialect) -> bool:
        started = int(run.started)
        return (
            (self.workflow_name is None or run.definition.name == self.workflow_name)
            and (self.created_after is None or started >= self.created_after)
            and (self.created_before is None or started <= self.created_before)
            and (not self.statuses or status(run, now, dialect) in self.statuses)
        )


# ---------------------------------------------------------------------------------- the store


class RunStore:
    """Every run, by ID and by org, and the idempotency keys of run POSTs."""

    def __init__(self, lock: threading.RLock, dialect: Dialect, idempotency_ttl: float) -> None:
        self.lock = lock
        self.dialect: Dialect = dialect
        self.idempotency_ttl = idempotency_ttl
        self.by_id: dict[str, Run] = {}
        self.by_org: dict[str, list[Run]] = {}
        self.idempotency: dict[tuple[str, str, str], tuple[float, int, JSON]] = {}

    def reset(self, org_ids: list[str]) -> None:
        with self.lock:
            self.by_id.clear()
            self.by_org = {org_id: [] for org_id in org_ids}
            self.idempotency.clear()

    def create(self, org_id: str, definition: WorkflowDefinition, run_input: JSON, now: float, dispatched: bool) -> Run:
        with self.lock:
            prefix = "cbwfr" if self.dialect == "legacy" else "cbwr"
            run = Run(new_id(prefix), org_id, definition, now, run_input, dispatched)
            self.by_id[run.run_id] = run
            self.by_org[org_id].append(run)
            return run

    def get(self, org_id: str | None, run_id: str) -> Run | None:
        """The run, or ``None`` if it does not exist or belongs to another org."""
        run = self.by_id.get(run_id)
        if run is None or (org_id is not None and run.org_id != org_id):
            return None
        return run

    def concurrency_retry_after(self, org: OrgConfig, now: float) -> int | None:
        """``retry_after`` when the org already has ``max_concurrent_runs`` active runs."""
        limit = org.max_concurrent_runs
        if limit is None:
            return None
        with self.lock:
            # A run whose dispatch failed never reached the engine: it holds no concurrency slot.
            ends = [r.terminal_time() for r in self.by_org[org.org_id] if r.dispatched]
            active = [end for end in ends if end is None or end > now]
            if len(active) < limit:
                return None
            finishing = [end for end in active if end is not None]
            return max(1, math.ceil(min(finishing) - now)) if finishing else 60

    def idempotent_get(self, org_id: str, template: str, key: str, now: float) -> tuple[int, JSON] | None:
        """The stored answer to an earlier POST with this key, unless it expired."""
        with self.lock:
            hit = self.idempotency.get((org_id, template, key))
            if hit is None:
                return None
            expires, status_code, body = hit
            if now >= expires:
                del self.idempotency[(org_id, template, key)]
                return None
            return status_code, body

    def idempotent_put(self, org_id: str, template: str, key: str, now: float, status_code: int, body: JSON) -> None:
        with self.lock:
            self.idempotency[(org_id, template, key)] = (now + self.idempotency_ttl, status_code, body)

    def list(self, org_id: str, now: float, which: RunFilter, *, limit: int, offset: int) -> JSON:
        """A page of the org's runs that ``which`` matches, newest first, with their total."""
        with self.lock:
            matches = [run for run in reversed(self.by_org[org_id]) if which.matches(run, now, self.dialect)]
            page = [run_view(r, now, self.dialect, summary=True) for r in matches[offset : offset + limit]]
            return {"data": page, "total": len(matches), "limit": limit, "offset": offset}
