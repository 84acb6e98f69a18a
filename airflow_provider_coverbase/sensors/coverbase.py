"""``CoverbaseWorkflowRunSensor``: wait for a run started elsewhere (poke, reschedule or deferrable)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from airflow_provider_coverbase.exceptions import CoverbaseError
from airflow_provider_coverbase.hooks.coverbase import CoverbaseHook
from airflow_provider_coverbase.links.coverbase import RUN_URL_ATTRIBUTE, CoverbaseWorkflowRunLink
from airflow_provider_coverbase.tracking import outcome_error, progress_lines
from airflow_provider_coverbase.triggers.coverbase import CoverbaseWorkflowRunTrigger, parse_resume_event

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["CoverbaseWorkflowRunSensor"]


class CoverbaseWorkflowRunSensor(BaseSensorOperator):
    """Wait for a Coverbase workflow run to end; succeed on ``completed``.

    ``failed``/``cancelled`` fail the task (no retries: the run cannot change any more) with the same
    message as the operator. Transient API errors (connection, 429, 5xx) count as "not yet" and the
    sensor keeps poking; errors retrying cannot fix (bad key, unknown run) fail at once. The XCom
    return value is the final run as JSON.

    :param workflow_run_id: The run to watch (templated), e.g. the operator's ``workflow_run_id`` XCom.
    :param coverbase_conn_id: The Coverbase connection.
    :param deferrable: Wait in the triggerer; defaults to ``[operators] default_deferrable``.
        ``poke_interval`` and ``timeout`` apply in every mode.
    """

    template_fields: Sequence[str] = ("workflow_run_id",)
    operator_extra_links = (CoverbaseWorkflowRunLink(),)
    ui_color = "#dfe9ff"
    #: The run URL this process published (see ``links.coverbase.RUN_URL_ATTRIBUTE``).
    coverbase_run_url: str | None = ""

    def __init__(
        self,
        *,
        workflow_run_id: str,
        coverbase_conn_id: str = CoverbaseHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.workflow_run_id = workflow_run_id
        self.coverbase_conn_id = coverbase_conn_id
        self.deferrable = deferrable

    def _publish_link(self, context: Context, url: str) -> None:
        setattr(self, RUN_URL_ATTRIBUTE, url)
        ti = context["ti"]
        ti.xcom_push(key="workflow_run_url", value=url)
        ti.xcom_push(key=CoverbaseWorkflowRunLink().xcom_key, value=url)

    def poke(self, context: Context) -> PokeReturnValue:
        """One status check. Returns done with the run as XCom, or not done; raises on a bad end."""
        return self._check(context)[0]

    def _check(self, context: Context) -> tuple[PokeReturnValue, str]:
        """One status check, and the run's dashboard URL."""
        run_id = str(self.workflow_run_id)
        hook = CoverbaseHook(self.coverbase_conn_id)
        try:
            url = hook.dashboard_run_url(run_id)
            self._publish_link(context, url)
            run = hook.get_workflow_run(run_id)
        except CoverbaseError as exc:
            if not exc.retryable:
                raise AirflowFailException(str(exc)) from exc
            self.log.warning("Could not read Coverbase run %s yet, will poke again: %s", run_id, exc)
            return PokeReturnValue(is_done=False), url
        finally:
            hook.close()
        for line in progress_lines(None, run, url):
            self.log.info("%s", line)
        if not run.is_terminal:
            return PokeReturnValue(is_done=False), url
        error = outcome_error(run, url)
        if error is not None:
            raise AirflowFailException(str(error))
        return PokeReturnValue(is_done=True, xcom_value=run.to_summary()), url

    def execute(self, context: Context) -> Any:  # noqa: RET503  # defer() never returns
        """Poke/reschedule as usual; when deferrable, check once, then defer to the trigger."""
        if not self.deferrable:
            return super().execute(context)
        first, url = self._check(context)
        if first.is_done:
            return first.xcom_value
        timeout = float(self.timeout) if self.timeout is not None else None
        self.defer(
            trigger=CoverbaseWorkflowRunTrigger(
                workflow_run_id=str(self.workflow_run_id),
                coverbase_conn_id=self.coverbase_conn_id,
                poll_interval=float(self.poke_interval),
                deadline=time.time() + timeout if timeout is not None else None,
                dashboard_url=url,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=timeout + 300) if timeout is not None else None,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger: the run's JSON on ``completed``, a clear failure otherwise."""
        setattr(self, RUN_URL_ATTRIBUTE, None)  # published before deferring: the link reads the XCom
        parsed = parse_resume_event(self.task_id, event)
        if parsed.status == "completed":
            self.log.info("%s", parsed.message)
            return parsed.run
        if parsed.status == "timeout":
            raise AirflowSensorTimeout(parsed.message)  # soft_fail is applied by BaseSensorOperator
        if parsed.status == "error" and parsed.retryable:
            raise AirflowException(parsed.message)
        raise AirflowFailException(parsed.message)
