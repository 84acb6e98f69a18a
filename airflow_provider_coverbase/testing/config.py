"""Configuration of the Coverbase emulator: orgs, API keys, limits and workflow definitions.

Definitions come from YAML/JSON (``load_config``) or are built in Python. Each definition is
compiled once into a timeline, so a run's state is a pure function of its age: that is what lets
one process serve thousands of runs without a task per run.

No Airflow imports, no client imports: this is an independent implementation of the server side.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml

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

    def within(self, *prefix: str | int) -> ConfigError:
        """The same error, one level down: ``prefix`` is where the failing part sits."""
        return ConfigError(self.message, (*prefix, *self.path))


def _check_keys(raw: Mapping[str, Any], known: Sequence[str], what: str) -> None:
    """Reject keys a part of the config does not have (a typo would otherwise be ignored silently)."""
    for key in raw:
        if key not in known:
            raise ConfigError(f"unknown key {key!r} in {what} (valid: {', '.join(sorted(known))})", (key,))


def _mapping(raw: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{what} must be a mapping, got {raw!r}")
    return raw


def _number(raw: Mapping[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key} must be a number, got {value!r}", (key,))
    return float(value)


def _check_numbers(cls: Any, raw: Mapping[str, Any]) -> None:
    """Values of the dataclass's number fields (``float``, ``int``, optionally ``None``) must be numbers."""
    for f in fields(cls):
        kind = str(f.type)
        if f.name in raw and kind.split(" | ")[0] in ("float", "int"):
            if raw[f.name] is None and "None" in kind:
                continue
            _number(raw, f.name, 0.0)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """A named stage of a run, reached ``duration_seconds`` after the previous one."""

    name: str
    duration_seconds: float = 1.0
    action_type: str = "custom"

    @classmethod
    def from_config(cls, raw: Any, workflow: str) -> Checkpoint:
        """A checkpoint from its config form: a name, or ``{name, duration_seconds, action_type}``."""
        if isinstance(raw, str):
            return cls(raw)
        item = _mapping(raw, f"a checkpoint of {workflow}")
        _check_keys(item, [f.name for f in fields(cls)], f"a checkpoint of {workflow}")
        if not isinstance(item.get("name"), str) or not item["name"]:
            raise ConfigError(f"a checkpoint of {workflow} needs a name")
        return cls(item["name"], _number(item, "duration_seconds", 1.0), str(item.get("action_type", "custom")))


@dataclass(frozen=True)
class Pause:
    """A paused phase (legacy ``paused`` status) right after ``after_checkpoint`` is reached."""

    after_checkpoint: str
    seconds: float

    @classmethod
    def from_config(cls, raw: Any, workflow: str) -> Pause:
        """A pause from its config form ``{after_checkpoint, seconds}``."""
        item = _mapping(raw, f"the pause of {workflow}")
        _check_keys(item, ["after_checkpoint", "seconds"], f"the pause of {workflow}")
        if "after_checkpoint" not in item or "seconds" not in item:
            raise ConfigError(f"the pause of {workflow} needs after_checkpoint and seconds")
        return cls(str(item["after_checkpoint"]), _number(item, "seconds", 0.0))


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
    """

    name: str
    checkpoints: tuple[Checkpoint, ...] = ()
    id: str | None = None
    input_schema: Mapping[str, Any] | None = None
    pending_seconds: float = 0.0
    pause: Pause | None = None
    final_status: FinalStatus = "completed"
    output: Mapping[str, Any] | None = None
    failure_message: str = "Workflow step failed."
    never_finishes: bool = False
    enabled: bool = True
    dispatch_fails: bool = False
    org: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a workflow definition needs a non-empty name")
        if self.final_status not in FINAL_STATUSES:
            raise ConfigError(f"workflow {self.name!r}: final_status must be one of {FINAL_STATUSES}")
        names = [c.name for c in self.checkpoints]
        if len(set(names)) != len(names):
            raise ConfigError(f"workflow {self.name!r}: checkpoint names must be unique")
        if any(c.duration_seconds < 0 for c in self.checkpoints) or self.pending_seconds < 0:
            raise ConfigError(f"workflow {self.name!r}: durations must not be negative")
        if self.pause is not None and self.pause.after_checkpoint not in names:
            raise ConfigError(f"workflow {self.name!r}: pause.after_checkpoint names no checkpoint")

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

    def reached_count(self, elapsed: float) -> int:
        """How many checkpoints have been reached ``elapsed`` seconds into a run."""
        return bisect.bisect_right(self.timeline.reach_offsets, elapsed)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> WorkflowDefinition:
        """Build a definition from its YAML/JSON form (see the module docstring for keys)."""
        data = dict(_mapping(raw, "a workflow"))
        known = {
            "name",
            "checkpoints",
            "id",
            "input_schema",
            "pending_seconds",
            "pause",
            "final_status",
            "output",
            "failure_message",
            "never_finishes",
            "enabled",
            "dispatch_fails",
            "org",
        }
        name = data.get("name")
        what = f"workflow {name!r}" if name else "a workflow"
        _check_keys(data, sorted(known), what)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{what} needs a non-empty name")
        checkpoints: list[Checkpoint] = []
        for index, item in enumerate(data.pop("checkpoints", None) or []):
            try:
                checkpoints.append(Checkpoint.from_config(item, what))
            except ConfigError as exc:
                raise exc.within("checkpoints", index) from None
        pause_raw = data.pop("pause", None)
        try:
            pause = Pause.from_config(pause_raw, what) if pause_raw is not None else None
        except ConfigError as exc:
            raise exc.within("pause") from None
        _check_numbers(cls, data)
        return cls(checkpoints=tuple(checkpoints), pause=pause, **data)


@dataclass(frozen=True)
class OrgConfig:
    """An org with its API key and optional limits (``None`` means unlimited).

    ``requests_per_window`` is a fixed-window budget over every authenticated ``/v1`` request;
    ``max_concurrent_runs`` caps the org's non-terminal runs.
    """

    org_id: str
    api_key: str
    name: str = ""
    requests_per_window: int | None = None
    window_seconds: float = 60.0
    max_concurrent_runs: int | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> OrgConfig:
        data = _mapping(raw, "an org")
        _check_keys(data, [f.name for f in fields(cls)], "an org")
        missing = [key for key in ("org_id", "api_key") if key not in data]
        if missing:
            raise ConfigError(f"an org needs {' and '.join(missing)}")
        _check_numbers(cls, data)
        return cls(**dict(data))


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

    workflows: tuple[WorkflowDefinition, ...] = field(default_factory=default_workflows)
    orgs: tuple[OrgConfig, ...] = field(default_factory=default_orgs)
    speed: float = 1.0
    idempotency_ttl_seconds: float = 24 * 3600.0
    #: Waits between delivery attempts in the current dialect (V3: 6 attempts in all).
    webhook_retry_delays: tuple[float, ...] = DEFAULT_WEBHOOK_RETRY_DELAYS
    #: Waits between delivery attempts in the legacy dialect (exponential backoff for 24 hours).
    legacy_webhook_retry_delays: tuple[float, ...] = LEGACY_WEBHOOK_RETRY_DELAYS
    webhook_timeout_seconds: float = 10.0
    request_log_limit: int = 10_000
    conflict_shape: ConflictShape = "detail"
    retry_after: RetryAfterPlacement = "both"
    sparse_get_bodies: bool = False
    legacy_v2_endpoints: bool = False

    def __post_init__(self) -> None:
        if len(self.orgs) < 1:
            raise ConfigError("at least one org is required")
        keys = [o.api_key for o in self.orgs]
        if len(set(keys)) != len(keys):
            raise ConfigError("API keys must be unique")
        if self.speed < 0:
            raise ConfigError("speed must not be negative")
        check_variants(conflict_shape=self.conflict_shape, retry_after=self.retry_after)
        org_refs = {o.org_id for o in self.orgs} | {o.name for o in self.orgs if o.name}
        for workflow in self.workflows:
            if workflow.org is not None and workflow.org not in org_refs:
                raise ConfigError(f"workflow {workflow.name!r}: org {workflow.org!r} is no configured org_id or name")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> EmulatorConfig:
        """Build from a mapping with optional keys ``workflows``, ``orgs``, ``include_defaults``,
        ``speed``, ``idempotency_ttl_seconds``, ``webhook_retry_delays``, ``legacy_webhook_retry_delays``,
        ``webhook_timeout_seconds``, ``request_log_limit``, ``conflict_shape``, ``retry_after``,
        ``sparse_get_bodies``, ``legacy_v2_endpoints``. Custom workflows are added to the built-in ones unless
        ``include_defaults`` is false; a custom workflow replaces a built-in of the same name."""
        data = dict(_mapping(raw, "the configuration"))
        _check_keys(data, [f.name for f in fields(cls)] + ["include_defaults"], "the configuration")
        include_defaults = bool(data.pop("include_defaults", True))
        custom = [
            _within(WorkflowDefinition.from_dict, item, "workflows", index)
            for index, item in enumerate(_sequence(data.pop("workflows", None), "workflows"))
        ]
        base = list(default_workflows()) if include_defaults else []
        names = {w.name for w in custom}
        workflows = tuple([w for w in base if w.name not in names] + custom)
        orgs_raw = _sequence(data.pop("orgs", None), "orgs")
        orgs = (
            tuple(_within(OrgConfig.from_dict, item, "orgs", index) for index, item in enumerate(orgs_raw))
            if orgs_raw
            else default_orgs()
        )
        for name in ("webhook_retry_delays", "legacy_webhook_retry_delays"):
            if name in data:
                delays = _sequence(data[name], name)
                data[name] = tuple(_number({name: x}, name, 0.0) for x in delays)
        _check_numbers(cls, data)
        return cls(workflows=workflows, orgs=orgs, **data)


def _sequence(raw: Any, key: str) -> Sequence[Any]:
    if raw is None:
        return ()
    if isinstance(raw, str) or not isinstance(raw, Sequence):
        raise ConfigError(f"{key} must be a list, got {raw!r}", (key,))
    return raw


def _within(build: Any, raw: Any, *path: str | int) -> Any:
    """``build(raw)``, with any error located at ``path`` (and a wrong value type reported, not raised)."""
    try:
        return build(raw)
    except ConfigError as exc:
        raise exc.within(*path) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc), path) from None


def check_variants(*, conflict_shape: str | None = None, retry_after: str | None = None) -> None:
    """Raise :class:`ConfigError` for an unknown answer variant (see :class:`EmulatorConfig`)."""
    if conflict_shape is not None and conflict_shape not in CONFLICT_SHAPES:
        raise ConfigError(f"conflict_shape must be one of {CONFLICT_SHAPES}, got {conflict_shape!r}")
    if retry_after is not None and retry_after not in RETRY_AFTER_PLACEMENTS:
        raise ConfigError(f"retry_after must be one of {RETRY_AFTER_PLACEMENTS}, got {retry_after!r}")


def load_config(path: str | Path) -> EmulatorConfig:
    """Read an ``EmulatorConfig`` from a ``.yaml``/``.yml`` or ``.json`` file.

    A top-level list is taken as the list of workflows. Any problem (unreadable file, bad syntax, an
    unknown key, a wrong value) raises :class:`ConfigError` whose message is one line naming the
    file, the line and what is wrong, e.g. ``workflows.yaml:9: unknown key 'duration_secs' in a
    checkpoint of workflow 'nightly' (valid: action_type, duration_seconds, name)``.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc})") from None
    try:
        raw: Any = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if raw is None:
        raw = {}
    if isinstance(raw, list):
        raw = {"workflows": raw}
        prefix: ConfigPath = ("workflows",)
    else:
        prefix = ()
    try:
        if not isinstance(raw, Mapping):
            raise ConfigError("expected a mapping or a list of workflows")
        return EmulatorConfig.from_dict(raw)
    except ConfigError as exc:
        line = _line_of(text, exc.path[len(prefix) :] if exc.path[: len(prefix)] == prefix else exc.path)
        raise ConfigError(f"{path}:{line}: {exc.message}" if line else f"{path}: {exc.message}", exc.path) from None


def _line_of(text: str, path: ConfigPath) -> int | None:
    """The 1-based line of the deepest node of ``path`` found in the YAML (or JSON) ``text``."""
    try:
        node: Any = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line: int = node.start_mark.line + 1
    for step in path:
        child: Any = None
        if isinstance(node, yaml.MappingNode) and isinstance(step, str):
            for key, value in node.value:
                if key.value == step:
                    child = key if value is None else value
                    line = key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            child = node.value[step]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
