"""Ad-hoc campaign: start a Coverbase workflow from the trigger form, then wait for it with a sensor.

Trigger it with a campaign name and vendor ids in the form. The operator starts the run and returns
at once (``wait_for_completion=False``); the sensor waits for the run id the operator pushed, in
reschedule mode, so it holds no worker slot between checks.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG, Param

from airflow_provider_coverbase.operators.coverbase import CoverbaseRunWorkflowOperator
from airflow_provider_coverbase.sensors.coverbase import CoverbaseWorkflowRunSensor

POLL_INTERVAL = float(os.environ.get("COVERBASE_POLL_INTERVAL", "60"))

with DAG(
    dag_id="coverbase_adhoc_campaign",
    description="Start an ad-hoc Coverbase campaign from the trigger form and wait for it",
    schedule=None,  # manual runs only: no start date or catch-up to set
    # Lets "{{ params.vendor_ids }}" render to a real list, not its string form.
    render_template_as_native_obj=True,
    params={
        "workflow_name": Param("adhoc-campaign", type="string", description="Coverbase workflow to run"),
        "campaign": Param("Q4 security attestation", type="string", description="Campaign title"),
        "vendor_ids": Param(
            ["cbvndr_e448ba62882143f3ba0c140bb2e30162"],
            type="array",
            items={"type": "string"},
            description="Vendors to include",
        ),
    },
    tags=["coverbase", "vendor-risk"],
    doc_md=__doc__,
) as dag:
    start = CoverbaseRunWorkflowOperator(
        task_id="start_campaign",
        workflow_name="{{ params.workflow_name }}",
        input={"campaign": "{{ params.campaign }}", "vendor_ids": "{{ params.vendor_ids }}"},
        wait_for_completion=False,
    )
    wait = CoverbaseWorkflowRunSensor(
        task_id="wait_for_campaign",
        workflow_run_id="{{ ti.xcom_pull(task_ids='start_campaign', key='workflow_run_id') }}",
        mode="reschedule",
        poke_interval=POLL_INTERVAL,
        timeout=timedelta(days=3),
    )
    start >> wait
