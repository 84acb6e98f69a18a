"""The emulator's clock: wall time scaled by a speed factor, plus manual advances.

``now()`` is emulated Unix seconds. With ``speed=3600`` an hour-long checkpoint passes in one real
second; with ``speed=0`` time only moves through ``advance()``. Changing the speed re-anchors the
clock, so emulated time never jumps.

No Airflow imports, no client imports.
"""

from __future__ import annotations

import threading
import time


class EmulatorClock:
    """A thread-safe, monotonic, speed-scaled clock."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if speed < 0:
            raise ValueError("speed must not be negative")
        self._lock = threading.Lock()
        # One tuple, swapped atomically: (emulated anchor, real monotonic anchor, speed).
        self._anchor = (time.time() if start is None else start, time.monotonic(), speed)

    @property
    def speed(self) -> float:
        return self._anchor[2]

    def now(self) -> float:
        """Current emulated time, Unix seconds (float)."""
        emulated, real, speed = self._anchor
        return emulated + (time.monotonic() - real) * speed

    def advance(self, seconds: float) -> float:
        """Move emulated time forward by ``seconds``; returns the new time."""
        if seconds < 0:
            raise ValueError("the clock cannot go backwards")
        with self._lock:
            new = self.now() + seconds
            self._anchor = (new, time.monotonic(), self._anchor[2])
            return new

    def set_speed(self, speed: float) -> None:
        """Change how many emulated seconds pass per real second (0 freezes the clock)."""
        if speed < 0:
            raise ValueError("speed must not be negative")
        with self._lock:
            self._anchor = (self.now(), time.monotonic(), speed)

    def real_seconds(self, emulated: float, floor: float = 0.01) -> float:
        """How long to really wait for ``emulated`` seconds to pass (``floor`` if frozen)."""
        speed = self._anchor[2]
        if speed <= 0:
            return floor
        return max(emulated / speed, floor)
