"""``CoverbaseWorkflowRunLink``: the "Coverbase workflow run" button on a task."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

__all__ = ["XCOM_WORKFLOW_RUN_ID", "XCOM_WORKFLOW_RUN_URL", "CoverbaseWorkflowRunLink"]

#: XCom keys the operator pushes as soon as the run exists.
XCOM_WORKFLOW_RUN_ID = "workflow_run_id"
XCOM_WORKFLOW_RUN_URL = "workflow_run_url"


class CoverbaseWorkflowRunLink(BaseOperatorLink):
    """Opens the run's page in the Coverbase dashboard.

    Airflow 3 computes links on the worker when the task finishes and stores them in XCom under
    :attr:`xcom_key`; the operator also pushes that key itself right after starting the run, so the
    button works while the task is still running or deferred. Both read the same
    ``workflow_run_url`` XCom, so they always agree.
    """

    name = "Coverbase workflow run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        url = XCom.get_value(ti_key=ti_key, key=XCOM_WORKFLOW_RUN_URL)
        return str(url) if url else ""
