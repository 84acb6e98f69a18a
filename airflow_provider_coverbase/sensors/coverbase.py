"""``CoverbaseWorkflowRunSensor``: wait for a run started elsewhere (poke, reschedule or deferrable)."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from airflow_provider_coverbase.exceptions import CoverbaseError
from airflow_provider_coverbase.hooks.coverbase import CoverbaseHook
from airflow_provider_coverbase.links.coverbase import RUN_URL_ATTRIBUTE, CoverbaseWorkflowRunLink
from airflow_provider_coverbase.models import WorkflowRun
from airflow_provider_coverbase.monitoring import RunWatch, TryRecorder
from airflow_provider_coverbase.triggers.coverbase import CoverbaseWorkflowRunTrigger, parse_resume_event
from airflow_provider_coverbase.waiting.errors import is_fatal
from airflow_provider_coverbase.waiting.progress import outcome_error, progress_lines
from airflow_provider_coverbase.waiting.schedule import next_pause, resolve_max_poll_interval

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
    :param max_poll_interval: The longest pause between checks (``timedelta`` or seconds, default
        30 min, never below ``poke_interval``): the pause grows from ``poke_interval`` to 5% of the
        run's age, up to this, in every mode (``exponential_backoff=True`` keeps Airflow's own
        schedule in poke and reschedule mode). Equal to ``poke_interval`` for fixed polling.

    In poke mode one HTTP client serves every poke of the task, its connection kept alive between them.
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
        max_poll_interval: timedelta | float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.workflow_run_id = workflow_run_id
        self.coverbase_conn_id = coverbase_conn_id
        self.deferrable = deferrable
        if isinstance(max_poll_interval, timedelta):
            max_poll_interval = max_poll_interval.total_seconds()
        self.max_poll_interval = resolve_max_poll_interval(float(self.poke_interval), max_poll_interval)
        self._hook: CoverbaseHook | None = None
        self._last_run: WorkflowRun | None = None
        self._first_check = time.time()
        self._recorder = TryRecorder()  # made again by execute and by execute_complete

    def _get_hook(self) -> CoverbaseHook:
        """One hook (one sync HTTP client) for every poke of this task; closed when ``execute`` ends."""
        if self._hook is None:
            self._hook = CoverbaseHook(self.coverbase_conn_id)
        return self._hook

    def _close_hook(self) -> None:
        if self._hook is not None:
            self._hook.close()
            self._hook = None

    def _publish_link(self, context: Context, url: str) -> None:
        setattr(self, RUN_URL_ATTRIBUTE, url)
        ti = context["ti"]
        ti.xcom_push(key="workflow_run_url", value=url)
        ti.xcom_push(key=CoverbaseWorkflowRunLink().xcom_key, value=url)

    def _record(self, ti: Any, run: WorkflowRun | dict[str, Any], url: str | None, output: Any = None) -> None:
        """Push the UI's record of the watched run (``monitoring.XCOM_KEY``), keeping first-seen times."""
        watch = RunWatch(self.coverbase_conn_id, "watched", None, float(self.poke_interval), self.max_poll_interval)
        self._recorder.push(ti, run, watch, url=url, output=output)

    def poke(self, context: Context) -> PokeReturnValue:
        """One status check. Returns done with the run as XCom, or not done; raises on a bad end."""
        return self._check(context)[0]

    def _check(self, context: Context) -> tuple[PokeReturnValue, str]:
        """One status check, and the run's dashboard URL."""
        run_id = str(self.workflow_run_id)
        hook = self._get_hook()
        try:
            url = hook.dashboard_run_url(run_id)
            self._publish_link(context, url)
            run = hook.get_workflow_run(run_id)
        except CoverbaseError as exc:
            if is_fatal(exc):
                raise AirflowFailException(str(exc)) from None  # the message once, no chained traceback
            self.log.warning("Could not read Coverbase run %s yet, will poke again: %s", run_id, exc)
            return PokeReturnValue(is_done=False), url
        self._last_run = run
        self._record(context["ti"], run, url)
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
        self._recorder = TryRecorder()
        if not self.deferrable:
            try:
                return super().execute(context)
            finally:
                self._close_hook()
        try:
            first, url = self._check(context)
        finally:
            self._close_hook()
        if first.is_done:
            return first.xcom_value
        run = self._last_run
        timeout = float(self.timeout) if self.timeout is not None else None
        self.defer(
            trigger=CoverbaseWorkflowRunTrigger(
                workflow_run_id=str(self.workflow_run_id),
                coverbase_conn_id=self.coverbase_conn_id,
                poll_interval=float(self.poke_interval),
                deadline=time.time() + timeout if timeout is not None else None,
                dashboard_url=url,
                max_poll_interval=self.max_poll_interval,
                started_at=run.started_at.timestamp() if run is not None and run.started_at else time.time(),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=timeout + 300) if timeout is not None else None,
        )

    def _get_next_poke_interval(
        self, started_at: datetime.datetime | float, run_duration: Callable[[], float], poke_count: int
    ) -> float:
        """Poke and reschedule mode: the adaptive pause from the run's age (Airflow's own with exponential_backoff)."""
        if self.exponential_backoff:
            return float(super()._get_next_poke_interval(started_at, run_duration, poke_count))
        return next_pause(
            self._last_run,
            fallback_start=self._first_check,
            now=time.time(),
            poll_interval=float(self.poke_interval),
            max_poll_interval=self.max_poll_interval,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger: the run's JSON on ``completed``, a clear failure otherwise."""
        setattr(self, RUN_URL_ATTRIBUTE, None)  # published before deferring: the link reads the XCom
        parsed = parse_resume_event(self.task_id, event)
        ti = context["ti"]
        self._recorder = TryRecorder()
        url = (self._recorder.previous(ti) or {}).get("url")
        if parsed.status == "completed":
            # The event is small (no output, no steps): read the run once for the task's return value.
            hook = self._get_hook()
            try:
                run = hook.get_workflow_run(parsed.workflow_run_id)
            except CoverbaseError as exc:
                error = AirflowException if exc.retryable else AirflowFailException
                raise error(str(exc)) from None
            finally:
                self._close_hook()
            self._record(ti, parsed.run or run, url, output=run.output)
            self.log.info("%s", parsed.message)
            return run.to_summary()
        if parsed.run is not None:
            self._record(ti, parsed.run, url)
        if parsed.status == "timeout":
            raise AirflowSensorTimeout(parsed.message)  # soft_fail is applied by BaseSensorOperator
        if parsed.status == "error" and parsed.retryable:
            raise AirflowException(parsed.message)
        raise AirflowFailException(parsed.message)
