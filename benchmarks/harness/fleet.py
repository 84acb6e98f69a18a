"""A fleet of triggers in one event loop, run as the triggerer runs them, and what became of them."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from benchmarks.harness.counters import Counters


class TriggerKind(Protocol):
    """What :func:`start_fleet` needs of a kind of trigger: its class path and its kwargs."""

    @property
    def classpath(self) -> str: ...

    def kwargs(self, index: int, poll: float, ours_kwargs: dict[str, Any]) -> dict[str, Any]: ...


def rss_mb() -> float:
    """Resident set size of this process now (not the peak), in MB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def summarize_event(payload: Any) -> str:
    if isinstance(payload, dict):
        if payload.get("status") == "error" and payload.get("message"):
            return f"error ({str(payload['message'])[:60]})"
        if "status" in payload:
            return str(payload["status"])
        if "run_state" in payload:
            return "success" if '"SUCCESS"' in str(payload["run_state"]) else "event"
        return "event"
    return "success" if payload is True else f"event {str(payload)[:20]}"


@dataclass
class Fleet:
    """The triggers of one worker and what became of them."""

    n: int
    done_at: list[float] = field(default_factory=list)
    outcome: list[str] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    lag: list[tuple[float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.done_at = [0.0] * self.n
        self.outcome = [""] * self.n

    def finished(self) -> int:
        return sum(1 for value in self.outcome if value)

    def outcomes(self) -> dict[str, int]:
        counts = Counter(value or "waiting" for value in self.outcome)
        return dict(sorted(counts.items()))


def build_trigger(classpath: str, kwargs: dict[str, Any]) -> Any:
    """Import the class and build the trigger from its kwargs, as the triggerer does."""
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)


async def drive(trigger: Any, index: int, fleet: Fleet) -> None:
    """Run one trigger until its first event (the triggerer's loop), then clean up."""
    events = trigger.run()
    try:
        async for event in events:
            fleet.done_at[index] = time.time()
            fleet.outcome[index] = summarize_event(event.payload)
            break
        else:
            fleet.outcome[index] = "ended without event"
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        fleet.done_at[index] = time.time()
        fleet.outcome[index] = f"raised {type(exc).__name__}"
    finally:
        with contextlib.suppress(Exception):
            await events.aclose()
        with contextlib.suppress(Exception):
            await trigger.cleanup()


async def lag_monitor(fleet: Fleet, tick: float = 0.02) -> None:
    """Record how late a 20 ms sleep wakes up: the loop's lag, with a timestamp."""
    while True:
        start = time.perf_counter()
        await asyncio.sleep(tick)
        now = time.perf_counter()
        fleet.lag.append((now, now - start - tick))


async def wait_until(predicate: Callable[[], bool], within: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


async def start_fleet(
    kind: TriggerKind, n: int, poll: float, counters: Counters, ours_kwargs: dict[str, Any], stagger: float = 0.0
) -> Fleet:
    """Build and start ``n`` triggers: all at once (a triggerer restart), or spread over ``stagger`` s."""
    fleet = Fleet(n)
    specs = [(kind.classpath, kind.kwargs(i, poll, ours_kwargs)) for i in range(n)]
    began = time.monotonic()
    for i, (classpath, kwargs) in enumerate(specs):
        # Like the triggerer's create_triggers(): let the loop run between two new triggers.
        await asyncio.sleep(max(0.0, began + stagger * i / n - time.monotonic()) if stagger > 0 else 0)
        fleet.tasks.append(asyncio.create_task(drive(build_trigger(classpath, kwargs), i, fleet)))
    return fleet


async def stop_fleet(fleet: Fleet) -> None:
    for task in fleet.tasks:
        task.cancel()
    await asyncio.gather(*fleet.tasks, return_exceptions=True)
