"""The emulator's in-memory state: one object holding the stores, and the rules that span them.

The stores (:class:`~.accounts.Accounts`, :class:`~.runs.RunStore`,
:class:`~.webhook_store.WebhookStore`, :class:`~.controls.Faults`) share one re-entrant lock, so the
Python API (test thread) and the server (its own thread) can both use them, and an operation that
spans stores (starting a run schedules its webhook events) is atomic.

No Airflow imports, no client imports.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from airflow_provider_coverbase.testing import runs
from airflow_provider_coverbase.testing.accounts import Accounts
from airflow_provider_coverbase.testing.catalog import JSON
from airflow_provider_coverbase.testing.clock import EmulatorClock
from airflow_provider_coverbase.testing.config import Dialect, EmulatorConfig, OrgConfig, WorkflowDefinition
from airflow_provider_coverbase.testing.controls import Faults, Variants
from airflow_provider_coverbase.testing.runs import Run, RunStore
from airflow_provider_coverbase.testing.webhook_store import DeliveryJob, WebhookStore


class EmulatorState:
    """All mutable state of one emulator: the stores, the clock, the answer variants, the request log."""

    def __init__(self, config: EmulatorConfig, dialect: Dialect, clock: EmulatorClock | None = None) -> None:
        if dialect not in ("legacy", "current"):
            raise ValueError(f"unknown dialect {dialect!r}")
        self.config = config
        self.dialect: Dialect = dialect
        self.clock = clock or EmulatorClock(config.speed)
        self.lock = threading.RLock()
        self.accounts = Accounts(self.lock)
        self.run_store = RunStore(self.lock, dialect, config.idempotency_ttl_seconds)
        self.webhooks = WebhookStore(self.lock, dialect)
        self.faults = Faults(self.lock)
        self.variants = Variants.of(config)
        self.request_log: deque[JSON] = deque(maxlen=config.request_log_limit)
        #: TCP connections the server accepted (since start or the last reset) and those open now.
        self.connections_accepted = 0
        self.connections_open = 0
        self.reset()

    @property
    def runs(self) -> dict[str, Run]:
        """Every run, by ID."""
        return self.run_store.by_id

    def reset(self) -> None:
        """Back to the configured state: no runs, keys, faults, log, webhooks or counters."""
        with self.lock:
            self.accounts.reset(self.config)
            self.run_store.reset([o.org_id for o in self.config.orgs])
            self.webhooks.reset()
            self.faults.clear()
            self.variants = Variants.of(self.config)
            self.request_log.clear()
            self.connections_accepted = 0
            if self.clock.speed != self.config.speed:
                self.clock.set_speed(self.config.speed)

    def connection_opened(self) -> None:
        """Count one TCP connection accepted by the server (how clients reuse connections)."""
        with self.lock:
            self.connections_accepted += 1
            self.connections_open += 1

    def connection_closed(self) -> None:
        with self.lock:
            self.connections_open -= 1

    def connections_view(self) -> JSON:
        """``{"accepted": n, "open": m}``: accepted since start or the last reset, open now."""
        with self.lock:
            return {"accepted": self.connections_accepted, "open": self.connections_open}

    def set_variants(self, **changes: Any) -> Variants:
        """Change answer variants until ``reset()``: ``conflict_shape``, ``retry_after``,
        ``sparse_get_bodies``, ``legacy_v2_endpoints`` (see :class:`EmulatorConfig`).

        :class:`~.config.ConfigError` names an unknown variant or value; nothing changes then.
        """
        with self.lock:
            self.variants = self.variants.changed(**changes)
            return self.variants

    def start_run(self, org: OrgConfig, definition: WorkflowDefinition, run_input: JSON, *, dispatched: bool) -> Run:
        """Create a run now; a dispatched one raises its webhook events as they fall due."""
        with self.lock:
            run = self.run_store.create(org.org_id, definition, run_input, self.clock.now(), dispatched)
            if dispatched:
                self.webhooks.schedule(run)
            return run

    def concurrency_retry_after(self, org: OrgConfig) -> int | None:
        """``retry_after`` when the org already has ``max_concurrent_runs`` active runs."""
        return self.run_store.concurrency_retry_after(org, self.clock.now())

    def run_view(self, run: Run, *, summary: bool = False) -> JSON:
        """The GET-run body now, in this emulator's dialect."""
        return runs.run_view(run, self.clock.now(), self.dialect, summary=summary)

    def due_events(self) -> list[DeliveryJob]:
        """Webhook events that have fallen due (for the delivery ticker)."""
        return self.webhooks.due_events(self.clock.now())
