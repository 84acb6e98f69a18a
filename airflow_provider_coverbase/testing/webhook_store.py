"""Webhook state: subscriptions, the events runs raise, delivery records and the test controls.

Each run's events are computed when it starts (:func:`run_events`) and handed out by
:meth:`WebhookStore.due_events` once their time has come, which the delivery ticker calls. The
store's methods take the emulator's shared lock.

No Airflow imports, no client imports.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from airflow_provider_coverbase.testing.catalog import CURRENT_OF, JSON, new_id
from airflow_provider_coverbase.testing.config import Dialect
from airflow_provider_coverbase.testing.runs import Run, ok_checkpoints


def run_events(run: Run, dialect: Dialect) -> tuple[tuple[float, str, JSON], ...]:
    """The events a run raises in ``dialect``: (offset from its start, event type, data)."""
    d = run.definition
    tl = d.timeline
    base: JSON = {"workflow_run_id": run.run_id}
    events: list[tuple[float, str, JSON]] = []
    if dialect == "legacy":
        for i in range(ok_checkpoints(d)):
            data = {**base, "workflow_name": d.name, "checkpoint": d.checkpoints[i].name, "status": "running"}
            events.append((tl.reach_offsets[i], "workflow.checkpoint", data))
        if not d.never_finishes and d.final_status == "completed":
            data = {**base, "workflow_name": d.name, "status": "completed", "output": dict(d.output or {})}
            events.append((tl.terminal_offset, "workflow.completed", data))
        elif not d.never_finishes and d.final_status == "failed":
            data = {**base, "workflow_name": d.name, "status": "failed", "error": d.failure_message}
            events.append((tl.terminal_offset, "workflow.failed", data))
        return tuple(events)
    events.append((0.0, "WorkflowRun.Created", {**base, "input": run.input}))
    if not d.never_finishes:
        final = CURRENT_OF[d.final_status]
        diffs = {"status": {"old_value": "started", "new_value": final}}
        events.append((tl.terminal_offset, "WorkflowRun.Updated", {**base, "field_diffs": diffs}))
        if final in ("completed", "failed"):
            events.append((tl.terminal_offset, f"WorkflowRun.{final.capitalize()}", dict(base)))
    return tuple(events)


@dataclass(slots=True)
class Subscription:
    """An org's webhook subscription, with its delivery statistics (current dialect)."""

    webhook_id: str
    org_id: str
    url: str
    events: list[str]
    secret: str
    description: str | None
    enabled: bool
    created_at: int
    delivery_count: int = 0
    delivered_count: int = 0
    last_delivery_status: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryJob:
    """One event to deliver to one subscription (retried by the dispatcher)."""

    subscription: Subscription
    event_id: str
    event_type: str
    run_id: str | None
    data: JSON
    #: A test delivery (``POST /v1/webhooks/{id}/test``): never retried.
    test: bool = False

    def view(self) -> JSON:
        """How the admin API shows a raised or held event."""
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "webhook_id": self.subscription.webhook_id,
            "workflow_run_id": self.run_id,
            "data": self.data,
            "test": self.test,
        }


@dataclass(slots=True)
class SigningOverride:
    """How the next ``remaining`` delivery attempts are signed: ``none`` (no header) or ``secret``."""

    remaining: int
    mode: str
    secret: str | None = None


@dataclass(slots=True)
class WebhookControls:
    """Test controls of outbound deliveries (see the ``/_emulator/webhooks/*`` routes)."""

    #: While true, due deliveries wait in ``held`` instead of being sent.
    hold: bool = False
    held: list[DeliveryJob] = field(default_factory=list)
    signing: list[SigningOverride] = field(default_factory=list)


class WebhookStore:
    """Subscriptions, raised events (by ``event_id``, for redelivery), delivery records, controls."""

    def __init__(self, lock: threading.RLock, dialect: Dialect) -> None:
        self.lock = lock
        self.dialect: Dialect = dialect
        self.subscriptions: dict[str, Subscription] = {}
        self.deliveries: list[JSON] = []
        self.events: dict[str, DeliveryJob] = {}
        self.controls = WebhookControls()
        #: Runs with events still to raise, by run ID.
        self.pending_runs: dict[str, Run] = {}

    def reset(self) -> None:
        with self.lock:
            self.subscriptions.clear()
            self.deliveries.clear()
            self.events.clear()
            self.controls = WebhookControls()
            self.pending_runs.clear()

    def schedule(self, run: Run) -> None:
        """Compute a new run's events; they are raised as they fall due."""
        run.events = run_events(run, self.dialect)
        if run.events:
            with self.lock:
                self.pending_runs[run.run_id] = run

    def due_events(self, now: float) -> list[DeliveryJob]:
        """Events whose time has come, matched to the enabled subscriptions of the run's org."""
        with self.lock:
            if not self.pending_runs:
                return []
            jobs: list[DeliveryJob] = []
            finished: list[str] = []
            for run in self.pending_runs.values():
                while run.event_cursor < len(run.events) and run.started + run.events[run.event_cursor][0] <= now:
                    _, event_type, data = run.events[run.event_cursor]
                    run.event_cursor += 1
                    for sub in self.subscriptions.values():
                        if sub.org_id == run.org_id and sub.enabled and event_type in sub.events:
                            payload = {"event_type": event_type, **data}
                            jobs.append(DeliveryJob(sub, new_id("cbevt"), event_type, run.run_id, payload))
                if run.event_cursor >= len(run.events):
                    finished.append(run.run_id)
            for run_id in finished:
                del self.pending_runs[run_id]
            for job in jobs:
                self.events[job.event_id] = job
            if self.controls.hold:
                self.controls.held.extend(jobs)
                return []
            return jobs

    def take_signing(self) -> SigningOverride | None:
        """The signing override for the next delivery attempt, if one is armed."""
        with self.lock:
            for override in self.controls.signing:
                override.remaining -= 1
                if override.remaining <= 0:
                    self.controls.signing.remove(override)
                return override
            return None

    def release_held(self, order: str | list[str] = "fifo") -> list[DeliveryJob]:
        """Stop holding deliveries; the held ones in ``order`` (``fifo``, ``reverse`` or event IDs).

        Held deliveries not named in an explicit list stay held for a later release.
        """
        with self.lock:
            controls = self.controls
            if order == "fifo":
                jobs = list(controls.held)
            elif order == "reverse":
                jobs = controls.held[::-1]
            elif isinstance(order, list):
                by_id = {job.event_id: job for job in controls.held}
                unknown = [event_id for event_id in order if event_id not in by_id]
                if unknown:
                    raise KeyError(f"not held: {', '.join(unknown)}")
                jobs = [by_id[event_id] for event_id in order]
            else:
                raise ValueError(f"order must be 'fifo', 'reverse' or a list of event IDs, got {order!r}")
            released = {job.event_id for job in jobs}
            controls.held = [job for job in controls.held if job.event_id not in released]
            controls.hold = bool(controls.held)
            return jobs

    def record_delivery(self, record: JSON) -> None:
        with self.lock:
            self.deliveries.append(record)
            sub = self.subscriptions.get(str(record["webhook_id"]))
            if sub is not None:
                sub.delivery_count += 1
                sub.last_delivery_status = str(record["status"])
                if record["status"] == "delivered":
                    sub.delivered_count += 1

    def view(self, sub: Subscription) -> JSON:
        """A subscription as the API shows it (the current dialect adds delivery statistics)."""
        body: JSON = {
            "id": sub.webhook_id,
            "url": sub.url,
            "events": list(sub.events),
            "description": sub.description,
            "enabled": sub.enabled,
            "created_at": sub.created_at,
        }
        if self.dialect == "current":
            rate = round(sub.delivered_count / sub.delivery_count, 4) if sub.delivery_count else None
            body.update(
                last_delivery_status=sub.last_delivery_status,
                delivery_success_rate=rate,
                delivery_count=sub.delivery_count,
            )
        return body
