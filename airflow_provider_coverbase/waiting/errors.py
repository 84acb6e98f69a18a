"""What a failed poll means: give up, or back off and poll again. One policy for every waiting mode.

A poll that fails after the client's own retries (see :class:`~airflow_provider_coverbase.client.RetryPolicy`)
reaches the waiting code. An error retrying cannot fix (a bad key, an unknown run, anything that is
not a retryable :class:`~airflow_provider_coverbase.exceptions.CoverbaseError`) ends the wait at
once. A transient one (connection, timeout, 429, 5xx) starts or extends a streak of failures: the
next poll comes after a backoff that doubles from the poll interval per failure, up to
:data:`MAX_ERROR_BACKOFF` and never sooner than a 429's ``Retry-After``; after
:data:`MAX_CONSECUTIVE_ERRORS` failures in a row the wait gives up (an asset watcher never does: it
watches for as long as its DAG exists). A successful poll ends the streak.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_coverbase.exceptions import CoverbaseAPIError, CoverbaseError

__all__ = [
    "DEFAULT_ERROR_POLICY",
    "MAX_CONSECUTIVE_ERRORS",
    "MAX_ERROR_BACKOFF",
    "WATCH_ERROR_POLICY",
    "ErrorPolicy",
    "ErrorStreak",
    "Verdict",
    "is_fatal",
]

#: Consecutive transient polling failures (after the client's own retries) before a wait gives up.
MAX_CONSECUTIVE_ERRORS = 10
#: Longest pause between polls after transient errors (seconds).
MAX_ERROR_BACKOFF = 300.0


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """How many transient failures in a row a wait bears, and how long it backs off after each."""

    #: Failures in a row after which the wait gives up; ``None``: never (asset watchers).
    give_up_after: int | None = MAX_CONSECUTIVE_ERRORS
    max_backoff: float = MAX_ERROR_BACKOFF

    def __post_init__(self) -> None:
        if self.give_up_after is not None and self.give_up_after < 1:
            raise ValueError(f"give_up_after must be at least 1 or None, got {self.give_up_after!r}")
        if not self.max_backoff > 0:
            raise ValueError(f"max_backoff must be positive, got {self.max_backoff!r}")

    def backoff(self, failures: int, base: float, retry_after: float | None = None) -> float:
        """Seconds before the next poll after ``failures`` failures in a row (``failures >= 1``).

        ``base`` doubled per failure, at most :attr:`max_backoff`: no hot loop however short the
        poll interval is, and no long silence however long it is. A server's ``Retry-After`` wins
        when it asks for longer.
        """
        pause = min(self.max_backoff, base * 2.0 ** (failures - 1))
        if retry_after is not None:
            pause = max(pause, retry_after)
        return pause


#: The run operator's, sensor's and trigger's policy.
DEFAULT_ERROR_POLICY = ErrorPolicy()
#: The asset watcher's policy: it backs off the same way but never gives up on transient errors.
WATCH_ERROR_POLICY = ErrorPolicy(give_up_after=None)


def is_fatal(error: BaseException) -> bool:
    """Whether polling again cannot help: anything but a retryable :class:`CoverbaseError`."""
    return not (isinstance(error, CoverbaseError) and error.retryable)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do after one failed poll."""

    #: Stop waiting: the error is fatal, or the streak reached the policy's limit.
    give_up: bool
    #: Retrying cannot fix the error (see :func:`is_fatal`).
    fatal: bool
    #: Failures in a row, this one included.
    failures: int
    #: Seconds until the next poll (meaningful when not giving up).
    pause: float


class ErrorStreak:
    """The failures in a row of one wait, and what each new one means under a policy.

    :param base: The poll interval the backoff starts from.
    """

    __slots__ = ("base", "failures", "policy")

    def __init__(self, base: float, policy: ErrorPolicy = DEFAULT_ERROR_POLICY) -> None:
        self.base = base
        self.policy = policy
        self.failures = 0

    def failed(self, error: BaseException) -> Verdict:
        """Count a failed poll and decide: give up, or poll again after the returned pause."""
        if is_fatal(error):
            return Verdict(give_up=True, fatal=True, failures=self.failures + 1, pause=0.0)
        self.failures += 1
        limit = self.policy.give_up_after
        retry_after = error.retry_after if isinstance(error, CoverbaseAPIError) else None
        return Verdict(
            give_up=limit is not None and self.failures >= limit,
            fatal=False,
            failures=self.failures,
            pause=self.policy.backoff(self.failures, self.base, retry_after),
        )

    def succeeded(self) -> None:
        """A poll went through: the streak is over."""
        self.failures = 0
