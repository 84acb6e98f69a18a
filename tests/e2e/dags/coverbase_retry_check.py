"""Test-only DAG: a workflow that always fails, with one Airflow retry, to exercise reattachment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_coverbase.operators.coverbase import CoverbaseRunWorkflowOperator

with DAG(
    dag_id="coverbase_retry_check",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(0)},
) as dag:
    CoverbaseRunWorkflowOperator(task_id="run_failing", workflow_name="always-fails", input={}, poll_interval=0.05)
