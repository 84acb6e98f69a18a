"""RequestBudget: pacing, bursts and the shared 429 pause, with an injected clock; and the clients using it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from airflow_provider_coverbase.client import RequestBudget, RetryPolicy
from airflow_provider_coverbase.exceptions import CoverbaseConfigError, RateLimitError
from tests.client.test_client import error
from tests.fake_api import FakeCoverbaseAPI


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_one_slot_per_interval() -> None:
    clock = FakeClock()
    budget = RequestBudget(10, burst=3, clock=clock)
    waits = [budget.reserve()[0] for _ in range(6)]
    assert waits == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3])
    clock.now += 10  # a quiet spell refills the burst
    assert [budget.reserve()[0] for _ in range(4)] == pytest.approx([0, 0, 0, 0.1])


def test_default_burst_is_half_a_second_and_zero_is_unlimited() -> None:
    assert RequestBudget(25).burst == 12.5
    assert RequestBudget(1).burst == 1
    unlimited = RequestBudget(0, clock=FakeClock())
    assert {unlimited.reserve()[0] for _ in range(1000)} == {0}
    with pytest.raises(CoverbaseConfigError, match=">= 0"):
        RequestBudget(-1)


def test_a_pause_holds_back_every_later_slot_and_wakes_sleepers() -> None:
    clock = FakeClock()
    budget = RequestBudget(10, burst=1, clock=clock)
    assert budget.reserve()[0] == 0
    sleeper_wait, sleeper_generation = budget.reserve()  # someone already waiting for slot 0.1
    assert sleeper_wait == pytest.approx(0.1)
    budget.pause(5)  # a 429 with Retry-After: 5
    assert budget.paused_until == 105
    # New callers book behind the pause, one interval apart.
    assert [budget.reserve()[0] for _ in range(2)] == pytest.approx([5.0, 5.1])
    # The sleeper wakes at its slot, sees the pause began meanwhile and books again.
    clock.now += 0.1
    again, _ = budget.recheck(sleeper_generation)
    assert again == pytest.approx(5.1)
    # A caller whose own retry already waited the hint books a rate slot without the pause.
    assert budget.reserve(after_pause=False)[0] == pytest.approx(5.2)
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
    assert slots == pytest.approx([i / 50 for i in range(800)])


async def test_many_async_callers_share_one_budget() -> None:
    """200 tasks of one loop book slots: at most rate + burst sends in any second of (fake) time."""
    clock = FakeClock()
    budget = RequestBudget(20, clock=clock)
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
    assert sent[-1] - sent[0] == pytest.approx((200 - budget.burst) / 20, abs=0.06)


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
    """max_requests_per_second=2: after a burst of one, each request waits half a second (fake clock)."""
    api = make_api(legacy_fake, max_requests_per_second=2)
    for _ in range(4):
        await api("check_auth")
    assert api.sleeps == pytest.approx([0.5, 0.5, 0.5])
