"""RequestBudget: pacing, bursts and the shared 429 pause, with an injected clock; and the clients using it."""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import pytest

from airflow_provider_coverbase.client import RequestBudget, RetryPolicy
from airflow_provider_coverbase.client._budget import PACING_HEADROOM
from airflow_provider_coverbase.exceptions import CoverbaseConfigError, RateLimitError
from tests.client.test_client import error
from tests.fake_api import FakeCoverbaseAPI

#: One booked slot per (1 + headroom) / rate seconds.
STEP = 1 + PACING_HEADROOM


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_one_slot_per_interval() -> None:
    clock = FakeClock()
    budget = RequestBudget(10, burst=3, clock=clock)
    waits = [budget.reserve()[0] for _ in range(6)]
    assert waits == pytest.approx([0, 0, 0, 0.1 * STEP, 0.2 * STEP, 0.3 * STEP])
    clock.now += 10  # a quiet spell refills the burst
    assert [budget.reserve()[0] for _ in range(4)] == pytest.approx([0, 0, 0, 0.1 * STEP])


def test_try_reserve_refuses_without_booking() -> None:
    clock = FakeClock()
    budget = RequestBudget(10, burst=3, clock=clock)
    assert [budget.try_reserve() for _ in range(5)] == [True, True, True, False, False]
    clock.now += 0.1 * STEP  # the refusals booked nothing: one interval later, one slot is free
    assert [budget.try_reserve() for _ in range(2)] == [True, False]
    budget.pause(5)
    clock.now += 10
    assert budget.try_reserve()
    budget.pause(5)
    assert not budget.try_reserve()  # paused
    assert RequestBudget(0, clock=clock).try_reserve()


def test_default_is_smooth_pacing_and_zero_is_unlimited() -> None:
    clock = FakeClock()
    budget = RequestBudget(25, clock=clock)
    assert budget.burst == 1
    assert [budget.reserve()[0] for _ in range(3)] == pytest.approx([0, 0.04 * STEP, 0.08 * STEP])
    unlimited = RequestBudget(0, clock=FakeClock())
    assert {unlimited.reserve()[0] for _ in range(1000)} == {0}
    with pytest.raises(CoverbaseConfigError, match=">= 0"):
        RequestBudget(-1)


def test_a_pause_holds_back_every_later_slot_and_wakes_sleepers() -> None:
    clock = FakeClock()
    budget = RequestBudget(10, burst=1, clock=clock)
    assert budget.reserve()[0] == 0
    step = 0.1 * STEP
    sleeper_wait, sleeper_generation = budget.reserve()  # someone already waiting for the next slot
    assert sleeper_wait == pytest.approx(step)
    budget.pause(5)  # a 429 with Retry-After: 5
    assert budget.paused_until == 105
    # New callers book behind the pause, one interval apart.
    assert [budget.reserve()[0] for _ in range(2)] == pytest.approx([5.0, 5.0 + step])
    # The sleeper wakes at its slot, sees the pause began meanwhile and books again.
    clock.now += step
    again, _ = budget.recheck(sleeper_generation)
    assert again == pytest.approx(5.0 + step)
    # A caller whose own retry already waited the hint books a rate slot without the pause.
    assert budget.reserve(after_pause=False)[0] == pytest.approx(5.0 + 2 * step)
    # Nonsense pauses are ignored; a Retry-After of days is capped at an hour.
    budget.pause(float("nan"))
    budget.pause(10 * 86400)
    assert budget.paused_until == pytest.approx(clock.now + 3600)


def test_concurrent_reservations_never_share_a_slot() -> None:
    """Eight threads booking at once on a frozen clock: every slot distinct, exactly one interval apart."""
    clock = FakeClock()
    budget = RequestBudget(50, burst=1, clock=clock)
    slots: list[float] = []
    lock = threading.Lock()

    def book() -> None:
        for _ in range(100):
            wait, _ = budget.reserve()
            with lock:
                slots.append(wait)

    threads = [threading.Thread(target=book) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    slots.sort()
    assert len(slots) == 800
    assert slots == pytest.approx([i * STEP / 50 for i in range(800)])


async def test_many_async_callers_share_one_budget() -> None:
    """200 tasks of one loop book slots: at most rate + burst sends in any second of (fake) time."""
    clock = FakeClock()
    budget = RequestBudget(20, burst=10, clock=clock)
    sent: list[float] = []

    async def caller() -> None:
        await asyncio.sleep(0)  # interleave the tasks
        wait, _ = budget.reserve()
        sent.append(clock.now + wait)

    await asyncio.gather(*(caller() for _ in range(200)))
    sent.sort()
    assert len(sent) == 200
    for start in sent:
        assert len([t for t in sent if start <= t < start + 1.0]) <= 20 + budget.burst
    assert sent[-1] - sent[0] == pytest.approx((200 - budget.burst) * STEP / 20, abs=0.06)


def _over_limit(sends: list[float], limit: int) -> int:
    """Requests a server refuses when it allows ``limit`` per second, each second starting at the
    first request after the previous one ended (the emulator's rate limit)."""
    refused, window_start, count = 0, -1.0e9, 0
    for at in sorted(sends):
        if at >= window_start + 1.0:
            window_start, count = at, 0
        if count >= limit:
            refused += 1
        else:
            count += 1
    return refused


@pytest.mark.parametrize("burst", [None, 25.0])
def test_a_budget_equal_to_the_server_limit_stays_under_it(burst: float | None) -> None:
    """50 requests/s against a server that allows 50 per second, sends waking up to 40 ms late.

    The default (smooth pacing with headroom) is never refused; a burst of half a second's worth
    (the default before) is: it lets about 75 through in the first second after a quiet spell.
    """
    rng = random.Random(8)
    clock = FakeClock()
    budget = RequestBudget(50, burst=burst, clock=clock)
    sends = []
    for _ in range(3000):
        wait, _ = budget.reserve()
        sends.append(clock.now + wait + rng.uniform(0.0, 0.04))  # the send wakes up a little late
        clock.now += rng.choice([0.0, 0.0, 0.005])  # callers arrive faster than the rate
    refused = _over_limit(sends, 50)
    if burst is None:
        assert refused == 0
    else:
        assert refused > 0


async def test_a_429_pauses_every_client_sharing_the_budget(make_api: Any, legacy_fake: FakeCoverbaseAPI) -> None:
    """One client's 429 (Retry-After: 30) holds another client of the same budget back 30 s."""
    clock = FakeClock()
    budget = RequestBudget(0, clock=clock)
    first = make_api(legacy_fake, budget=budget, retry=RetryPolicy(max_attempts=1))
    second = make_api(legacy_fake, budget=budget)
    legacy_fake.script.append(error(429, {"code": "rate_limited", "message": "slow"}, headers={"Retry-After": "30"}))
    with pytest.raises(RateLimitError):
        await first("check_auth")
    assert budget.paused_until == pytest.approx(clock.now + 30)
    assert await second("check_auth")
    assert second.sleeps == pytest.approx([30.0])  # waited the shared pause before sending
    assert len(legacy_fake.requests) == 2


async def test_the_client_paces_its_requests(make_api: Any, legacy_fake: FakeCoverbaseAPI) -> None:
    """max_requests_per_second=2: the first goes at once, each next one about half a second later (fake clock)."""
    api = make_api(legacy_fake, max_requests_per_second=2)
    for _ in range(4):
        await api("check_auth")
    assert api.sleeps == pytest.approx([0.5 * STEP] * 3)
