"""Quarterly report: runs when Coverbase says the quarterly privacy sweep completed, not on a clock.

The DAG is scheduled on the sweep's completion asset. Coverbase's ``workflow.completed`` webhook
(received by the provider's receiver in the Airflow API server, see the README's "Webhooks and
event-driven DAGs") becomes an event on that asset, and the scheduler starts this DAG. That works for
sweeps started anywhere: by ``coverbase_quarterly_vendor_sweep``, from the Coverbase dashboard, or by
another system. The task reads which run completed from the asset event, reads the run itself from
the API (the event's ``output`` is size-capped, and the current API's deliveries carry none), and
builds the report's summary. A manual run can name a run with the ``workflow_run_id`` param.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import DAG, Param, get_current_context, task

from airflow_provider_coverbase.assets import coverbase_workflow_asset
from airflow_provider_coverbase.hooks.coverbase import CoverbaseHook

SWEEP_COMPLETED = coverbase_workflow_asset("quarterly-privacy-sweep", conn_id="coverbase_default")

with DAG(
    dag_id="coverbase_quarterly_report",
    description="Build the quarterly vendor-risk report when the Coverbase privacy sweep completes",
    schedule=[SWEEP_COMPLETED],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["coverbase", "vendor-risk", "event-driven"],
    params={"workflow_run_id": Param(None, type=["null", "string"], description="For a manual run: the sweep run")},
    doc_md=__doc__,
) as dag:

    @task
    def build_report() -> dict[str, Any]:
        """Summarise the sweep run that completed (the newest completion event, or the param)."""
        context = get_current_context()
        events = context["triggering_asset_events"].get(SWEEP_COMPLETED, [])
        if events:
            event = events[-1].extra
            print(f"Triggered by Coverbase event {event['event_id']} ({event['event_type']})")
            run_id = event["workflow_run_id"]
        else:
            run_id = context["params"]["workflow_run_id"]
            if not run_id:
                raise ValueError(
                    "no sweep completion event triggered this run: pass the sweep's workflow_run_id as the "
                    "'workflow_run_id' param, or let Coverbase's webhook trigger the DAG"
                )
        hook = CoverbaseHook("coverbase_default")
        try:
            run = hook.get_workflow_run(run_id)
        finally:
            hook.close()
        summary = {
            "workflow_run_id": run.workflow_run_id,
            "workflow_name": run.workflow_name,
            "status": str(run.status),
            "completed_at": run.completed_at.isoformat() if run.completed_at else None,
            "output": run.output,
        }
        print(f"Quarterly report built from sweep run {run.workflow_run_id}: {summary}")
        return summary

    build_report()
