"""The fixed vocabulary of the Workflows API that the emulator speaks: statuses, event types, IDs.

No Airflow imports, no client imports.
"""

from __future__ import annotations

import uuid
from typing import Any

JSON = dict[str, Any]

LEGACY_STATUSES = ("pending", "running", "paused", "completed", "failed", "cancelled")
CURRENT_STATUSES = ("started", "completed", "canceled", "failed")
#: A legacy status as the current dialect names it.
CURRENT_OF = {
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
    """A fresh ID in Coverbase's form: ``prefix`` and 32 hex digits."""
    return f"{prefix}_{uuid.uuid4().hex}"
