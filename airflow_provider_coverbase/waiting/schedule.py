"""When to poll a workflow run next: one pure function of the run's age for every waiting mode.

The operator (in a worker), the sensor (poke and reschedule) and the trigger (in the triggerer) all
pause :func:`next_pause` seconds between two reads of a run, so a run is read at the same pace
wherever the task waits, and a restarted trigger picks up the slow pace of an old run.
"""

from __future__ import annotations

import math

from airflow_provider_coverbase.models import WorkflowRun

__all__ = [
    "DEFAULT_MAX_POLL_INTERVAL",
    "DEFAULT_POLL_INTERVAL",
    "POLL_AGE_FRACTION",
    "WAKE_TICK",
    "coalesced_delay",
    "next_pause",
    "poll_interval_for",
    "positive_seconds",
    "resolve_max_poll_interval",
    "run_age",
]

#: Shortest pause between two polls (of a young run) by default: the operator's, the trigger's and the UI record's.
DEFAULT_POLL_INTERVAL = 30.0
#: Longest pause between two polls by default (30 min). With ``poll_interval=30`` a 14-day run
#: costs about 760 GETs instead of 40,320 at a fixed 30 s.
DEFAULT_MAX_POLL_INTERVAL = 1800.0
#: Polls fall due on a grid of this many seconds of the event loop's clock, so that the polls of many
#: triggers due within the same quarter second wake the loop once (see :func:`coalesced_delay`).
WAKE_TICK = 0.25
#: The pause between polls grows to this fraction of the run's age: a run that has been going for
#: ten hours is read every 30 min, one that started ten minutes ago every 30 s.
POLL_AGE_FRACTION = 0.05


def positive_seconds(value: float, name: str) -> float:
    """``value`` as float seconds, or ``ValueError`` naming ``name`` when it is not a positive number."""
    seconds = float(value)
    if not seconds > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return seconds


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


def run_age(run: WorkflowRun | None, fallback_start: float, now: float) -> float:
    """Seconds since the run started: its ``started_at`` when the API gave one, else ``fallback_start``.

    All Unix seconds. Never negative (a server clock ahead of ours reads as a brand-new run).
    """
    start = fallback_start
    if run is not None and run.started_at is not None:
        start = run.started_at.timestamp()
    return max(0.0, now - start)


def next_pause(
    run: WorkflowRun | None, *, fallback_start: float, now: float, poll_interval: float, max_poll_interval: float
) -> float:
    """Seconds until the next read of ``run`` (the last reading, ``None`` before the first one).

    :func:`poll_interval_for` of the run's age (:func:`run_age`); ``fallback_start`` stands in for
    the run's start when the API gave none.
    """
    return poll_interval_for(run_age(run, fallback_start, now), poll_interval, max_poll_interval)


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
