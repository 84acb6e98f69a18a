"""Watching a workflow run, written once for the operator, the sensor and the trigger. No Airflow imports.

- :func:`progress_lines`: what changed between two readings of a run (status, new checkpoints,
  new step results), so every mode logs each change exactly once.
- :func:`outcome_error`: the error a finished run means (``None`` when it completed), with a message
  naming the run, its status, the last checkpoint or failed step, and the link.
- :func:`timeout_error`: the error for a deadline reached while the run is still going.

When to poll is :mod:`airflow_provider_coverbase.waiting.schedule`, what a failed poll means
:mod:`~airflow_provider_coverbase.waiting.errors`, and which run a try attaches to
:mod:`~airflow_provider_coverbase.waiting.reattach`.

Progress lines put the run id and the URL first; the failure and timeout messages put the reason
first (what the reader needs, and what Airflow's no-wrap log view would otherwise cut off at
1280 px) and the run id and URL in brackets after it. Every URL has whitespace on both sides:
Airflow's log view turns ``http...`` after whitespace into a link that runs to the next whitespace
(so ``(url)`` or ``url.`` would link a wrong URL).
"""

from __future__ import annotations

from airflow_provider_coverbase.exceptions import (
    WorkflowRunCancelled,
    WorkflowRunError,
    WorkflowRunFailed,
    WorkflowRunTimedOut,
)
from airflow_provider_coverbase.models import UNSUCCESSFUL_STATUSES, WorkflowRun, WorkflowRunStatus

__all__ = [
    "describe_run",
    "linked",
    "outcome_error",
    "progress_lines",
    "timeout_error",
]


def describe_run(run: WorkflowRun) -> str:
    """``run cbwr_... of workflow 'name'`` (the name only when the API returned one)."""
    name = f" of workflow '{run.workflow_name}'" if run.workflow_name else ""
    return f"run {run.workflow_run_id}{name}"


def linked(url: str | None, before: str = ": ") -> str:
    """``before`` + the URL + one space, or nothing without a URL.

    What follows must start right after that space: nothing may touch the URL (see the module
    docstring). At the very end of a line, strip the trailing space.
    """
    return f"{before}{url} " if url else " "


def _step_results(run: WorkflowRun) -> dict[str, tuple[str, str | None, str | None]]:
    results: dict[str, tuple[str, str | None, str | None]] = {}
    for index, step in enumerate(run.steps or ()):
        if step.status is not None:
            results[step.step_id or f"#{index}"] = (step.label, step.status, step.message)
    return results


def progress_lines(previous: WorkflowRun | None, current: WorkflowRun, url: str | None = None) -> list[str]:
    """Lines describing what is new in ``current`` since ``previous`` (``None``: the first reading)."""
    lines: list[str] = []
    status_line = None
    if previous is None or previous.status != current.status:
        notes = [f"API: {current.api_status}"] if current.api_status != current.status.value else []
        if current.workflow_name:
            notes.append(f"workflow '{current.workflow_name}'")
        after = f"({', '.join(notes)})" if notes else ""
        status_line = f"Coverbase run {current.workflow_run_id}: {current.status.value}{linked(url, ', see ')}{after}"
        status_line = status_line.rstrip()
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
    if status_line is not None and (error := outcome_error(current, url)) is not None:
        status_line = str(error)  # a failed or cancelled run's line starts with the reason
    if status_line is not None:
        # A run's end is told after the checkpoints that led to it; any other status first.
        lines = [*lines, status_line] if current.is_terminal else [status_line, *lines]
    return lines


def outcome_error(run: WorkflowRun, url: str | None = None) -> WorkflowRunError | None:
    """The error a terminal run means, or ``None`` for a completed (or still running) run.

    The reason first, so it is readable at 1280 px in the log view's no-wrap mode and at the top
    of the task's exception: ``Coverbase run failed after checkpoint 'vendors_selected', at step
    'send': SMTP down (run cbwfr_..., workflow 'sweep', https://... )``. Where it stopped (the last
    checkpoint reached, which did not fail itself), the failed step and the reason when the API gives
    one (:attr:`WorkflowRun.failure_reason`); then, in brackets, the run id, the workflow and the
    link, with a space before the closing bracket so Airflow's log view links exactly the URL.
    """
    if run.status not in UNSUCCESSFUL_STATUSES:
        return None
    failed = run.status == WorkflowRunStatus.FAILED
    checkpoints = run.checkpoints
    where = f"after checkpoint '{checkpoints[-1]}'" if checkpoints else "before reaching any checkpoint"
    step = run.failed_step
    at_step = f", at step '{step.label}'" if step is not None else ""
    reason = run.failure_reason
    why = f": {reason.rstrip('.')}" if reason else ("; Coverbase gave no reason" if failed else "")
    facts = [f"run {run.workflow_run_id}"]
    if run.workflow_name:
        facts.append(f"workflow '{run.workflow_name}'")
    if url:
        facts.append(f"{url} ")
    message = f"Coverbase run {run.api_status} {where}{at_step}{why} ({', '.join(facts)})"
    cls = WorkflowRunFailed if failed else WorkflowRunCancelled
    return cls(message, workflow_run_id=run.workflow_run_id, status=run.status.value)


def timeout_error(
    workflow_run_id: str, waited_seconds: float, last: WorkflowRun | None = None, url: str | None = None
) -> WorkflowRunTimedOut:
    """The error for a wait that hit its deadline; says the run is still going in Coverbase."""
    status = last.api_status if last is not None else "unknown"
    checkpoint = ""
    if last is not None and last.checkpoints:
        checkpoint = f", last checkpoint '{last.checkpoints[-1]}'"
    where = f"run {workflow_run_id}, {url} " if url else f"run {workflow_run_id}"
    return WorkflowRunTimedOut(
        f"Stopped waiting for the Coverbase run after {waited_seconds:.0f} s; it is still going in Coverbase "
        f"(status {status}{checkpoint}), which has no API to cancel it. Raise `timeout` to wait longer ({where})",
        workflow_run_id=workflow_run_id,
        status=status,
    )
