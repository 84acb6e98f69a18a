"""The error policy of every wait: fatal errors end it, transient ones back off, a streak has a limit."""

from __future__ import annotations

import pytest

from airflow_provider_coverbase.exceptions import (
    AuthenticationError,
    CoverbaseConfigError,
    CoverbaseConnectionError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from airflow_provider_coverbase.waiting.errors import (
    DEFAULT_ERROR_POLICY,
    MAX_CONSECUTIVE_ERRORS,
    MAX_ERROR_BACKOFF,
    WATCH_ERROR_POLICY,
    ErrorPolicy,
    ErrorStreak,
    is_fatal,
)


def server_error(retry_after: float | None = None) -> ServerError:
    return ServerError("boom", status_code=503, method="GET", path="/v1/workflows/runs/x", retry_after=retry_after)


def rate_limited(retry_after: float | None) -> RateLimitError:
    return RateLimitError("slow down", status_code=429, method="GET", path="/x", retry_after=retry_after)


def test_what_retrying_can_fix() -> None:
    assert not is_fatal(server_error())
    assert not is_fatal(CoverbaseConnectionError("refused", method="GET", path="/x"))
    assert not is_fatal(rate_limited(None))
    assert is_fatal(NotFoundError("gone", status_code=404, method="GET", path="/x"))
    assert is_fatal(AuthenticationError("bad key", status_code=401, method="GET", path="/x"))
    assert is_fatal(CoverbaseConfigError("no key"))
    assert is_fatal(RuntimeError("not ours at all"))


def test_backoff_doubles_from_the_poll_interval_up_to_the_cap() -> None:
    streak = ErrorStreak(base=30.0)
    pauses = [streak.failed(server_error()).pause for _ in range(5)]
    assert pauses == [30.0, 60.0, 120.0, 240.0, MAX_ERROR_BACKOFF]
    # A tiny poll interval still backs off (no hot loop); a huge one is capped.
    assert ErrorStreak(base=0.001).failed(server_error()).pause == 0.001
    assert ErrorStreak(base=3600.0).failed(server_error()).pause == MAX_ERROR_BACKOFF


def test_retry_after_wins_when_it_asks_for_longer() -> None:
    assert ErrorStreak(base=5.0).failed(rate_limited(42.0)).pause == 42.0
    assert ErrorStreak(base=5.0).failed(rate_limited(1.0)).pause == 5.0
    assert ErrorStreak(base=5.0).failed(server_error(retry_after=90.0)).pause == 90.0


def test_a_streak_gives_up_at_the_limit_and_a_success_ends_it() -> None:
    streak = ErrorStreak(base=1.0)
    verdicts = [streak.failed(server_error()) for _ in range(MAX_CONSECUTIVE_ERRORS)]
    assert [v.give_up for v in verdicts] == [False] * (MAX_CONSECUTIVE_ERRORS - 1) + [True]
    assert verdicts[-1].failures == MAX_CONSECUTIVE_ERRORS
    assert not any(v.fatal for v in verdicts)
    streak = ErrorStreak(base=1.0)
    for _ in range(MAX_CONSECUTIVE_ERRORS - 1):
        streak.failed(server_error())
    streak.succeeded()
    again = streak.failed(server_error())
    assert (again.give_up, again.failures, again.pause) == (False, 1, 1.0)


def test_a_fatal_error_gives_up_at_once_without_counting() -> None:
    streak = ErrorStreak(base=1.0)
    streak.failed(server_error())
    verdict = streak.failed(NotFoundError("gone", status_code=404, method="GET", path="/x"))
    assert verdict.give_up and verdict.fatal
    assert verdict.failures == 2
    assert streak.failures == 1


def test_the_watch_policy_never_gives_up_on_transient_errors() -> None:
    streak = ErrorStreak(base=60.0, policy=WATCH_ERROR_POLICY)
    verdicts = [streak.failed(server_error()) for _ in range(100)]
    assert not any(v.give_up for v in verdicts)
    assert verdicts[-1].pause == MAX_ERROR_BACKOFF
    assert streak.failed(RuntimeError("no connection")).give_up


def test_policy_limits_are_checked() -> None:
    assert DEFAULT_ERROR_POLICY.give_up_after == MAX_CONSECUTIVE_ERRORS
    assert ErrorPolicy(give_up_after=3, max_backoff=10).backoff(4, 2.0) == 10
    with pytest.raises(ValueError, match="give_up_after must be at least 1"):
        ErrorPolicy(give_up_after=0)
    with pytest.raises(ValueError, match="max_backoff must be positive"):
        ErrorPolicy(max_backoff=0)
