"""Fan-out: one Coverbase sweep per vendor tier, as mapped tasks that run side by side (``@dag`` style)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from airflow.sdk import dag

from airflow_provider_coverbase.operators.coverbase import CoverbaseRunWorkflowOperator
from airflow_provider_coverbase.quarters import FILTERS, QUARTER, QUARTERLY

POLL_INTERVAL = float(os.environ.get("COVERBASE_POLL_INTERVAL", "60"))


@dag(
    description="One Coverbase privacy sweep per vendor tier, mapped",
    schedule=QUARTERLY,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["coverbase", "vendor-risk"],
    user_defined_filters=FILTERS,
)
def coverbase_vendor_tier_fanout() -> None:
    """One Coverbase privacy sweep per vendor tier, as mapped tasks.

    Each mapped task instance gets its own derived idempotency key (the map index is part of it), so
    every tier starts exactly one run, and a retry of one tier reattaches to that tier's run.
    """
    CoverbaseRunWorkflowOperator.partial(
        task_id="sweep_tier",
        workflow_name="quarterly-privacy-sweep",
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=timedelta(days=7),
        max_active_tis_per_dag=2,
    ).expand(
        input=[{"quarter": QUARTER, "vendor_filter": {"tier": tier, "tags": ["processes_pii"]}} for tier in (1, 2, 3)]
    )


dag = coverbase_vendor_tier_fanout()
