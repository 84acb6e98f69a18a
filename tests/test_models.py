"""Model parsing of both API contracts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from airflow_provider_coverbase.models import TERMINAL_STATUSES, WorkflowRun, WorkflowRunStatus


@pytest.mark.parametrize(
    ("raw", "status", "terminal"),
    [
        ("pending", WorkflowRunStatus.PENDING, False),
        ("running", WorkflowRunStatus.RUNNING, False),
        ("started", WorkflowRunStatus.RUNNING, False),
        ("paused", WorkflowRunStatus.PAUSED, False),
        ("completed", WorkflowRunStatus.COMPLETED, True),
        ("failed", WorkflowRunStatus.FAILED, True),
        ("cancelled", WorkflowRunStatus.CANCELLED, True),
        ("canceled", WorkflowRunStatus.CANCELLED, True),
        ("Completed", WorkflowRunStatus.COMPLETED, True),
    ],
)
def test_status_vocabulary(raw: str, status: WorkflowRunStatus, terminal: bool) -> None:
    parsed = WorkflowRun.model_validate({"workflow_run_id": "cbwr_1", "status": raw})
    assert parsed.status is status
    assert parsed.is_terminal is terminal
    assert parsed.api_status == raw


def test_unknown_status_never_crashes() -> None:
    run = WorkflowRun.model_validate({"workflow_run_id": "cbwr_1", "status": "stalled"})
    assert run.status == "stalled"
    assert run.status.value == "stalled"
    assert not run.status.is_known
    assert run.status not in TERMINAL_STATUSES
    assert run.to_summary()["status"] == "stalled"


def test_legacy_run() -> None:
    run = WorkflowRun.model_validate(
        {
            "workflow_run_id": "cbwfr_a8f2",
            "workflow_definition_id": "cbwfdef_1a2b",
            "workflow_name": "quarterly-privacy-sweep",
            "status": "completed",
            "started_at": 1746576000,
            "completed_at": 1746579600,
            "checkpoints_reached": ["vendors_selected", "report_delivered"],
            "output": {"vendors_processed": 38},
        }
    )
    assert run.started_at == datetime(2025, 5, 7, tzinfo=UTC)
    assert run.started_at.tzinfo is not None
    assert run.checkpoints == ["vendors_selected", "report_delivered"]
    assert run.failed_step is None
    summary = run.to_summary()
    assert summary["completed_at"] == "2025-05-07T01:00:00+00:00"
    assert summary["output"] == {"vendors_processed": 38}
    assert summary["steps"] == []


def test_current_run_derives_checkpoints_from_steps() -> None:
    run = WorkflowRun.model_validate(
        {
            "workflow_run_id": "cbwr_a8f2",
            "workflow_name": None,
            "status": "failed",
            "started_at": 1746576000,
            "completed_at": None,
            "steps": [
                {"step_id": "s1", "component_name": "Select vendors", "status": "success", "artifacts": []},
                {
                    "step_id": "s2",
                    "action_type": "send_questionnaire",
                    "status": "skipped",
                    "message": "none",
                },
                {"step_id": "s3", "status": None},
                {"step_id": "s4", "component_name": "Aggregate", "status": "failed", "message": "boom"},
            ],
            "brand_new_field": {"x": 1},
        }
    )
    assert run.checkpoints == ["Select vendors"]
    assert run.failed_step is not None and run.failed_step.label == "Aggregate"
    assert run.output is None
    assert run.model_extra == {"brand_new_field": {"x": 1}}
    assert [s["step_id"] for s in run.to_summary()["steps"]] == ["s1", "s2", "s3", "s4"]


@pytest.mark.parametrize(
    ("month", "label"),
    [(1, "2026-Q1"), (3, "2026-Q1"), (4, "2026-Q2"), (9, "2026-Q3"), (10, "2026-Q4"), (12, "2026-Q4")],
)
def test_quarter_label(month: int, label: str) -> None:
    from airflow_provider_coverbase.quarters import quarter_label

    assert quarter_label(datetime(2026, month, 15, tzinfo=UTC)) == label
