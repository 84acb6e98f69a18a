"""Configuration of the Coverbase emulator: orgs, API keys, limits and workflow definitions.

Definitions come from YAML/JSON (``load_config``, in :mod:`.config_file`) or are built in Python.
Each definition is compiled once into a timeline, so a run's state is a pure function of its age:
that is what lets one process serve thousands of runs without a task per run.

The classes are plain frozen dataclasses. Their field types are also the schema of the config file:
pydantic validates a file's mappings against them (unknown keys, wrong types, unknown choices), with
``Strict`` numbers and flags so ``"5"`` or ``yes`` is an error rather than a guess. The rules that
involve several fields live in ``__post_init__``, so they hold for definitions built in Python too,
and an input schema is checked with ``jsonschema`` when the definition is made.

No Airflow imports, no client imports: this is an independent implementation of the server side.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Strict

from airflow_provider_coverbase.testing import input_schema

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

Dialect = Literal["legacy", "current"]
FinalStatus = Literal["completed", "failed", "cancelled"]
#: Legacy dialect: how a ``409 idempotency_conflict`` replay carries the original run.
ConflictShape = Literal["detail", "bare", "flat", "nested", "none"]
#: Where a 429 puts ``retry_after``.
RetryAfterPlacement = Literal["both", "header", "top_level", "detail", "string"]

DIALECTS: tuple[Dialect, ...] = ("legacy", "current")
FINAL_STATUSES: tuple[FinalStatus, ...] = ("completed", "failed", "cancelled")
CONFLICT_SHAPES: tuple[ConflictShape, ...] = ("detail", "bare", "flat", "nested", "none")
RETRY_AFTER_PLACEMENTS: tuple[RetryAfterPlacement, ...] = ("both", "header", "top_level", "detail", "string")

#: Field types for the file schema: a number, a whole number or a flag, never a string that looks like one.
Number = Annotated[float, Strict()]
Count = Annotated[int, Strict()]
Flag = Annotated[bool, Strict()]
#: Every config class rejects keys it does not have (a typo would otherwise be ignored silently).
_STRICT_KEYS = ConfigDict(extra="forbid")

#: Test-only keys of the two built-in orgs. Never real credentials.
DEFAULT_ORG1_KEY = "ak_test_5f0c2a9e8b7d4c1fa3e6b9d2c5f8a1e4"
DEFAULT_ORG2_KEY = "ak_test_9d3b7e1a4c6f8b2d5e0a3c7f1b4d8e6a"

#: V3 webhook retry schedule, in emulated seconds (scaled by the clock speed).
DEFAULT_WEBHOOK_RETRY_DELAYS: tuple[float, ...] = (4.0, 16.0, 64.0, 240.0, 240.0)


def legacy_retry_delays(first: float = 10.0, cap: float = 7200.0, window: float = 24 * 3600.0) -> tuple[float, ...]:
    """The legacy rule, "exponential backoff for 24 hours", as waits in emulated seconds.

    The page gives no numbers: waits double from ``first`` up to ``cap`` and stop once they add up
    to ``window`` (10 s, 20 s, ... 2 h: 21 retries over about 24 h with the defaults).
    """
    delays: list[float] = []
    wait = first
    while sum(delays) < window:
        delays.append(min(wait, cap))
        wait *= 2
    return tuple(delays)


#: Legacy (V0) webhook retry schedule, in emulated seconds.
LEGACY_WEBHOOK_RETRY_DELAYS: tuple[float, ...] = legacy_retry_delays()


#: A place in a configuration: keys and list indexes from the top, e.g. ``("workflows", 0, "checkpoints", 1)``.
ConfigPath = tuple[str | int, ...]


class ConfigError(ValueError):
    """The emulator configuration is malformed.

    ``path`` says where (keys and list indexes from the top), so :func:`load_config` can name the
    line of the file; ``message`` is what is wrong.
    """

    def __init__(self, message: str, path: ConfigPath = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """A named stage of a run, reached ``duration_seconds`` after the previous one.

    In a file, a checkpoint is a name or ``{name, duration_seconds, action_type}``.
    """

    __pydantic_config__ = _STRICT_KEYS

    name: str
    duration_seconds: Number = 1.0
    action_type: str = "custom"


def _checkpoint_by_name(raw: Any) -> Any:
    """A bare name in a file stands for ``{"name": name}``."""
    return {"name": raw} if isinstance(raw, str) else raw


@dataclass(frozen=True)
class Pause:
    """A paused phase (legacy ``paused`` status) right after ``after_checkpoint`` is reached."""

    __pydantic_config__ = _STRICT_KEYS

    after_checkpoint: str
    seconds: Number


@dataclass(frozen=True)
class Timeline:
    """Offsets (emulated seconds from the start) of everything that happens in a run."""

    pending_until: float
    reach_offsets: tuple[float, ...]
    pause_window: tuple[float, float] | None
    terminal_offset: float


@dataclass(frozen=True)
class WorkflowDefinition:
    """One workflow the emulator can run.

    ``final_status`` is reached after the last checkpoint unless ``never_finishes`` is set, in
    which case the run stays running/started forever (the current API's stalled runs). For a
    failed run the last checkpoint is the failing step. ``dispatch_fails`` makes the current
    dialect answer ``502 workflow_dispatch_failed`` after creating the run. ``org`` (an org's
    ``org_id`` or ``name``) makes the workflow belong to that org only: another org's key gets
    ``404 workflow_not_found`` for it. Without ``org`` every org has the workflow (the built-ins).
    ``input_schema`` is a JSON Schema (checked when the definition is made); the legacy dialect
    answers ``400 invalid_input`` for an input that does not match it.
    """

    __pydantic_config__ = _STRICT_KEYS

    name: str
    checkpoints: tuple[Annotated[Checkpoint, BeforeValidator(_checkpoint_by_name)], ...] = ()
    id: str | None = None
    input_schema: Mapping[str, Any] | None = None
    pending_seconds: Number = 0.0
    pause: Pause | None = None
    final_status: FinalStatus = "completed"
    output: Mapping[str, Any] | None = None
    failure_message: str = "Workflow step failed."
    never_finishes: Flag = False
    enabled: Flag = True
    dispatch_fails: Flag = False
    org: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a workflow definition needs a non-empty name")
        what = f"workflow {self.name!r}"
        if self.final_status not in FINAL_STATUSES:
            raise ConfigError(f"{what}: final_status must be one of {FINAL_STATUSES}")
        names = [c.name for c in self.checkpoints]
        if not all(names):
            raise ConfigError(f"{what}: every checkpoint needs a non-empty name")
        if len(set(names)) != len(names):
            raise ConfigError(f"{what}: checkpoint names must be unique")
        if any(c.duration_seconds < 0 for c in self.checkpoints) or self.pending_seconds < 0:
            raise ConfigError(f"{what}: durations must not be negative")
        if self.pause is not None and self.pause.after_checkpoint not in names:
            raise ConfigError(f"{what}: pause.after_checkpoint names no checkpoint")
        if self.input_schema is not None:
            problem = input_schema.schema_problem(self.input_schema)
            if problem is not None:
                raise ConfigError(f"{what}: input_schema is not a valid JSON Schema: {problem}")

    def definition_id(self, dialect: Dialect) -> str:
        """The definition ID in the dialect's format, stable for a given name."""
        if self.id:
            return self.id
        if dialect == "legacy":
            return "cbwfdef_" + _digest("def", self.name)[:16]
        return "cbwd_" + _digest("def", self.name)[:32]

    def component_id(self, checkpoint: str) -> str:
        return "cbwc_" + _digest("component", self.name, checkpoint)[:32]

    @cached_property
    def timeline(self) -> Timeline:
        t = self.pending_seconds
        reach: list[float] = []
        window: tuple[float, float] | None = None
        for cp in self.checkpoints:
            t += cp.duration_seconds
            reach.append(t)
            if self.pause is not None and self.pause.after_checkpoint == cp.name:
                window = (t, t + self.pause.seconds)
                t += self.pause.seconds
        return Timeline(self.pending_seconds, tuple(reach), window, t)

    @cached_property
    def input_validator(self) -> Validator:
        """The compiled validator of the run input (``{"type": "object"}`` without a schema)."""
        return input_schema.compile_validator(self.input_schema)

    def reached_count(self, elapsed: float) -> int:
        """How many checkpoints have been reached ``elapsed`` seconds into a run."""
        return bisect.bisect_right(self.timeline.reach_offsets, elapsed)

    @classmethod
    def from_dict(cls, raw: Any) -> WorkflowDefinition:
        """Build a definition from its YAML/JSON form; :class:`ConfigError` says what is wrong, and where."""
        from airflow_provider_coverbase.testing.config_file import validated

        return validated(cls, raw)


@dataclass(frozen=True)
class OrgConfig:
    """An org with its API key and optional limits (``None`` means unlimited).

    ``requests_per_window`` is a fixed-window budget over every authenticated ``/v1`` request;
    ``max_concurrent_runs`` caps the org's non-terminal runs.
    """

    __pydantic_config__ = _STRICT_KEYS

    org_id: str
    api_key: str
    name: str = ""
    requests_per_window: Count | None = None
    window_seconds: Number = 60.0
    max_concurrent_runs: Count | None = None


def default_orgs() -> tuple[OrgConfig, ...]:
    return (
        OrgConfig("cborg_" + _digest("org", "1")[:32], DEFAULT_ORG1_KEY, "Emulator Org One"),
        OrgConfig("cborg_" + _digest("org", "2")[:32], DEFAULT_ORG2_KEY, "Emulator Org Two"),
    )


def default_workflows() -> tuple[WorkflowDefinition, ...]:
    """The built-in definitions. Durations are short so a demo run finishes in seconds."""
    return (
        WorkflowDefinition(
            name="quarterly-privacy-sweep",
            checkpoints=(
                Checkpoint("vendors_selected", 1.0, "select_vendors"),
                Checkpoint("questionnaires_dispatched", 1.0, "send_questionnaire"),
                Checkpoint("responses_aggregated", 1.0, "aggregate_responses"),
                Checkpoint("report_delivered", 1.0, "deliver_report"),
            ),
            input_schema={
                "type": "object",
                "required": ["quarter", "vendor_filter"],
                "properties": {
                    "quarter": {"type": "string", "minLength": 1},
                    "vendor_filter": {"type": "object"},
                    "due_date": {"type": "string"},
                },
            },
            output={
                "vendors_processed": 38,
                "responses_received": 32,
                "report_url": "https://dashboard.coverbase.app/reports/cbrpt_emulator",
            },
        ),
        WorkflowDefinition(
            name="adhoc-campaign",
            checkpoints=(
                Checkpoint("campaign_sent", 0.5, "send_campaign"),
                Checkpoint("campaign_closed", 0.5),
            ),
            output={"recipients": 12},
        ),
        WorkflowDefinition(
            name="always-fails",
            checkpoints=(Checkpoint("vendors_selected", 0.5), Checkpoint("questionnaires_dispatched", 0.5)),
            final_status="failed",
            failure_message="Questionnaire template not found.",
        ),
        WorkflowDefinition(
            name="gets-cancelled",
            checkpoints=(Checkpoint("vendors_selected", 0.5),),
            final_status="cancelled",
        ),
        WorkflowDefinition(
            name="pending-then-paused",
            checkpoints=(Checkpoint("intake_received", 0.5), Checkpoint("approved", 0.5)),
            pending_seconds=0.5,
            pause=Pause("intake_received", 1.0),
            output={"approved": True},
        ),
        WorkflowDefinition(
            name="stalled-forever",
            checkpoints=(Checkpoint("vendors_selected", 0.5),),
            never_finishes=True,
        ),
        WorkflowDefinition(name="disabled-workflow", checkpoints=(Checkpoint("never", 1.0),), enabled=False),
        WorkflowDefinition(name="dispatch-fails", checkpoints=(Checkpoint("never", 1.0),), dispatch_fails=True),
        WorkflowDefinition(
            name="vendor sweep/eu",
            checkpoints=(Checkpoint("vendors_selected", 0.5), Checkpoint("report_delivered", 0.5)),
            output={"region": "eu"},
        ),
    )


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything an emulator instance starts from; ``reset()`` returns to this state.

    Answer variants, for testing a client against every plausible reading of the legacy page
    (defaults: the emulator's usual answers):

    - ``conflict_shape`` (legacy): how a ``409 idempotency_conflict`` replay carries the original
      run. ``detail``: the ``detail`` error envelope plus the run's fields at the top level;
      ``bare``: the original body as it was; ``flat``: ``{"code", "message", "workflow_run_id"}``;
      ``nested``: the run under ``detail.original_response``; ``none``: no run at all.
    - ``retry_after``: where a 429 says how long to wait. ``both``: ``Retry-After`` header and a
      top-level ``retry_after`` number; ``header``: header only; ``top_level``: top-level number
      only; ``detail``: a number under ``detail`` only; ``string``: a top-level numeric string only.
    - ``sparse_get_bodies``: ``GET /v1/workflows/runs/{id}`` omits ``workflow_run_id`` and
      ``workflow_name`` (the legacy page's field list has no ``workflow_run_id``).
    - ``legacy_v2_endpoints``: the legacy dialect also serves the V2+ endpoints (list runs);
      otherwise they answer 404 there, as the legacy contract has no such endpoints.
    """

    __pydantic_config__ = _STRICT_KEYS

    workflows: tuple[WorkflowDefinition, ...] = field(default_factory=default_workflows)
    orgs: tuple[OrgConfig, ...] = field(default_factory=default_orgs)
    speed: Number = 1.0
    idempotency_ttl_seconds: Number = 24 * 3600.0
    #: Waits between delivery attempts in the current dialect (V3: 6 attempts in all).
    webhook_retry_delays: tuple[Number, ...] = DEFAULT_WEBHOOK_RETRY_DELAYS
    #: Waits between delivery attempts in the legacy dialect (exponential backoff for 24 hours).
    legacy_webhook_retry_delays: tuple[Number, ...] = LEGACY_WEBHOOK_RETRY_DELAYS
    webhook_timeout_seconds: Number = 10.0
    request_log_limit: Count = 10_000
    conflict_shape: ConflictShape = "detail"
    retry_after: RetryAfterPlacement = "both"
    sparse_get_bodies: Flag = False
    legacy_v2_endpoints: Flag = False

    def __post_init__(self) -> None:
        if len(self.orgs) < 1:
            raise ConfigError("at least one org is required")
        keys = [o.api_key for o in self.orgs]
        if len(set(keys)) != len(keys):
            raise ConfigError("API keys must be unique")
        if self.speed < 0:
            raise ConfigError("speed must not be negative")
        org_refs = {o.org_id for o in self.orgs} | {o.name for o in self.orgs if o.name}
        for workflow in self.workflows:
            if workflow.org is not None and workflow.org not in org_refs:
                raise ConfigError(f"workflow {workflow.name!r}: org {workflow.org!r} is no configured org_id or name")

    @classmethod
    def from_dict(cls, raw: Any) -> EmulatorConfig:
        """Build from a mapping of this class's fields, plus ``include_defaults``.

        Custom workflows are added to the built-in ones unless ``include_defaults`` is false; a
        custom workflow replaces a built-in of the same name; without ``orgs`` the two built-in orgs
        are used. :class:`ConfigError` says what is wrong, and where.
        """
        from airflow_provider_coverbase.testing.config_file import config_from_dict

        return config_from_dict(raw)


def load_config(path: str | Path) -> EmulatorConfig:
    """Read an ``EmulatorConfig`` from a ``.yaml``/``.yml`` or ``.json`` file (see :mod:`.config_file`)."""
    from airflow_provider_coverbase.testing.config_file import load_config_file

    return load_config_file(path)
