"""``CoverbaseWorkflowRunLink``: the "Coverbase workflow run" button on a task."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

__all__ = ["RUN_URL_ATTRIBUTE", "XCOM_WORKFLOW_RUN_ID", "XCOM_WORKFLOW_RUN_URL", "CoverbaseWorkflowRunLink"]

#: XCom keys the operator pushes as soon as the run exists.
XCOM_WORKFLOW_RUN_ID = "workflow_run_id"
XCOM_WORKFLOW_RUN_URL = "workflow_run_url"
#: Attribute where the operator and the sensor say which run URL this process knows: ``""`` (their
#: class default) until a run is known, so a task failing before that (in templating, on bad input, on
#: an unknown workflow) needs no XCom lookup; then the URL. ``None``: the URL was published by an
#: earlier process (a deferred task resuming), so the link reads the XCom. Any other operator: XCom.
RUN_URL_ATTRIBUTE = "coverbase_run_url"


class CoverbaseWorkflowRunLink(BaseOperatorLink):
    """Opens the run's page in the Coverbase dashboard.

    Airflow 3 computes links on the worker when the task finishes and stores them in XCom under
    :attr:`xcom_key`; the operator also pushes that key itself right after starting the run, so the
    button works while the task is still running or deferred. Both give the same URL.

    When the task ends, Airflow calls :meth:`get_link` in the task's process. If the operator says
    which run it knows (:data:`RUN_URL_ATTRIBUTE`), that answer is used without reading XCom: a task
    that failed before any run existed has no ``workflow_run_url`` XCom, and reading it would log an
    ``XCom not found`` error for every such failure.
    """

    name = "Coverbase workflow run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        known = getattr(operator, RUN_URL_ATTRIBUTE, None)
        if isinstance(known, str):
            return known
        from airflow.sdk.execution_time.xcom import XCom

        url = XCom.get_value(ti_key=ti_key, key=XCOM_WORKFLOW_RUN_URL)
        return str(url) if url else ""
