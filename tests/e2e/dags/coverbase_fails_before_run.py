"""Test-only DAG: tasks that fail before any Coverbase run exists (unknown workflow, bad input, unknown run)."""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import DAG

from airflow_provider_coverbase.operators.coverbase import CoverbaseRunWorkflowOperator
from airflow_provider_coverbase.sensors.coverbase import CoverbaseWorkflowRunSensor

with DAG(
    dag_id="coverbase_fails_before_run",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 0},
) as dag:
    CoverbaseRunWorkflowOperator(task_id="unknown_workflow", workflow_name="no-such-workflow", input={})
    CoverbaseRunWorkflowOperator(task_id="bad_input", workflow_name="adhoc-campaign", input={"ratio": float("nan")})
    CoverbaseWorkflowRunSensor(task_id="missing_connection", workflow_run_id="cbwr_x", coverbase_conn_id="nope")
