"""Pydantic models of what the Coverbase Workflows API returns. No Airflow imports here.

The API exists in two contracts (see the README): the legacy one (``running``/``cancelled``,
``checkpoints_reached``, ``output``) and the current one (``started``/``canceled``, ``steps[]``). The
models read both: unknown fields are kept, statuses are normalised to one vocabulary, and a status
this code has never seen is kept as is and treated as "not finished" instead of crashing.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

__all__ = [
    "TERMINAL_STATUSES",
    "UNSUCCESSFUL_STATUSES",
    "WorkflowRun",
    "WorkflowRunList",
    "WorkflowRunStatus",
    "WorkflowRunStep",
]


class WorkflowRunStatus(enum.StrEnum):
    """A run's status, in the legacy vocabulary (the provider's primary contract).

    The current API's ``started`` reads as :attr:`RUNNING` and ``canceled`` as :attr:`CANCELLED`. Any
    other value becomes a pseudo-member whose value is the raw string: it compares equal to that
    string, is never terminal, and never raises.
    """

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def _missing_(cls, value: object) -> WorkflowRunStatus:
        if not isinstance(value, str):
            value = str(value)
        normalised = value.strip().lower()
        alias = _ALIASES.get(normalised)
        if alias is not None:
            return alias
        for member in cls:
            if member.value == normalised:
                return member
        # Unknown to us: keep it, as a pseudo-member that is not terminal.
        pseudo = str.__new__(cls, value)
        pseudo._name_ = "UNKNOWN"
        pseudo._value_ = value
        return pseudo

    @property
    def is_terminal(self) -> bool:
        """True once the run can no longer change: completed, failed or cancelled."""
        return self in TERMINAL_STATUSES

    @property
    def is_known(self) -> bool:
        """False for a status value this code does not know."""
        return self._name_ != "UNKNOWN"


_ALIASES: dict[str, WorkflowRunStatus] = {
    "started": WorkflowRunStatus.RUNNING,
    "canceled": WorkflowRunStatus.CANCELLED,
}

#: Statuses after which a run never changes again.
TERMINAL_STATUSES = frozenset({WorkflowRunStatus.COMPLETED, WorkflowRunStatus.FAILED, WorkflowRunStatus.CANCELLED})
#: The terminal statuses of a run that did not complete: the task fails, and its next try starts anew.
UNSUCCESSFUL_STATUSES = TERMINAL_STATUSES - {WorkflowRunStatus.COMPLETED}


class _ApiModel(BaseModel):
    # Tolerant reader: new server fields never break the client, and are kept.
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class WorkflowRunStep(_ApiModel):
    """One step of a run (current API, ``steps[]``)."""

    step_id: str | None = None
    component_id: str | None = None
    component_name: str | None = None
    action_type: str | None = None
    #: ``success``, ``failed``, ``skipped`` or ``None`` (no result recorded yet).
    status: str | None = None
    #: Set on failure (the error) and on skip (the reason).
    message: str | None = None
    artifacts: list[dict[str, Any]] = Field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def label(self) -> str:
        """A human name for the step: component name, else action type, else step id."""
        return self.component_name or self.action_type or self.step_id or "unnamed step"


class WorkflowRun(_ApiModel):
    """A workflow run, as returned by the run, get and list endpoints of either API contract.

    Timestamps are timezone-aware UTC datetimes (the API sends Unix seconds). The legacy page's
    field list for ``GET /v1/workflows/runs/{id}`` has no ``workflow_run_id``: validated with the
    context ``{"workflow_run_id": ...}`` (the client passes the id it asked for), a body without it
    gets that id instead of failing. ``workflow_name`` may be missing or ``null``.
    """

    workflow_run_id: str
    workflow_name: str | None = None
    workflow_definition_id: str | None = None
    status: WorkflowRunStatus
    #: The status exactly as the API spelled it (``started``, ``canceled``, ...).
    api_status: str
    started_at: datetime | None = None
    completed_at: datetime | None = None
    input: dict[str, Any] | None = None
    #: Legacy API only: the workflow's output object.
    output: Any = None
    #: Legacy API only: names of the checkpoints reached so far.
    checkpoints_reached: list[str] | None = None
    #: Current API only: the steps so far (absent from list items and from the legacy API).
    steps: list[WorkflowRunStep] | None = None
    #: Current API list items only.
    step_count: int | None = None
    _replayed: bool = PrivateAttr(default=False)

    @model_validator(mode="before")
    @classmethod
    def _keep_api_status(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict):
            requested = info.context.get("workflow_run_id") if isinstance(info.context, dict) else None
            if requested and not data.get("workflow_run_id"):
                data = {**data, "workflow_run_id": requested}
            if "api_status" not in data and "status" in data:
                data = {**data, "api_status": str(data["status"])}
        return data

    @field_validator("status", mode="before")
    @classmethod
    def _normalise_status(cls, value: Any) -> WorkflowRunStatus:
        if isinstance(value, WorkflowRunStatus):
            return value
        return WorkflowRunStatus(str(value))

    @property
    def is_terminal(self) -> bool:
        """True once the run is completed, failed or cancelled."""
        return self.status.is_terminal

    @property
    def checkpoints(self) -> list[str]:
        """Checkpoints reached, in order.

        Legacy API: ``checkpoints_reached``. Current API: the label of every step that succeeded
        (a step with no result yet, a skipped or a failed step is not a checkpoint reached).
        """
        if self.checkpoints_reached is not None:
            return list(self.checkpoints_reached)
        return [step.label for step in self.steps or () if step.status == "success"]

    @property
    def failed_step(self) -> WorkflowRunStep | None:
        """The last step that failed, if any (current API); its ``message`` is the error."""
        failed = [step for step in self.steps or () if step.status == "failed"]
        return failed[-1] if failed else None

    @property
    def failure_reason(self) -> str | None:
        """Why the run failed or was cancelled, when the API says so; ``None`` otherwise.

        Current API: the failed step's message. Legacy API (the page documents no such field, so
        any of them is read): ``error`` (a string, or an object with ``message``), ``error_message``,
        ``failure_reason``, ``failure_message``, ``reason``, ``status_reason`` or ``message``.
        """
        extra = self.model_extra or {}
        for key in _REASON_FIELDS:
            value = extra.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value.get("detail") or value.get("code")
            if isinstance(value, str) and value.strip():
                return value.strip()
        failed = self.failed_step
        if failed is not None and failed.message:
            return failed.message
        return None

    @property
    def replayed(self) -> bool:
        """True when the API answered the call that returned this run with a replay of a run an
        *earlier* call started under the same idempotency key (a legacy 409 on the call's first
        attempt). False otherwise, including every current-API replay: its verbatim 201 cannot be
        told apart from a new run.
        """
        return self._replayed

    def to_summary(self) -> dict[str, Any]:
        """The run as JSON-safe data for XCom and trigger events: id, name, status, checkpoints, steps, output
        and the failure reason."""
        return {
            "workflow_run_id": self.workflow_run_id,
            "workflow_name": self.workflow_name,
            "workflow_definition_id": self.workflow_definition_id,
            "status": self.status.value,
            "api_status": self.api_status,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "checkpoints": self.checkpoints,
            "steps": [step.model_dump(mode="json") for step in self.steps or ()],
            "output": self.output,
            "failure_reason": self.failure_reason,
        }


_REASON_FIELDS = (
    "error",
    "error_message",
    "failure_reason",
    "failure_message",
    "reason",
    "status_reason",
    "message",
)


class WorkflowRunList(_ApiModel):
    """One page of ``GET /v1/workflows/runs`` (current API; the list key is ``data``)."""

    data: list[WorkflowRun]
    total: int
    limit: int
    offset: int

    @property
    def has_more(self) -> bool:
        """Whether another page follows this one."""
        return self.offset + len(self.data) < self.total
