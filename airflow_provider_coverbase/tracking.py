"""Watching a workflow run, written once for the operator, the sensor and the trigger. No Airflow imports.

- :func:`progress_lines`: what changed between two readings of a run (status, new checkpoints,
  new step results), so every mode logs each change exactly once.
- :func:`outcome_error`: the error a finished run means (``None`` when it completed), with a message
  naming the run, its status, the last checkpoint or failed step, and the link.
- :func:`timeout_error`: the error for a deadline reached while the run is still going.
- :func:`derive_idempotency_key`: the exactly-once key of one task instance's run.
"""

from __future__ import annotations

import hashlib
import json

from airflow_provider_coverbase.exceptions import (
    WorkflowRunCancelled,
    WorkflowRunError,
    WorkflowRunFailed,
    WorkflowRunTimedOut,
)
from airflow_provider_coverbase.models import WorkflowRun, WorkflowRunStatus

__all__ = ["derive_idempotency_key", "describe_run", "outcome_error", "progress_lines", "timeout_error"]


def describe_run(run: WorkflowRun) -> str:
    """``run cbwr_... of workflow 'name'`` (the name only when the API returned one)."""
    name = f" of workflow '{run.workflow_name}'" if run.workflow_name else ""
    return f"run {run.workflow_run_id}{name}"


def _step_results(run: WorkflowRun) -> dict[str, tuple[str, str | None, str | None]]:
    results: dict[str, tuple[str, str | None, str | None]] = {}
    for index, step in enumerate(run.steps or ()):
        if step.status is not None:
            results[step.step_id or f"#{index}"] = (step.label, step.status, step.message)
    return results


def progress_lines(previous: WorkflowRun | None, current: WorkflowRun, url: str | None = None) -> list[str]:
    """Lines describing what is new in ``current`` since ``previous`` (``None``: the first reading)."""
    lines: list[str] = []
    where = f" ({url})" if url else ""
    status_line = None
    if previous is None or previous.status != current.status:
        spelled = current.status.value
        if current.api_status != spelled:
            spelled = f"{spelled} (API: {current.api_status})"
        status_line = f"Coverbase {describe_run(current)} status: {spelled}{where}"
    seen = previous.checkpoints if previous is not None else []
    checkpoints = current.checkpoints
    # Checkpoints only grow; if the list was rewritten, report from the first difference.
    start = 0
    while start < min(len(seen), len(checkpoints)) and seen[start] == checkpoints[start]:
        start += 1
    if current.checkpoints_reached is not None:
        for number, name in enumerate(checkpoints[start:], start=start + 1):
            lines.append(f"Checkpoint reached: {name} ({number} so far)")
    before = _step_results(previous) if previous is not None else {}
    for step_id, (label, status, message) in _step_results(current).items():
        if before.get(step_id) != (label, status, message):
            detail = f": {message}" if message else ""
            lines.append(f"Step {status}: {label}{detail}")
    if status_line is not None:
        # A run's end is told after the checkpoints that led to it; any other status first.
        lines = [*lines, status_line] if current.is_terminal else [status_line, *lines]
    return lines


def outcome_error(run: WorkflowRun, url: str | None = None) -> WorkflowRunError | None:
    """The error a terminal run means, or ``None`` for a completed (or still running) run."""
    if run.status not in (WorkflowRunStatus.FAILED, WorkflowRunStatus.CANCELLED):
        return None
    parts = [f"Coverbase {describe_run(run)} ended {run.api_status}"]
    failed = run.failed_step
    if failed is not None:
        parts.append(f"failed step '{failed.label}': {failed.message or 'no message'}")
    checkpoints = run.checkpoints
    parts.append(f"last checkpoint: {checkpoints[-1]}" if checkpoints else "no checkpoint reached")
    if url:
        parts.append(f"see {url}")
    cls = WorkflowRunFailed if run.status == WorkflowRunStatus.FAILED else WorkflowRunCancelled
    return cls("; ".join(parts), workflow_run_id=run.workflow_run_id, status=run.status.value)


def timeout_error(
    workflow_run_id: str, waited_seconds: float, last: WorkflowRun | None = None, url: str | None = None
) -> WorkflowRunTimedOut:
    """The error for a wait that hit its deadline; says the run is still going in Coverbase."""
    status = last.api_status if last is not None else "unknown"
    checkpoint = ""
    if last is not None and last.checkpoints:
        checkpoint = f", last checkpoint: {last.checkpoints[-1]}"
    where = f"; see {url}" if url else ""
    return WorkflowRunTimedOut(
        f"stopped waiting for Coverbase workflow run {workflow_run_id} after {waited_seconds:.0f} s; "
        f"the run is still going in Coverbase (status {status}{checkpoint}). Coverbase has no API to "
        f"cancel it. Raise `timeout` to wait longer{where}",
        workflow_run_id=workflow_run_id,
        status=status,
    )


def derive_idempotency_key(
    *,
    dag_id: str,
    task_id: str,
    run_id: str,
    map_index: int,
    chain: int,
    workflow: str,
    generation: int = 0,
) -> str:
    """The idempotency key of one logical run of one task instance.

    Stable across Airflow retries (the try number is not in it), unique across workflows (one key
    covers every workflow name in the current API), new after a clear (``chain`` is the first try
    of the current chain of tries), and new for each fresh run the same chain starts after a
    failed one (``generation``). Readable prefix, hashed identity: at most 200 ASCII characters.
    """
    identity = json.dumps([dag_id, task_id, run_id, map_index, chain, workflow, generation], ensure_ascii=True)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
    return f"airflow:{dag_id[:70]}:{task_id[:70]}:{digest}"
