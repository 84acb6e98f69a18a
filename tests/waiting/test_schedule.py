"""The adaptive polling schedule: one pure function of the run's age, shared by every waiting mode."""

from __future__ import annotations

import pytest

from airflow_provider_coverbase.models import WorkflowRun
from airflow_provider_coverbase.waiting.schedule import (
    DEFAULT_MAX_POLL_INTERVAL,
    POLL_AGE_FRACTION,
    WAKE_TICK,
    coalesced_delay,
    poll_interval_for,
    resolve_max_poll_interval,
    run_age,
)

DAY = 86400.0


def polls_over(duration: float, poll_interval: float, max_poll_interval: float) -> tuple[int, float]:
    """GETs a run of ``duration`` seconds costs (simulated clock), and the worst detection delay seen."""
    now = 0.0
    polls = 0
    worst_excess = 0.0
    while now < duration:
        pause = poll_interval_for(now, poll_interval, max_poll_interval)
        # A run ending right after this poll is noticed `pause` later; the bound for that end time:
        bound = max(poll_interval, min(POLL_AGE_FRACTION * now, max_poll_interval))
        worst_excess = max(worst_excess, pause - bound)
        now += pause
        polls += 1
    return polls, worst_excess


def test_grows_from_poll_interval_to_max_with_the_age() -> None:
    assert poll_interval_for(0, 30, 1800) == 30
    assert poll_interval_for(600, 30, 1800) == 30  # 5% of 10 min
    assert poll_interval_for(3600, 30, 1800) == pytest.approx(180)  # 5% of an hour
    assert poll_interval_for(36000, 30, 1800) == 1800
    assert poll_interval_for(14 * DAY, 30, 1800) == 1800
    # Nonsense ages (a server clock ahead of ours, NaN) read as a brand-new run.
    assert poll_interval_for(-50, 30, 1800) == 30
    assert poll_interval_for(float("nan"), 30, 1800) == 30


def test_equal_bounds_is_fixed_polling() -> None:
    assert {poll_interval_for(age, 30, 30) for age in (0, 100, 1e5, 1e7)} == {30}


def test_a_14_day_run_costs_at_most_2_percent_of_fixed_30s_polling() -> None:
    fixed, _ = polls_over(14 * DAY, 30, 30)
    adaptive, excess = polls_over(14 * DAY, 30, DEFAULT_MAX_POLL_INTERVAL)
    assert fixed == 40_320
    assert adaptive <= 806  # 2% of 40,320
    assert adaptive == 756  # today's schedule, so a change is noticed
    assert excess <= 1e-9  # every wait within max(poll_interval, min(5% of age, max_poll_interval))


def test_resolve_max_poll_interval() -> None:
    assert resolve_max_poll_interval(30, None) == DEFAULT_MAX_POLL_INTERVAL
    assert resolve_max_poll_interval(7200, None) == 7200  # never below poll_interval
    assert resolve_max_poll_interval(30, 30) == 30
    with pytest.raises(ValueError, match="must be at least poll_interval"):
        resolve_max_poll_interval(60, 10)


def test_run_age_follows_started_at_then_the_fallback() -> None:
    run = WorkflowRun.model_validate({"workflow_run_id": "r", "status": "running", "started_at": 1_000_000})
    assert run_age(run, fallback_start=2_000_000, now=1_003_600) == 3600
    no_start = WorkflowRun.model_validate({"workflow_run_id": "r", "status": "pending"})
    assert run_age(no_start, fallback_start=1_000_000, now=1_000_060) == 60
    assert run_age(None, fallback_start=1_000_000, now=999_000) == 0  # never negative


@pytest.mark.parametrize("now", [0.0, 0.1, 1234.567, 98765.4321])
@pytest.mark.parametrize("pause", [5.0, 7.3, 30.0, 1800.0])
def test_pauses_end_on_the_shared_grid_and_grow_less_than_a_tick(now: float, pause: float) -> None:
    delay = coalesced_delay(now, pause)

    ticks = (now + delay) / WAKE_TICK
    assert abs(ticks - round(ticks)) < 1e-6  # on the grid: polls due in one tick wake the loop together
    assert pause <= delay < pause + WAKE_TICK + 1e-9
    assert delay <= pause * 1.05


def test_triggers_due_in_the_same_tick_share_one_wake_up() -> None:
    # Three triggers whose own pauses end 0.01 s, 0.1 s and 0.2 s apart, all inside one tick.
    ends = {round(now + coalesced_delay(now, 30.0), 9) for now in (1000.01, 1000.1, 1000.2)}
    assert ends == {1030.25}


@pytest.mark.parametrize("pause", [0.0, 0.01, 1.0, 4.99])
def test_short_pauses_are_left_alone(pause: float) -> None:
    assert coalesced_delay(123.456, pause) == pause
