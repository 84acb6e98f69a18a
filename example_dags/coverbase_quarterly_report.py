"""Quarterly report: runs when Coverbase says the quarterly privacy sweep completed, not on a clock.

The DAG is scheduled on the sweep's completion asset. Either path puts events on it: Coverbase's
completion webhook, received by the provider's receiver in the Airflow API server, or the pull
watcher in the triggerer when the connection is listed in ``[coverbase] pull_connections`` (see the
README's "Webhooks and event-driven DAGs" and "Pull path"). That works for sweeps started anywhere:
by ``coverbase_quarterly_vendor_sweep``, from the Coverbase dashboard, or by another system.

Airflow starts one DAG run per *batch* of events: sweeps that finish close together, or while the
scheduler or the triggerer is down, arrive in one run. So ``sweep_runs`` reads every event of the
batch (``triggering_coverbase_events``, the same on both paths), logs how many runs the batch held,
and ``build_report`` is mapped over them: one report per finished sweep run. Each report reads the
run from the API (an event's ``output`` is size-capped, and the current API's deliveries carry
none). A manual run can name a run with the ``workflow_run_id`` param.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import DAG, Param, get_current_context, task

from airflow_provider_coverbase.assets import coverbase_workflow_asset, triggering_coverbase_events
from airflow_provider_coverbase.hooks.coverbase import CoverbaseHook

log = logging.getLogger(__name__)

# Built the same way in every DAG file that uses it: the deployment decides webhooks or pull.
SWEEP_COMPLETED = coverbase_workflow_asset("quarterly-privacy-sweep", conn_id="coverbase_default")

with DAG(
    dag_id="coverbase_quarterly_report",
    description="Build the quarterly vendor-risk report for each Coverbase privacy sweep that completes",
    schedule=[SWEEP_COMPLETED],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["coverbase", "vendor-risk", "event-driven"],
    params={"workflow_run_id": Param(None, type=["null", "string"], description="For a manual run: the sweep run")},
    doc_md=__doc__,
) as dag:

    @task
    def sweep_runs() -> list[dict[str, Any]]:
        """The finished sweep runs of this DAG run's batch of events (or the param's run), oldest first."""
        events = triggering_coverbase_events(SWEEP_COMPLETED)
        if events:
            log.info(
                "This DAG run handles a batch of %d finished sweep run(s): %s",
                len(events),
                ", ".join(f"{e.workflow_run_id} ({e.event_id}, by {e.source})" for e in events),
            )
            return [{"workflow_run_id": e.workflow_run_id, "event_id": e.event_id} for e in events]
        run_id = get_current_context()["params"]["workflow_run_id"]
        if not run_id:
            raise ValueError(
                "no sweep completion event triggered this run: pass the sweep's workflow_run_id as the "
                "'workflow_run_id' param, or let Coverbase's webhook (or the pull watcher) trigger the DAG"
            )
        log.info("Manual run: a batch of 1 sweep run (%s)", run_id)
        return [{"workflow_run_id": run_id, "event_id": None}]

    @task
    def build_report(sweep: dict[str, Any]) -> dict[str, Any]:
        """Summarise one completed sweep run, read from the API."""
        hook = CoverbaseHook("coverbase_default")
        try:
            run = hook.get_workflow_run(sweep["workflow_run_id"])
        finally:
            hook.close()
        summary = {
            "workflow_run_id": run.workflow_run_id,
            "event_id": sweep["event_id"],
            "workflow_name": run.workflow_name,
            "status": str(run.status),
            "completed_at": run.completed_at.isoformat() if run.completed_at else None,
            "output": run.output,
        }
        log.info("Quarterly report built from sweep run %s: %s", run.workflow_run_id, summary)
        return summary

    build_report.expand(sweep=sweep_runs())
