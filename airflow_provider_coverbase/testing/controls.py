"""Test controls of the emulator's answers: injected faults and the answer variants in force.

No Airflow imports, no client imports.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import ConfigDict

from airflow_provider_coverbase.testing.catalog import JSON
from airflow_provider_coverbase.testing.config import ConflictShape, EmulatorConfig, Flag, RetryAfterPlacement


@dataclass(slots=True)
class Fault:
    """Fail the next ``remaining`` matching ``/v1`` requests with ``status``."""

    remaining: int
    status: int
    path_prefix: str = "/v1/"
    retry_after: int | None = None
    message: str = "Injected fault."


@dataclass(slots=True)
class Faults:
    """Armed fault injections; the ``take_*`` methods use one up (under the emulator's shared lock)."""

    lock: threading.RLock
    fail: list[Fault] = field(default_factory=list)
    drop_after_commit: int = 0
    dispatch_fail_next: int = 0
    delay_seconds: float = 0.0

    def clear(self) -> None:
        with self.lock:
            self.fail.clear()
            self.drop_after_commit = self.dispatch_fail_next = 0
            self.delay_seconds = 0.0

    def take_fault(self, path: str) -> Fault | None:
        """The armed failure for a request to ``path``, if any (used up by one)."""
        with self.lock:
            for fault in self.fail:
                if fault.remaining > 0 and path.startswith(fault.path_prefix):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self.fail.remove(fault)
                    return fault
            return None

    def _use_one(self, counter: str) -> bool:
        """Count down the armed ``counter``: whether one was left."""
        with self.lock:
            left: int = getattr(self, counter)
            if left > 0:
                setattr(self, counter, left - 1)
            return left > 0

    def take_drop(self) -> bool:
        """Whether this committed run POST loses its answer."""
        return self._use_one("drop_after_commit")

    def take_dispatch_failure(self) -> bool:
        """Whether this run POST fails to dispatch (current dialect)."""
        return self._use_one("dispatch_fail_next")


@dataclass(frozen=True, slots=True)
class Variants:
    """The answer variants in force (see :class:`EmulatorConfig`); ``reset()`` restores the configured ones."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    conflict_shape: ConflictShape = "detail"
    retry_after: RetryAfterPlacement = "both"
    sparse_get_bodies: Flag = False
    legacy_v2_endpoints: Flag = False

    @classmethod
    def of(cls, config: EmulatorConfig) -> Variants:
        return cls.checked(
            conflict_shape=config.conflict_shape,
            retry_after=config.retry_after,
            sparse_get_bodies=config.sparse_get_bodies,
            legacy_v2_endpoints=config.legacy_v2_endpoints,
        )

    @classmethod
    def checked(cls, **values: Any) -> Variants:
        """Variants validated by pydantic: :class:`ConfigError` names an unknown variant or value."""
        from airflow_provider_coverbase.testing.config_file import validated

        return validated(cls, values, what="the answer variants")

    def changed(self, **changes: Any) -> Variants:
        return self.checked(**{**self.as_dict(), **changes})

    def as_dict(self) -> JSON:
        return asdict(self)
