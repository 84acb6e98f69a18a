"""Watching a workflow run, written once for the operator, the sensor and the trigger. No Airflow imports.

- :func:`progress_lines`: what changed between two readings of a run (status, new checkpoints,
  new step results), so every mode logs each change exactly once.
- :func:`outcome_error`: the error a finished run means (``None`` when it completed), with a message
  naming the run, its status, the last checkpoint or failed step, and the link.
- :func:`timeout_error`: the error for a deadline reached while the run is still going.
- :func:`derive_idempotency_key`: the exactly-once key of one task instance's run.
- :func:`poll_interval_for`, :func:`run_age`, :func:`resolve_max_poll_interval`: the adaptive
  polling schedule, one pure function of the run's age for every waiting mode.

Progress lines put the run id and the URL first; the failure and timeout messages put the reason
first (what the reader needs, and what Airflow's no-wrap log view would otherwise cut off at
1280 px) and the run id and URL in brackets after it. Every URL has whitespace on both sides:
Airflow's log view turns ``http...`` after whitespace into a link that runs to the next whitespace
(so ``(url)`` or ``url.`` would link a wrong URL).
"""

from __future__ import annotations

import hashlib
import json
import math

from airflow_provider_coverbase.exceptions import (
    WorkflowRunCancelled,
    WorkflowRunError,
    WorkflowRunFailed,
    WorkflowRunTimedOut,
)
from airflow_provider_coverbase.models import WorkflowRun, WorkflowRunStatus

__all__ = [
    "DEFAULT_MAX_POLL_INTERVAL",
    "POLL_AGE_FRACTION",
    "WAKE_TICK",
    "coalesced_delay",
    "derive_idempotency_key",
    "describe_run",
    "linked",
    "outcome_error",
    "poll_interval_for",
    "progress_lines",
    "resolve_max_poll_interval",
    "run_age",
    "timeout_error",
]

#: Longest pause between two polls by default (30 min). With ``poll_interval=30`` a 14-day run
#: costs about 760 GETs instead of 40,320 at a fixed 30 s.
DEFAULT_MAX_POLL_INTERVAL = 1800.0
#: Polls fall due on a grid of this many seconds of the event loop's clock, so that the polls of many
#: triggers due within the same quarter second wake the loop once (see :func:`coalesced_delay`).
WAKE_TICK = 0.25
#: The pause between polls grows to this fraction of the run's age: a run that has been going for
#: ten hours is read every 30 min, one that started ten minutes ago every 30 s.
POLL_AGE_FRACTION = 0.05


def poll_interval_for(age: float, poll_interval: float, max_poll_interval: float) -> float:
    """Seconds to wait before reading a run again that started ``age`` seconds ago.

    ``5%`` of the run's age, but at least ``poll_interval`` and at most ``max_poll_interval``. So the
    delay between a run ending and the task noticing is at most
    ``max(poll_interval, min(5% of the run's age, max_poll_interval))``, and
    ``max_poll_interval == poll_interval`` is plain fixed polling. A pure function of the age, so a
    restarted trigger picks up the slow pace of an old run instead of polling fast again.
    """
    age = age if math.isfinite(age) and age > 0 else 0.0
    return max(poll_interval, min(max_poll_interval, POLL_AGE_FRACTION * age))


def coalesced_delay(now: float, pause: float, tick: float = WAKE_TICK) -> float:
    """``pause`` seconds from ``now``, stretched to end on the next multiple of ``tick``.

    ``now`` is the event loop's clock (``loop.time()``). Each wake-up of an idle event loop costs
    far more CPU than the poll it makes (measured here: about 0.17 ms per wake-up, against about
    0.05 ms for the poll), so a thousand triggers that each wake on their own spend most of their CPU
    waking up. On a shared grid, every poll due in the same ``tick`` wakes the loop once. A pause is
    stretched by less than ``tick``, and only pauses of at least ``20 * tick`` (5 s) are, so no pause
    grows by more than 5 %; shorter ones are returned unchanged.
    """
    if not pause >= 20 * tick:
        return pause
    return math.ceil((now + pause) / tick) * tick - now


def resolve_max_poll_interval(poll_interval: float, max_poll_interval: float | None) -> float:
    """The longest poll interval to use: the default (never below ``poll_interval``) or the given one.

    Raises ``ValueError`` when ``max_poll_interval`` is below ``poll_interval``.
    """
    if max_poll_interval is None:
        return max(DEFAULT_MAX_POLL_INTERVAL, poll_interval)
    value = float(max_poll_interval)
    if not (math.isfinite(value) and value >= poll_interval):
        raise ValueError(
            f"max_poll_interval ({max_poll_interval!r}) must be at least poll_interval ({poll_interval:g}); "
            "set them equal for fixed polling"
        )
    return value


def run_age(run: WorkflowRun | None, fallback_start: float, now: float) -> float:
    """Seconds since the run started: its ``started_at`` when the API gave one, else ``fallback_start``.

    All Unix seconds. Never negative (a server clock ahead of ours reads as a brand-new run).
    """
    start = fallback_start
    if run is not None and run.started_at is not None:
        start = run.started_at.timestamp()
    return max(0.0, now - start)


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


def _workflow(run: WorkflowRun) -> str:
    return f"workflow '{run.workflow_name}'" if run.workflow_name else ""


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
    if run.status not in (WorkflowRunStatus.FAILED, WorkflowRunStatus.CANCELLED):
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
