"""The emulator's in-memory state and the rules of the Workflows API, independent of HTTP.

Run progression is computed lazily from the clock at read time (status = f(now - started,
definition)); nothing runs per run. Webhook events are produced by a ticker that calls
``due_events()``. Every public method takes the state lock, so the Python API (test thread) and the
server (its own thread) can both use it.

No Airflow imports, no client imports.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_coverbase.testing.clock import EmulatorClock
from airflow_provider_coverbase.testing.config import (
    ConfigError,
    ConflictShape,
    Dialect,
    EmulatorConfig,
    OrgConfig,
    RetryAfterPlacement,
    WorkflowDefinition,
    check_variants,
)

JSON = dict[str, Any]

LEGACY_STATUSES = ("pending", "running", "paused", "completed", "failed", "cancelled")
CURRENT_STATUSES = ("started", "completed", "canceled", "failed")
_CURRENT_OF = {
    "pending": "started",
    "running": "started",
    "paused": "started",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "canceled",
}

#: V3 well-known input keys: a number under one of them is echoed as a string.
WELL_KNOWN_INPUT_KEYS = frozenset(
    [
        "vendor_id",
        "service_id",
        "assessment_id",
        "engagement_id",
        "contract_id",
        "finding_id",
        "vendor_document_id",
        "questionnaire_response_id",
        "intake_session_id",
        "procurement_id",
        "review_id",
        "eval_id",
        "portal_id",
        "work_queue_item_id",
        "radar_event_id",
        "radar_case_id",
    ]
)

LEGACY_EVENT_TYPES = frozenset(
    [
        "vendor.created",
        "vendor.status_changed",
        "assessment.started",
        "assessment.completed",
        "assessment.approved",
        "evaluation.flagged",
        "evidence.requested",
        "evidence.received",
        "contract.renewal_due",
        "contract.analyzed",
        "workflow.checkpoint",
        "workflow.completed",
        "workflow.failed",
    ]
)

_V3_FAMILIES = [
    "Assessment",
    "Commitment",
    "Contract",
    "DarkWebExposure",
    "Engagement",
    "Finding",
    "IntakeSession",
    "Obligation",
    "OrgIntake",
    "Procurement",
    "QuestionnaireResponse",
    "RadarCase",
    "RadarDetectorResult",
    "RadarEvent",
    "RadarSignal",
    "Reassessment",
    "Review",
    "RiskRegisterEntry",
    "ScreeningMatch",
    "Service",
    "MonitoringRecord",
    "MonitoringRecordEntry",
    "ServiceNowRecord",
    "Sla",
    "VendorBankAccount",
    "VendorContact",
    "SupplierSite",
    "SupplierTaxRegistration",
    "SupplierDiversityRecord",
    "SupplierUpdateRequest",
    "SupplierLegalEntityAssignment",
    "Vendor",
    "VendorDocument",
    "WorkQueueItem",
    "WorkflowRun",
]

#: The current (V2 + V3) PascalCase catalog, case-sensitive.
CURRENT_EVENT_TYPES = frozenset(
    [f"{family}.{action}" for family in _V3_FAMILIES for action in ("Created", "Updated", "Deleted")]
    + [
        "Assessment.AssigneeChanged",
        "Assessment.StatusChanged",
        "Assessment.ManualHandoffRequested",
        "QuestionnaireResponse.StatusChanged",
        "Review.StatusChanged",
        "WorkQueueItem.Completed",
        "Procurement.StatusChanged",
        "OrgIntake.QuestionnaireRemoved",
        "OrgIntake.Disabled",
        "IntakeSession.Submitted",
        "Contract.Expired",
        "MonitoringRecord.ScopingDue",
        "ServiceNowSync.Completed",
        "SupplierUpdateRequest.Submitted",
        "WorkflowRun.Completed",
        "WorkflowRun.Failed",
    ]
)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass(slots=True)
class Run:
    """A run: everything else about it is derived from ``started`` and the clock."""

    run_id: str
    org_id: str
    definition: WorkflowDefinition
    started: float
    input: JSON
    dispatched: bool
    events: tuple[tuple[float, str, JSON], ...] = ()
    event_cursor: int = 0


@dataclass(slots=True)
class Fault:
    """Fail the next ``remaining`` matching ``/v1`` requests with ``status``."""

    remaining: int
    status: int
    path_prefix: str = "/v1/"
    retry_after: int | None = None
    message: str = "Injected fault."


@dataclass(slots=True)
class Subscription:
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


@dataclass(slots=True)
class _OrgCounters:
    window_start: float = 0.0
    count: int = 0


@dataclass(slots=True)
class Variants:
    """The answer variants in force (see :class:`EmulatorConfig`); ``reset()`` restores the configured ones."""

    conflict_shape: ConflictShape = "detail"
    retry_after: RetryAfterPlacement = "both"
    sparse_get_bodies: bool = False
    legacy_v2_endpoints: bool = False

    @classmethod
    def of(cls, config: EmulatorConfig) -> Variants:
        return cls(config.conflict_shape, config.retry_after, config.sparse_get_bodies, config.legacy_v2_endpoints)

    def as_dict(self) -> JSON:
        return {
            "conflict_shape": self.conflict_shape,
            "retry_after": self.retry_after,
            "sparse_get_bodies": self.sparse_get_bodies,
            "legacy_v2_endpoints": self.legacy_v2_endpoints,
        }


@dataclass(slots=True)
class Faults:
    """Armed fault injections (see ``EmulatorState.take_*``)."""

    fail: list[Fault] = field(default_factory=list)
    drop_after_commit: int = 0
    dispatch_fail_next: int = 0
    delay_seconds: float = 0.0


class EmulatorState:
    """All mutable state of one emulator, plus the API rules that do not depend on HTTP."""

    def __init__(self, config: EmulatorConfig, dialect: Dialect, clock: EmulatorClock | None = None) -> None:
        if dialect not in ("legacy", "current"):
            raise ValueError(f"unknown dialect {dialect!r}")
        self.config = config
        self.dialect: Dialect = dialect
        self.clock = clock or EmulatorClock(config.speed)
        self.lock = threading.RLock()
        self.orgs_by_key: dict[str, OrgConfig] = {}
        self.orgs: dict[str, OrgConfig] = {}
        self.workflows: dict[str, WorkflowDefinition] = {}
        self.runs: dict[str, Run] = {}
        self.runs_by_org: dict[str, list[Run]] = {}
        self.idempotency: dict[tuple[str, str, str], tuple[float, int, JSON]] = {}
        self.counters: dict[str, _OrgCounters] = {}
        self.faults = Faults()
        self.variants = Variants.of(config)
        self.request_log: deque[JSON] = deque(maxlen=config.request_log_limit)
        self.subscriptions: dict[str, Subscription] = {}
        self.deliveries: list[JSON] = []
        #: Every event raised for a subscription, by ``event_id`` (for redelivery).
        self.events: dict[str, DeliveryJob] = {}
        self.webhook_controls = WebhookControls()
        self._event_runs: dict[str, Run] = {}
        #: TCP connections the server accepted (since start or the last reset) and those open now.
        self.connections_accepted = 0
        self.connections_open = 0
        self.reset()

    # ------------------------------------------------------------------ lifecycle

    def reset(self) -> None:
        """Back to the configured state: no runs, keys, faults, log, webhooks or counters."""
        with self.lock:
            self.orgs = {o.org_id: o for o in self.config.orgs}
            self.orgs_by_key = {o.api_key: o for o in self.config.orgs}
            self.workflows = {w.name: w for w in self.config.workflows}
            self.runs.clear()
            self.runs_by_org = {o.org_id: [] for o in self.config.orgs}
            self.idempotency.clear()
            self.counters.clear()
            self.faults = Faults()
            self.variants = Variants.of(self.config)
            self.request_log.clear()
            self.subscriptions.clear()
            self.deliveries.clear()
            self.events.clear()
            self.webhook_controls = WebhookControls()
            self._event_runs.clear()
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

    def add_workflow(self, definition: WorkflowDefinition) -> None:
        """Add or replace a definition; existing runs keep the definition they started with."""
        with self.lock:
            self.workflows[definition.name] = definition

    def set_limits(
        self,
        org_id: str | None = None,
        *,
        requests_per_window: int | None = None,
        window_seconds: float | None = None,
        max_concurrent_runs: int | None = None,
    ) -> None:
        """Set the limits of one org (all orgs when ``org_id`` is None); ``None`` is unlimited."""
        with self.lock:
            targets = [org_id] if org_id else list(self.orgs)
            for oid in targets:
                old = self.orgs[oid]
                new = OrgConfig(
                    org_id=old.org_id,
                    api_key=old.api_key,
                    name=old.name,
                    requests_per_window=requests_per_window,
                    window_seconds=window_seconds or old.window_seconds,
                    max_concurrent_runs=max_concurrent_runs,
                )
                self.orgs[oid] = new
                self.orgs_by_key[new.api_key] = new
                self.counters.pop(oid, None)

    def set_variants(self, **changes: Any) -> Variants:
        """Change answer variants until ``reset()``: ``conflict_shape``, ``retry_after``,
        ``sparse_get_bodies``, ``legacy_v2_endpoints`` (see :class:`EmulatorConfig`)."""
        unknown = set(changes) - set(Variants.__slots__)
        if unknown:
            raise ConfigError(f"unknown answer variants: {sorted(unknown)}")
        check_variants(conflict_shape=changes.get("conflict_shape"), retry_after=changes.get("retry_after"))
        with self.lock:
            for name, value in changes.items():
                setattr(
                    self.variants, name, bool(value) if name in ("sparse_get_bodies", "legacy_v2_endpoints") else value
                )
            return self.variants

    def _belongs(self, definition: WorkflowDefinition, org_id: str | None) -> bool:
        if definition.org is None or org_id is None:
            return True
        org = self.orgs.get(org_id)
        return definition.org == org_id or (org is not None and bool(org.name) and definition.org == org.name)

    def find_workflow(self, org_id: str | None, name: str) -> WorkflowDefinition | None:
        """The workflow called ``name`` that the org has (``None``: any org), or ``None``."""
        with self.lock:
            definition = self.workflows.get(name)
            return definition if definition is not None and self._belongs(definition, org_id) else None

    def find_definition_by_id(self, definition_id: str, org_id: str | None = None) -> WorkflowDefinition | None:
        with self.lock:
            for definition in self.workflows.values():
                if definition.definition_id(self.dialect) == definition_id and self._belongs(definition, org_id):
                    return definition
            return None

    # ------------------------------------------------------------------ auth and limits

    def authenticate(self, authorization: str | None) -> OrgConfig | None:
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.orgs_by_key.get(token.strip())

    def consume_budget(self, org: OrgConfig) -> int | None:
        """Count one request against the org's window; return ``retry_after`` when over budget."""
        limit = org.requests_per_window
        if limit is None:
            return None
        with self.lock:
            now = self.clock.now()
            counters = self.counters.setdefault(org.org_id, _OrgCounters(now, 0))
            if now >= counters.window_start + org.window_seconds:
                counters.window_start, counters.count = now, 0
            if counters.count >= limit:
                return max(1, math.ceil(counters.window_start + org.window_seconds - now))
            counters.count += 1
            return None

    def concurrency_retry_after(self, org: OrgConfig) -> int | None:
        """``retry_after`` when the org already has ``max_concurrent_runs`` active runs."""
        limit = org.max_concurrent_runs
        if limit is None:
            return None
        with self.lock:
            now = self.clock.now()
            # A run whose dispatch failed never reached the engine: it holds no concurrency slot.
            ends = [self._terminal_time(r) for r in self.runs_by_org[org.org_id] if r.dispatched]
            active = [end for end in ends if end is None or end > now]
            if len(active) < limit:
                return None
            finishing = [end for end in active if end is not None]
            return max(1, math.ceil(min(finishing) - now)) if finishing else 60

    # ------------------------------------------------------------------ idempotency

    def idempotent_get(self, org_id: str, template: str, key: str) -> tuple[int, JSON] | None:
        with self.lock:
            hit = self.idempotency.get((org_id, template, key))
            if hit is None:
                return None
            expires, status, body = hit
            if self.clock.now() >= expires:
                del self.idempotency[(org_id, template, key)]
                return None
            return status, body

    def idempotent_put(self, org_id: str, template: str, key: str, status: int, body: JSON) -> None:
        with self.lock:
            expires = self.clock.now() + self.config.idempotency_ttl_seconds
            self.idempotency[(org_id, template, key)] = (expires, status, body)

    # ------------------------------------------------------------------ faults

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults.fail:
                if fault.remaining > 0 and path.startswith(fault.path_prefix):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self.faults.fail.remove(fault)
                    return fault
            return None

    def take_drop(self) -> bool:
        with self.lock:
            if self.faults.drop_after_commit > 0:
                self.faults.drop_after_commit -= 1
                return True
            return False

    def take_dispatch_failure(self) -> bool:
        with self.lock:
            if self.faults.dispatch_fail_next > 0:
                self.faults.dispatch_fail_next -= 1
                return True
            return False

    def log_request(self, entry: JSON) -> None:
        self.request_log.append(entry)

    # ------------------------------------------------------------------ runs

    def normalize_input(self, raw: JSON) -> JSON:
        """V3 echo rules (current dialect): drop nulls, stringify numbers under well-known keys."""
        if self.dialect == "legacy":
            return raw
        out: JSON = {}
        for key, value in raw.items():
            if value is None:
                continue
            if key in WELL_KNOWN_INPUT_KEYS and isinstance(value, int | float) and not isinstance(value, bool):
                value = str(value)
            out[key] = value
        return out

    def create_run(self, org_id: str, definition: WorkflowDefinition, run_input: JSON, dispatched: bool) -> Run:
        with self.lock:
            prefix = "cbwfr" if self.dialect == "legacy" else "cbwr"
            run = Run(new_id(prefix), org_id, definition, self.clock.now(), run_input, dispatched)
            run.events = self._events_for(run) if dispatched else ()
            self.runs[run.run_id] = run
            self.runs_by_org[org_id].append(run)
            if run.events:
                self._event_runs[run.run_id] = run
            return run

    def get_run(self, org_id: str | None, run_id: str) -> Run | None:
        """The run, or ``None`` if it does not exist or belongs to another org."""
        run = self.runs.get(run_id)
        if run is None or (org_id is not None and run.org_id != org_id):
            return None
        return run

    def _terminal_time(self, run: Run) -> float | None:
        d = run.definition
        if not run.dispatched or d.never_finishes:
            return None
        return run.started + d.timeline.terminal_offset

    def _ok_checkpoints(self, d: WorkflowDefinition) -> int:
        n = len(d.checkpoints)
        return n - 1 if d.final_status == "failed" and n else n

    def legacy_status(self, run: Run, now: float) -> str:
        d = run.definition
        tl = d.timeline
        elapsed = now - run.started
        if not run.dispatched:
            return "running"
        if not d.never_finishes and elapsed >= tl.terminal_offset:
            return d.final_status
        if elapsed < tl.pending_until:
            return "pending"
        if tl.pause_window is not None and tl.pause_window[0] <= elapsed < tl.pause_window[1]:
            return "paused"
        return "running"

    def status(self, run: Run, now: float) -> str:
        legacy = self.legacy_status(run, now)
        return legacy if self.dialect == "legacy" else _CURRENT_OF[legacy]

    def run_view(self, run: Run, now: float | None = None, *, summary: bool = False) -> JSON:
        """The GET-run body in the state's dialect (``summary``: list item, without steps)."""
        now = self.clock.now() if now is None else now
        d = run.definition
        legacy = self.legacy_status(run, now)
        terminal = legacy in ("completed", "failed", "cancelled")
        reached = min(d.reached_count(now - run.started), self._ok_checkpoints(d)) if run.dispatched else 0
        completed_at = int(run.started + d.timeline.terminal_offset) if terminal else None
        if self.dialect == "legacy":
            body: JSON = {
                "workflow_run_id": run.run_id,
                "workflow_definition_id": d.definition_id("legacy"),
                "workflow_name": d.name,
                "status": legacy,
                "started_at": int(run.started),
                "completed_at": completed_at,
            }
            names = [c.name for c in d.checkpoints[:reached]]
            if summary:
                body["step_count"] = len(names)
            else:
                body["checkpoints_reached"] = names
            body["output"] = dict(d.output or {}) if legacy == "completed" else None
            if legacy == "failed":
                # Not on the legacy page's field list; its workflow.failed webhook carries "error".
                body["error"] = d.failure_message
            return body
        steps = self._steps(run, reached, legacy == "failed")
        body = {
            "workflow_run_id": run.run_id,
            "workflow_name": d.name,
            "workflow_definition_id": d.definition_id("current"),
            "status": _CURRENT_OF[legacy],
            "started_at": int(run.started),
            "completed_at": completed_at,
        }
        if summary:
            body["step_count"] = len(steps)
        else:
            body["steps"] = steps
        return body

    def failure_reason(self, run: Run, now: float | None = None) -> str | None:
        """Why a failed run failed (its definition's ``failure_message``) and where; None otherwise.

        For the emulator's run page, which the provider's run link opens.
        """
        now = self.clock.now() if now is None else now
        if self.legacy_status(run, now) != "failed":
            return None
        d = run.definition
        ok = self._ok_checkpoints(d)
        where = f"after checkpoint {d.checkpoints[ok - 1].name}" if ok else "before reaching any checkpoint"
        step = f", at step {d.checkpoints[-1].name}" if d.checkpoints else ""
        return f"Failed {where}{step}: {d.failure_message}"

    def _steps(self, run: Run, reached: int, failed: bool) -> list[JSON]:
        d = run.definition
        offsets = d.timeline.reach_offsets
        count = reached + (1 if failed and d.checkpoints else 0)
        steps: list[JSON] = []
        for i in range(count):
            cp = d.checkpoints[i]
            begin = offsets[i - 1] if i else d.timeline.pending_until
            is_failure = failed and i == len(d.checkpoints) - 1
            steps.append(
                {
                    "step_id": f"cbwrs_{run.run_id[-24:]}{i:08x}",
                    "component_id": d.component_id(cp.name),
                    "component_name": cp.name,
                    "action_type": cp.action_type,
                    "status": "failed" if is_failure else "success",
                    "message": d.failure_message if is_failure else None,
                    "artifacts": [],
                    "created_at": int(run.started + begin),
                    "updated_at": int(run.started + offsets[i]),
                }
            )
        return steps

    def post_view(self, run: Run) -> JSON:
        """The 201 body of a run POST."""
        d = run.definition
        if self.dialect == "legacy":
            status = "pending" if d.timeline.pending_until > 0 else "running"
            return {
                "workflow_run_id": run.run_id,
                "workflow_definition_id": d.definition_id("legacy"),
                "workflow_name": d.name,
                "status": status,
                "started_at": int(run.started),
                "input": run.input,
            }
        return {
            "workflow_run_id": run.run_id,
            "workflow_name": d.name,
            "status": "started",
            "started_at": int(run.started),
            "input": run.input,
        }

    def list_runs(
        self,
        org_id: str,
        *,
        workflow_name: str | None,
        statuses: list[str] | None,
        created_after: int | None,
        created_before: int | None,
        limit: int,
        offset: int,
    ) -> JSON:
        with self.lock:
            now = self.clock.now()
            matches: list[Run] = []
            for run in reversed(self.runs_by_org[org_id]):
                started = int(run.started)
                if workflow_name is not None and run.definition.name != workflow_name:
                    continue
                if created_after is not None and started < created_after:
                    continue
                if created_before is not None and started > created_before:
                    continue
                if statuses and self.status(run, now) not in statuses:
                    continue
                matches.append(run)
            page = [self.run_view(r, now, summary=True) for r in matches[offset : offset + limit]]
            return {"data": page, "total": len(matches), "limit": limit, "offset": offset}

    # ------------------------------------------------------------------ webhook events

    def _events_for(self, run: Run) -> tuple[tuple[float, str, JSON], ...]:
        d = run.definition
        tl = d.timeline
        base: JSON = {"workflow_run_id": run.run_id}
        events: list[tuple[float, str, JSON]] = []
        if self.dialect == "legacy":
            for i in range(self._ok_checkpoints(d)):
                data = {
                    **base,
                    "workflow_name": d.name,
                    "checkpoint": d.checkpoints[i].name,
                    "status": "running",
                }
                events.append((tl.reach_offsets[i], "workflow.checkpoint", data))
            if not d.never_finishes and d.final_status == "completed":
                data = {
                    **base,
                    "workflow_name": d.name,
                    "status": "completed",
                    "output": dict(d.output or {}),
                }
                events.append((tl.terminal_offset, "workflow.completed", data))
            elif not d.never_finishes and d.final_status == "failed":
                data = {**base, "workflow_name": d.name, "status": "failed", "error": d.failure_message}
                events.append((tl.terminal_offset, "workflow.failed", data))
            return tuple(events)
        events.append((0.0, "WorkflowRun.Created", {**base, "input": run.input}))
        if not d.never_finishes:
            final = _CURRENT_OF[d.final_status]
            diffs = {"status": {"old_value": "started", "new_value": final}}
            events.append((tl.terminal_offset, "WorkflowRun.Updated", {**base, "field_diffs": diffs}))
            if final in ("completed", "failed"):
                events.append((tl.terminal_offset, f"WorkflowRun.{final.capitalize()}", dict(base)))
        return tuple(events)

    def due_events(self) -> list[DeliveryJob]:
        """Events whose time has come, matched to the enabled subscriptions of the run's org."""
        with self.lock:
            if not self._event_runs:
                return []
            now = self.clock.now()
            jobs: list[DeliveryJob] = []
            finished: list[str] = []
            for run in self._event_runs.values():
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
                del self._event_runs[run_id]
            for job in jobs:
                self.events[job.event_id] = job
            if self.webhook_controls.hold:
                self.webhook_controls.held.extend(jobs)
                return []
            return jobs

    def take_signing(self) -> SigningOverride | None:
        """The signing override for the next delivery attempt, if one is armed."""
        with self.lock:
            for override in self.webhook_controls.signing:
                override.remaining -= 1
                if override.remaining <= 0:
                    self.webhook_controls.signing.remove(override)
                return override
            return None

    def release_held(self, order: str | list[str] = "fifo") -> list[DeliveryJob]:
        """Stop holding deliveries; the held ones in ``order`` (``fifo``, ``reverse`` or event IDs).

        Held deliveries not named in an explicit list stay held for a later release.
        """
        with self.lock:
            controls = self.webhook_controls
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

    def webhook_view(self, sub: Subscription) -> JSON:
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
