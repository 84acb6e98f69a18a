"""Quarterly privacy sweep: every quarter, ask Coverbase to review the tier-1 vendors that process PII.

The input is built from the data interval (the quarter's label and a due date 30 days after it ends;
a manual run, which has no data interval in Airflow 3, sweeps the quarter it is triggered in). The
idempotency key is one per quarter, so the quarter's sweep starts at most once in Coverbase's 24-hour
idempotency window however often the task is retried or cleared. The task waits in the
triggerer (deferrable), not in a worker slot, and logs each checkpoint as Coverbase reaches it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_coverbase.operators.coverbase import CoverbaseRunWorkflowOperator
from airflow_provider_coverbase.quarters import FILTERS, QUARTER, QUARTER_DUE_DATE, QUARTERLY

# Seconds between status checks. The demo and the tests shorten it; a minute suits real sweeps.
POLL_INTERVAL = float(os.environ.get("COVERBASE_POLL_INTERVAL", "60"))

with DAG(
    dag_id="coverbase_quarterly_vendor_sweep",
    description="Quarterly Coverbase privacy sweep of tier-1 vendors that process PII",
    schedule=QUARTERLY,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["coverbase", "vendor-risk"],
    user_defined_filters=FILTERS,
    doc_md=__doc__,
) as dag:
    CoverbaseRunWorkflowOperator(
        task_id="run_quarterly_privacy_sweep",
        workflow_name="quarterly-privacy-sweep",
        input={
            "quarter": QUARTER,
            "due_date": QUARTER_DUE_DATE,
            "vendor_filter": {"tags": ["processes_pii"], "tier": 1},
        },
        idempotency_key=f"quarterly-privacy-sweep-{QUARTER}",
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=timedelta(days=7),
    )
