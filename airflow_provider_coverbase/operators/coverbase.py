"""``CoverbaseRunWorkflowOperator``: start a named Coverbase workflow exactly once, then wait for it.

Exactly-once, in short (the README has the long form; the decision itself, free of Airflow and of
I/O, is :mod:`airflow_provider_coverbase.waiting.reattach`, which this operator feeds its hook's calls):

- Every start sends an ``Idempotency-Key``. Unless you pass your own, it is derived from the task
  instance (dag id, task id, run id, map index), the first try of the current chain of tries, and
  the workflow: stable across Airflow retries, unique across workflows, new after a clear.
- A retry first finds the run its chain already started: on Airflow >= 3.3 from the task state
  store, otherwise by replaying the chain's keys (a replay starts nothing). A run still going or
  completed is reattached to; after a failed or cancelled run, the retry starts a fresh one under
  the next key of the chain. A lost POST response or a worker dying right after the POST is
  covered by the key: the next attempt replays it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import jinja2
from airflow.sdk import BaseOperator, conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_coverbase.client import check_json_object
from airflow_provider_coverbase.exceptions import (
    CoverbaseError,
    InvalidInputError,
    NotFoundError,
    WorkflowRunError,
)
from airflow_provider_coverbase.hooks.coverbase import CoverbaseHook
from airflow_provider_coverbase.links.coverbase import (
    RUN_URL_ATTRIBUTE,
    XCOM_WORKFLOW_RUN_ID,
    XCOM_WORKFLOW_RUN_URL,
    CoverbaseWorkflowRunLink,
)
from airflow_provider_coverbase.models import WorkflowRun
from airflow_provider_coverbase.monitoring import Origin, RunWatch, TryRecorder
from airflow_provider_coverbase.triggers.coverbase import CoverbaseWorkflowRunTrigger, parse_resume_event
from airflow_provider_coverbase.waiting.errors import DEFAULT_ERROR_POLICY, ErrorPolicy, ErrorStreak
from airflow_provider_coverbase.waiting.progress import linked, outcome_error, progress_lines, timeout_error
from airflow_provider_coverbase.waiting.reattach import (
    STATE_KEY,
    Started,
    StartRecord,
    attach,
    chain_of,
    derive_idempotency_key,
)
from airflow_provider_coverbase.waiting.schedule import DEFAULT_POLL_INTERVAL, next_pause, resolve_max_poll_interval

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["CoverbaseRunWorkflowOperator", "airflow_error"]

#: Default wait for a terminal status: finite, because a current-API run can stay "started" forever.
DEFAULT_TIMEOUT = timedelta(hours=24)


def airflow_error(exc: CoverbaseError) -> AirflowException:
    """The Airflow exception for a Coverbase error: retrying cannot fix it -> ``AirflowFailException``."""
    if exc.retryable or isinstance(exc, WorkflowRunError):
        return AirflowException(str(exc))
    return AirflowFailException(str(exc))


@contextlib.contextmanager
def _as_airflow_errors() -> Iterator[None]:
    try:
        yield
    except CoverbaseError as exc:
        # The message once: no chained traceback repeating it (the Coverbase error adds nothing to read).
        raise airflow_error(exc) from None


def _seconds(value: timedelta | float | int, name: str, task_id: str) -> float:
    """``value`` in seconds; a zero or negative duration fails naming the task and the seconds it comes to."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not seconds > 0:
        given = f"timedelta(seconds={seconds:g})" if isinstance(value, timedelta) else f"{value!r}"
        raise ValueError(
            f"{task_id}: {name} must be positive, got {given}. Pass a timedelta such as "
            f"timedelta(hours=24) or a number of seconds > 0"
        )
    return seconds


class CoverbaseRunWorkflowOperator(BaseOperator):
    """Start a Coverbase workflow with JSON input, exactly once, and (by default) wait for it to end.

    Pushes ``workflow_run_id`` and ``workflow_run_url`` to XCom as soon as the run exists, logs each
    status change and each new checkpoint or step, and returns the final run as JSON (id, name,
    status, checkpoints, steps, output). ``completed`` succeeds; ``failed``/``cancelled`` fail the
    task with the run, its status, the last checkpoint or failed step, and the link; a retry then
    starts a fresh run. Input, key or connection errors fail without retries.

    :param workflow_name: Name of the workflow to start (templated). Exactly one of this and
        ``workflow_definition_id``.
    :param workflow_definition_id: Id of the workflow definition to start, legacy contract only (templated).
    :param input: The workflow input: a dict that may hold Jinja and XComArgs, or the path of a
        ``.json`` template file (templated). Checked to be a JSON object before any request.
    :param idempotency_key: Sent as given when set (templated); by default derived from the task
        instance, see the module docstring.
    :param wait_for_completion: Wait for a terminal status (default). If False, return right after
        the start with the run as it was then.
    :param deferrable: Wait in the triggerer instead of a worker slot; defaults to
        ``[operators] default_deferrable``.
    :param poll_interval: Seconds between status checks of a young run (the shortest pause).
    :param max_poll_interval: The longest pause between status checks (``timedelta`` or seconds,
        default 30 min, never below ``poll_interval``). The pause grows to 5% of the run's age
        between the two, so a task notices a run's end at most
        ``max(poll_interval, min(5% of the run's age, max_poll_interval))`` after it happens. Set it
        equal to ``poll_interval`` for fixed polling.
    :param timeout: How long one try waits for a terminal status (``timedelta`` or seconds,
        default 24 h). Also capped by ``execution_timeout``, which Airflow does not enforce while
        deferred. Reaching it fails the task; the run keeps going in Coverbase.
    :param coverbase_conn_id: The Coverbase connection.
    """

    template_fields: Sequence[str] = ("workflow_name", "workflow_definition_id", "input", "idempotency_key")
    template_ext: Sequence[str] = (".json",)
    template_fields_renderers = {"input": "json"}
    operator_extra_links = (CoverbaseWorkflowRunLink(),)
    ui_color = "#dfe9ff"
    #: The run URL this process published (see ``links.coverbase.RUN_URL_ATTRIBUTE``).
    coverbase_run_url: str | None = ""
    #: What a failed status check means while waiting in the worker (the trigger's is the same).
    error_policy: ErrorPolicy = DEFAULT_ERROR_POLICY
    #: Whether this try created its run or reattached to one, and the key it sent (for the UI record).
    _coverbase_origin: Origin = "created"
    _coverbase_key: str | None = None
    _recorder: TryRecorder  # made by execute and by execute_complete

    def __init__(
        self,
        *,
        workflow_name: str | None = None,
        workflow_definition_id: str | None = None,
        input: Mapping[str, Any] | str | None = None,
        idempotency_key: str | None = None,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: timedelta | float = DEFAULT_POLL_INTERVAL,
        max_poll_interval: timedelta | float | None = None,
        timeout: timedelta | float = DEFAULT_TIMEOUT,
        coverbase_conn_id: str = CoverbaseHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (workflow_name is None) == (workflow_definition_id is None):
            raise ValueError(f"{self.task_id}: pass exactly one of workflow_name or workflow_definition_id")
        self.workflow_name = workflow_name
        self.workflow_definition_id = workflow_definition_id
        self.input = input
        #: The input as given, when a template string: shown when it renders to nothing usable.
        self._input_template = input if isinstance(input, str) else None
        self.idempotency_key = idempotency_key
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = _seconds(poll_interval, "poll_interval", self.task_id)
        longest = None if max_poll_interval is None else _seconds(max_poll_interval, "max_poll_interval", self.task_id)
        self.max_poll_interval = resolve_max_poll_interval(self.poll_interval, longest)
        self.timeout = _seconds(timeout, "timeout", self.task_id)
        self.coverbase_conn_id = coverbase_conn_id

    # ---- input -----------------------------------------------------------------------------

    def render_template(
        self,
        content: Any,
        context: Any,
        jinja_env: jinja2.Environment | None = None,
        seen_oids: set[int] | None = None,
    ) -> Any:
        """Airflow's rendering, with what to add when ``QUARTER`` is used without its filter.

        Jinja alone says only "No filter named 'quarter_label'"; the fix is one argument of the DAG.
        """
        try:
            return super().render_template(content, context, jinja_env, seen_oids)
        except jinja2.TemplateAssertionError as exc:
            if "quarter_label" not in str(exc):
                raise
            raise AirflowFailException(
                f"{self.task_id}: the template uses the quarter_label filter (QUARTER from "
                "airflow_provider_coverbase.quarters), which this DAG does not register. Add "
                "user_defined_filters=FILTERS to the DAG (from airflow_provider_coverbase.quarters import "
                f"FILTERS; merge it with your own filters if you have some). Jinja said: {exc}"
            ) from None

    def _workflow_ref(self) -> str:
        if self.workflow_name is not None:
            return str(self.workflow_name)
        return f"definition:{self.workflow_definition_id}"

    def _rendered_input(self) -> dict[str, Any]:
        """The rendered input as a JSON object, or ``AirflowFailException`` naming what to fix.

        ``None`` means no input (an empty object is sent). A string must hold a JSON object: an empty
        or all-whitespace one (say, a template whose variable rendered to nothing) fails before any
        request instead of silently starting the workflow without input.
        """
        value: Any = self.input
        template = f" from the template {self._input_template[:120]!r}" if self._input_template else ""
        if value is None and self._input_template is not None:
            # Native rendering (render_template_as_native_obj=True) of e.g. an XCom never pushed.
            raise AirflowFailException(
                f"{self.task_id}: the input rendered to None{template} (an XCom that was never pushed, or a "
                "param or variable without a value?). Make the template produce a JSON object, or pass "
                "input=None for no input; nothing was sent to Coverbase"
            )
        if isinstance(value, str):
            if not value.strip():
                raise AirflowFailException(
                    f"{self.task_id}: the input rendered to {value[:50]!r}, an empty string{template}. Pass a "
                    "dict, a JSON object string or a .json template, or input=None for no input; nothing was "
                    "sent to Coverbase"
                )
            if value.strip() in ("None", "null"):
                raise AirflowFailException(
                    f"{self.task_id}: the input rendered to {value.strip()!r}{template}: the template's value was "
                    "None (an XCom that was never pushed, or a param or variable without a value?). Make it "
                    "produce a JSON object, or pass input=None for no input; nothing was sent to Coverbase"
                )
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise AirflowFailException(
                    f"{self.task_id}: the rendered input is a string but not JSON ({exc.msg} at "
                    f"line {exc.lineno} column {exc.colno}): {value[:200]!r}{template}; pass a dict or a .json template"
                ) from None
        try:
            return check_json_object(value)
        except InvalidInputError as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}; nothing was sent to Coverbase") from None

    # ---- start, exactly once ---------------------------------------------------------------

    def _post(self, hook: CoverbaseHook, run_input: dict[str, Any], key: str) -> WorkflowRun:
        if self.workflow_name is not None:
            return hook.run_workflow(str(self.workflow_name), run_input, idempotency_key=key)
        return hook.run_workflow_definition(str(self.workflow_definition_id), run_input, idempotency_key=key)

    def _start_or_reattach(self, hook: CoverbaseHook, run_input: dict[str, Any], context: Context) -> WorkflowRun:
        """Start this task instance's run, or find the one an earlier try of the same chain started."""
        if self.idempotency_key is not None:
            # The caller's key is sent as given: every try replays the run it started first.
            started = self._post(hook, run_input, str(self.idempotency_key))
            self._coverbase_key = str(self.idempotency_key)
            self._coverbase_origin = "reattached" if started.replayed else "created"
            if started.replayed:
                self.log.info(
                    "Idempotency key %s replayed run %s, which an earlier call started",
                    self.idempotency_key,
                    started.workflow_run_id,
                )
            return hook.get_workflow_run(started.workflow_run_id)

        ti = context["ti"]
        chain, try_in_chain = chain_of(try_number=ti.try_number, max_tries=ti.max_tries, retries=self.retries)
        map_index = ti.map_index if ti.map_index is not None else -1
        ref = self._workflow_ref()

        def read(workflow_run_id: str) -> WorkflowRun | None:
            try:
                return hook.get_workflow_run(workflow_run_id)
            except NotFoundError:
                return None

        def key(generation: int) -> str:
            return derive_idempotency_key(
                dag_id=ti.dag_id,
                task_id=ti.task_id,
                run_id=ti.run_id,
                map_index=map_index,
                chain=chain,
                workflow=ref,
                generation=generation,
            )

        def start(generation: int) -> Started:
            posted = self._post(hook, run_input, key(generation))
            return Started(hook.get_workflow_run(posted.workflow_run_id), replayed=posted.replayed)

        store = context.get("task_state_store")  # Airflow >= 3.3
        record = StartRecord.from_json(store.get(STATE_KEY), chain=chain, workflow=ref) if store is not None else None
        attached = attach(record=record, try_in_chain=try_in_chain, read=read, start=start, warn=self.log.warning)
        self._coverbase_key = key(attached.generation)  # the key of the run attached to, for the UI record
        self._coverbase_origin = "reattached" if attached.found_earlier else "created"
        if attached.found_earlier:
            self.log.info(
                "Try %s of this chain is attached to run %s, which an earlier try started",
                ti.try_number,
                attached.run.workflow_run_id,
            )
        if store is not None:
            store.set(STATE_KEY, attached.record(chain, ref).to_json())
        return attached.run

    # ---- execute ---------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        """Start (or reattach to) the run, publish its id and link, then wait per the settings."""
        run_input = self._rendered_input()
        self._recorder = TryRecorder()
        hook = CoverbaseHook(self.coverbase_conn_id)
        try:
            with _as_airflow_errors():
                run = self._start_or_reattach(hook, run_input, context)
                url = hook.dashboard_run_url(run.workflow_run_id)
                setattr(self, RUN_URL_ATTRIBUTE, url)
                ti = context["ti"]
                ti.xcom_push(key=XCOM_WORKFLOW_RUN_ID, value=run.workflow_run_id)
                ti.xcom_push(key=XCOM_WORKFLOW_RUN_URL, value=url)
                # The link's own key too, so the button works while the task runs or is deferred.
                ti.xcom_push(key=CoverbaseWorkflowRunLink().xcom_key, value=url)
                self._record(ti, run, url)
                name = f"(workflow '{run.workflow_name}')" if run.workflow_name else ""
                self.log.info("%s", f"Coverbase run {run.workflow_run_id}{linked(url)}{name}".rstrip())
                if not self.wait_for_completion or run.is_terminal:
                    for line in progress_lines(None, run, url):
                        self.log.info("%s", line)
                    return self._finish(run, url) if run.is_terminal else run.to_summary()
                wait = (
                    min(self.timeout, self.execution_timeout.total_seconds())
                    if self.execution_timeout
                    else self.timeout
                )
                deadline = time.time() + wait
                if self.deferrable:
                    for line in progress_lines(None, run, url):
                        self.log.info("%s", line)
                    self.defer(
                        trigger=CoverbaseWorkflowRunTrigger(
                            workflow_run_id=run.workflow_run_id,
                            coverbase_conn_id=self.coverbase_conn_id,
                            poll_interval=self.poll_interval,
                            deadline=deadline,
                            dashboard_url=url,
                            max_poll_interval=self.max_poll_interval,
                            started_at=run.started_at.timestamp() if run.started_at else time.time(),
                        ),
                        method_name="execute_complete",
                        # A backstop only: the trigger's own deadline fires first, with a better message.
                        timeout=timedelta(seconds=wait + 300),
                    )
                final = self._poll(hook, run, url, deadline, ti)
                self._record(ti, final, url)
                return self._finish(final, url)
        finally:
            hook.close()

    def _record(self, ti: Any, run: WorkflowRun | dict[str, Any], url: str | None, output: Any = None) -> None:
        """Push the UI's record of this try's run (``monitoring.XCOM_KEY``), keeping first-seen times."""
        watch = RunWatch(
            self.coverbase_conn_id,
            self._coverbase_origin,
            self._coverbase_key,
            self.poll_interval,
            self.max_poll_interval,
        )
        self._recorder.push(ti, run, watch, url=url, output=output)

    def _poll(self, hook: CoverbaseHook, run: WorkflowRun, url: str, deadline: float, ti: Any = None) -> WorkflowRun:
        """Poll with the hook's one client (its connection kept alive between polls), at the adaptive pace."""
        started = time.time()
        last: WorkflowRun | None = None
        current = run
        errors = ErrorStreak(self.poll_interval, self.error_policy)
        client = hook.get_client()
        call = client.prepare_get_workflow_run(run.workflow_run_id)  # built once, sent every poll
        pause: float | None = None  # after a failed poll: the backoff the error policy asks for
        while True:
            lines = progress_lines(last, current, url)
            for line in lines:
                self.log.info("%s", line)
            if lines and last is not None and ti is not None and not current.is_terminal:
                self._record(ti, current, url)  # the UI sees progress while this worker polls
            last = current
            if current.is_terminal:
                return current
            now = time.time()
            if now >= deadline:
                raise timeout_error(current.workflow_run_id, now - started, current, url)
            if pause is None:
                pause = next_pause(
                    current,
                    fallback_start=started,
                    now=now,
                    poll_interval=self.poll_interval,
                    max_poll_interval=self.max_poll_interval,
                )
            time.sleep(min(pause, deadline - now))
            pause = None
            try:
                current = client.send(call)
                errors.succeeded()
            except CoverbaseError as exc:
                verdict = errors.failed(exc)
                if verdict.give_up:
                    raise
                pause = verdict.pause
                self.log.warning(
                    "Polling Coverbase failed (%d in a row), will poll again in %.0f s: %s",
                    verdict.failures,
                    pause,
                    exc,
                )

    def _finish(self, run: WorkflowRun, url: str | None) -> dict[str, Any]:
        """The run's summary (the task's return value) once it completed, logged; its error otherwise."""
        error = outcome_error(run, url)
        if error is not None:
            raise error
        summary = run.to_summary()
        self.log.info(
            "Coverbase run %s completed%sCheckpoints: %s. Output: %s",
            run.workflow_run_id,
            linked(url),
            ", ".join(summary["checkpoints"]) or "none",
            json.dumps(summary["output"]),
        )
        return summary

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: succeed on ``completed``, fail with the trigger's message otherwise.

        Only the event is used (``dag.test()`` drops the kwargs passed to ``defer()``), plus the record
        this try pushed before deferring. The event is small (no output, no steps), so a completed
        run is read once more here for the task's return value.
        """
        setattr(self, RUN_URL_ATTRIBUTE, None)  # published before deferring: the link reads the XCom
        parsed = parse_resume_event(self.task_id, event)
        ti = context["ti"]
        self._recorder = TryRecorder()
        previous = self._recorder.previous(ti) or {}
        self._coverbase_origin = previous.get("origin") or "created"
        self._coverbase_key = previous.get("idempotency_key")
        url = previous.get("url")
        if parsed.status == "completed":
            hook = CoverbaseHook(self.coverbase_conn_id)
            try:
                with _as_airflow_errors():
                    run = hook.get_workflow_run(parsed.workflow_run_id)
            finally:
                hook.close()
            self._record(ti, parsed.run or run, url, output=run.output)
            return self._finish(run, url)
        if parsed.run is not None:
            self._record(ti, parsed.run, url)
        if parsed.status == "error" and not parsed.retryable:
            raise AirflowFailException(parsed.message)
        raise AirflowException(parsed.message)

    def on_kill(self) -> None:
        """Coverbase has no API to cancel a run: say so, and where the run is."""
        self.log.warning(
            "Task killed. Coverbase has no API to cancel workflow runs; the run keeps going in Coverbase "
            "(its id and link are in this task's XCom)."
        )
