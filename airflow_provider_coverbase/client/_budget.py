"""One request budget for every user of a connection: a token bucket with a shared pause. No I/O.

The budget only says *how long to wait*; the clients do the waiting (``time.sleep`` or
``asyncio.sleep``), so the same object paces the sync and the async client and tests drive it with
a fake clock. No Airflow imports.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from airflow_provider_coverbase.exceptions import CoverbaseConfigError

__all__ = ["RequestBudget"]

#: Longest shared pause a server's ``Retry-After`` can impose (one hour): a bogus header must not
#: silence a connection for days.
MAX_PAUSE = 3600.0
#: Slots are booked this much further apart than ``1 / rate`` (5%): a server counting requests per
#: fixed second then never sees more than ``rate`` of them in one second, even when a send wakes up
#: to 50 ms later than the one after it (event-loop lag), at the cost of 5% of the rate.
PACING_HEADROOM = 0.05


class RequestBudget:
    """At most ``rate`` requests per second, in bursts of at most ``burst``, plus a shared pause.

    It is a GCRA token bucket: each :meth:`reserve` books the next free send slot and returns how
    long the caller must wait for it, so thousands of waiting callers cost one float each, wake up
    one by one in booking order, and never poll. :meth:`pause` (a 429's ``Retry-After``) moves
    every slot not yet reached behind the pause, for every user of the budget at once; a caller
    already asleep notices it through :meth:`recheck` and books again.

    By default there is no burst (``burst=1``): requests go one by one, ``(1 + PACING_HEADROOM) /
    rate`` seconds apart (5% more than ``1 / rate``), so a budget set to the server's own limit stays under it in every
    second, however the server draws its seconds. (A burst of half a second's worth let about 1.5
    times ``rate`` through in one second: with the budget equal to a 50 requests/s server limit,
    1.9% of the answers were 429.) A larger ``burst`` lets that many go at once after a quiet spell.

    ``rate=0`` means no rate limit (the pause still applies). ``clock`` is injected for tests.
    """

    def __init__(self, rate: float, *, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if not (math.isfinite(rate) and rate >= 0):
            raise CoverbaseConfigError(f"the request rate must be a number >= 0 (0: no limit), got {rate!r}")
        self.rate = float(rate)
        #: Requests that may go at once after a quiet spell: one (smooth pacing) unless told otherwise.
        self.burst = max(1.0, float(burst) if burst is not None else 1.0)
        #: Seconds between two booked slots.
        self._interval = (1.0 + PACING_HEADROOM) / self.rate if self.rate else 0.0
        self._tolerance = (self.burst - 1.0) * self._interval
        self._clock = clock
        self._lock = threading.Lock()
        self._next = -math.inf  # the earliest slot not yet booked
        self._paused_until = -math.inf
        self._pauses = 0  # bumped by each pause, so sleepers can tell one started

    def __repr__(self) -> str:
        return f"RequestBudget(rate={self.rate:g}, burst={self.burst:g})"

    @property
    def paused_until(self) -> float:
        """Clock time before which nobody may send (``-inf`` when never paused)."""
        return self._paused_until

    def reserve(self, *, after_pause: bool = True) -> tuple[float, int]:
        """Book one send slot: ``(seconds to wait, pause generation)`` to pass to :meth:`recheck`.

        ``after_pause=False`` books a rate slot without waiting out the shared pause: for the one
        caller whose own retry already waited the 429's ``Retry-After``.
        """
        with self._lock:
            now = self._clock()
            paused_until = self._paused_until if after_pause else -math.inf
            if self._interval:
                slot = max(self._next, now - self._tolerance, paused_until)
                self._next = slot + self._interval
            else:
                slot = paused_until
            return max(0.0, slot - now), self._pauses

    def try_reserve(self) -> bool:
        """Book a slot only if one is free right now (no pause, within the rate): True if booked.

        For callers that refuse rather than wait (the webhook receiver answers 429): a refusal books
        nothing, so a flood of refused callers does not push later slots into the future.
        """
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return False
            if self._interval:
                slot = max(self._next, now - self._tolerance)
                if slot - now > 1e-9:  # not a rounding error of the booked intervals
                    return False
                self._next = slot + self._interval
            return True

    def recheck(self, generation: int) -> tuple[float, int]:
        """After waiting for a slot: ``(0, g)`` to send now, or a new wait if a pause began meanwhile."""
        if generation == self._pauses:
            return 0.0, generation
        with self._lock:
            if self._clock() >= self._paused_until:
                return 0.0, self._pauses
        return self.reserve()

    def pause(self, seconds: float) -> None:
        """Hold every user back for ``seconds`` from now (a 429's ``Retry-After``), at most an hour."""
        if not (math.isfinite(seconds) and seconds > 0):
            return
        with self._lock:
            until = self._clock() + min(seconds, MAX_PAUSE)
            if until > self._paused_until:
                self._paused_until = until
                self._pauses += 1
