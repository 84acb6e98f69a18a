"""``CoverbaseWorkflowRunTrigger``: wait for a run's terminal status in the triggerer, with GETs only.

It never starts a run (a triggerer restart must not send a POST twice), looks the connection up
asynchronously, and carries its own wall-clock deadline, since Airflow 3 does not enforce
``execution_timeout`` while a task is deferred.

Made to wait by the thousand in one triggerer: every trigger of a connection shares one async client
(one TLS context, a few kept-alive connection pools, one request budget), acquired in ``run()`` and
given back when it ends; the poll request is built once per trigger; the pause between polls grows
with the run's age (:func:`~airflow_provider_coverbase.waiting.schedule.next_pause`) and the first
poll comes at a random point of the first interval, so triggers deferred (or restarted) together do
not poll in lockstep; pauses end on a shared 0.25 s grid of the loop's clock
(:func:`~airflow_provider_coverbase.waiting.schedule.coalesced_delay`), so polls due together wake the loop once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import httpx
import structlog
from airflow.sdk.exceptions import AirflowException
from airflow.triggers.base import BaseTrigger, TriggerEvent
from airflow.utils.log.logging_mixin import LoggingMixin
from pydantic import BaseModel, ConfigDict, ValidationError

from airflow_provider_coverbase.client import AsyncCoverbaseClient
from airflow_provider_coverbase.client._core import Call
from airflow_provider_coverbase.exceptions import CoverbaseError
from airflow_provider_coverbase.hooks.coverbase import CoverbaseHook
from airflow_provider_coverbase.models import WorkflowRun, WorkflowRunStatus
from airflow_provider_coverbase.monitoring import brief
from airflow_provider_coverbase.waiting.errors import DEFAULT_ERROR_POLICY, ErrorPolicy, ErrorStreak
from airflow_provider_coverbase.waiting.progress import linked, outcome_error, progress_lines, timeout_error
from airflow_provider_coverbase.waiting.schedule import (
    DEFAULT_POLL_INTERVAL,
    coalesced_delay,
    next_pause,
    positive_seconds,
    resolve_max_poll_interval,
)

__all__ = ["CoverbaseWorkflowRunTrigger", "WorkflowRunEvent", "parse_resume_event"]


class WorkflowRunEvent(BaseModel):
    """The one event a trigger yields; validated again where the task resumes."""

    model_config = ConfigDict(extra="forbid")

    #: ``completed``, ``failed``, ``cancelled``: the run ended. ``timeout``: our deadline passed
    #: first. ``error``: the API could not be read (``retryable`` says whether retrying may help).
    status: Literal["completed", "failed", "cancelled", "timeout", "error"]
    workflow_run_id: str
    message: str
    #: The last reading of the run, in brief (:func:`~airflow_provider_coverbase.monitoring.brief`: status,
    #: checkpoints with the time each was first seen, reason; no output, no steps), so Airflow's
    #: "Trigger fired event" log line stays short. The task reads the output itself when it needs it.
    run: dict[str, Any] | None = None
    retryable: bool = False


def parse_resume_event(task_id: str, event: dict[str, Any] | None) -> WorkflowRunEvent:
    """Validate the event a deferred task resumes with (operator and sensor alike)."""
    if event is None:
        raise AirflowException(f"{task_id} resumed without a trigger event")
    try:
        return WorkflowRunEvent.model_validate(event)
    except ValidationError as exc:
        raise AirflowException(f"{task_id} got a malformed trigger event: {exc}") from None


class CoverbaseWorkflowRunTrigger(BaseTrigger):
    """Poll a Coverbase workflow run until it ends or ``deadline`` (Unix seconds) passes.

    Logs each status change and each new checkpoint or step once. Transient API errors (connection,
    429, 5xx) back off and retry; errors that retrying cannot fix end in an ``error`` event.

    :param workflow_run_id: The run to watch.
    :param coverbase_conn_id: The Airflow connection (never the key: it is looked up in the triggerer).
    :param poll_interval: Seconds between polls of a young run (the shortest pause).
    :param deadline: Wall-clock Unix time after which a ``timeout`` event is sent.
    :param dashboard_url: The run's page, for log lines and messages.
    :param max_poll_interval: The longest pause between polls, reached as the run ages (default
        30 min, never below ``poll_interval``); equal to ``poll_interval`` for fixed polling.
        Triggers serialised before this parameter existed get the default.
    :param started_at: Unix time the run started, the fallback for the schedule when the API gives
        no ``started_at``; serialised, so a restarted trigger keeps the pace of an old run.
    """

    #: What a failed poll means (see :mod:`airflow_provider_coverbase.waiting.errors`).
    error_policy: ErrorPolicy = DEFAULT_ERROR_POLICY

    def __init__(
        self,
        workflow_run_id: str,
        coverbase_conn_id: str = CoverbaseHook.default_conn_name,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        deadline: float | None = None,
        dashboard_url: str | None = None,
        max_poll_interval: float | None = None,
        started_at: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseTrigger is untyped
        self.workflow_run_id = workflow_run_id
        self.coverbase_conn_id = coverbase_conn_id
        self.poll_interval = positive_seconds(poll_interval, "poll_interval")
        self.max_poll_interval = resolve_max_poll_interval(self.poll_interval, max_poll_interval)
        self.deadline = float(deadline) if deadline is not None else None
        self.dashboard_url = dashboard_url
        self.started_at = float(started_at) if started_at is not None else time.time()
        self._client: AsyncCoverbaseClient | None = None
        #: When this trigger first saw each checkpoint (for the UI record; only changed answers add to it).
        self._seen: dict[str, float] | None = None

    @property
    def log(self) -> Any:
        """This trigger's logger, made when a line is logged and not kept.

        Airflow's default keeps one logger per trigger object (about 0.7 KB once it has logged);
        here the few lines a trigger logs (one per change) each get a fresh one of the same name.
        In the triggerer, where a line goes is decided by context variables, not by the object.
        """
        name = LoggingMixin._create_logger_name(type(self), self._log_config_logger_name, self._logger_name)
        return structlog.get_logger(name)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and primitive kwargs only (no key, no objects)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "workflow_run_id": self.workflow_run_id,
                "coverbase_conn_id": self.coverbase_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "dashboard_url": self.dashboard_url,
                "max_poll_interval": self.max_poll_interval,
                "started_at": self.started_at,
            },
        )

    def next_interval(self, run: WorkflowRun | None, now: float) -> float:
        """Seconds until the next poll, from the run's age (see :func:`next_pause`)."""
        return next_pause(
            run,
            fallback_start=self.started_at,
            now=now,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
        )

    def _event(self, status: str, message: str, run: WorkflowRun | None, retryable: bool = False) -> TriggerEvent:
        event = WorkflowRunEvent(
            status=status,  # type: ignore[arg-type]  # validated by the model
            workflow_run_id=self.workflow_run_id,
            message=message,
            run=self._brief(run) if run is not None else None,
            retryable=retryable,
        )
        return TriggerEvent(event.model_dump(mode="json"))  # type: ignore[no-untyped-call]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the run is terminal, the deadline passes, or the API keeps failing.

        Between polls a trigger keeps little: the shared client, its prepared request and the body
        of the last answer (bytes), not a hook nor a parsed :class:`WorkflowRun`. An answer whose
        body is the same as the last one changed nothing, so nothing is logged; a different one is
        compared with the last reading, parsed again from those bytes (:func:`progress_lines`).
        """
        started = time.time()
        last_body: bytes | None = None
        errors: ErrorStreak | None = None  # made at a failed poll, dropped at the next good one
        try:
            # The hook looks the connection up and parses it (memoised by its content); only the
            # shared client it hands out is kept.
            client = self._client = await CoverbaseHook(self.coverbase_conn_id).get_async_client()
            call = _with_body(client.prepare_get_workflow_run(self.workflow_run_id))  # built once, sent every poll
            # The first poll at a random point of the first interval: spreads triggers deferred together.
            pause = random.random() * self.next_interval(None, started)  # noqa: S311  # jitter, not crypto
            polled = False
            loop = asyncio.get_running_loop()
            while True:
                now = time.time()
                if self.deadline is not None:
                    if polled and now >= self.deadline:
                        last = self._reading(last_body)
                        message = str(timeout_error(self.workflow_run_id, now - started, last, self.dashboard_url))
                        yield self._event("timeout", message, last)
                        return
                    pause = min(pause, max(0.0, self.deadline - now))
                await asyncio.sleep(coalesced_delay(loop.time(), pause))
                polled = True
                try:
                    current, body = await client.send(call)
                except CoverbaseError as exc:
                    errors = errors or ErrorStreak(self.poll_interval, self.error_policy)
                    verdict = errors.failed(exc)
                    if verdict.fatal:
                        yield self._event("error", str(exc), self._reading(last_body), retryable=False)
                        return
                    if verdict.give_up:
                        message = f"gave up after {verdict.failures} failed polls in a row: {exc}"
                        yield self._event("error", message, self._reading(last_body), retryable=True)
                        return
                    pause = verdict.pause
                    self.log.warning(
                        "Polling Coverbase failed (%d in a row), next try in %.0f s: %s", verdict.failures, pause, exc
                    )
                    continue
                errors = None
                if body != last_body:
                    self._log_progress(self._reading(last_body), current)
                    last_body = body
                if current.is_terminal:
                    error = outcome_error(current, self.dashboard_url)
                    status = "completed" if current.status == WorkflowRunStatus.COMPLETED else current.status.value
                    link = linked(self.dashboard_url) if self.dashboard_url else ". "
                    done = f"Coverbase run {self.workflow_run_id} completed{link}".rstrip()
                    message = str(error) if error else done
                    yield self._event(status, message, current)
                    return
                pause = self.next_interval(current, time.time())
                del current, body  # not kept while waiting: last_body holds what is needed
        finally:
            await self._close()

    def _brief(self, run: WorkflowRun) -> dict[str, Any]:
        seen = [{"name": name, "at": at} for name, at in (self._seen or {}).items()]
        return brief(run, {"checkpoints": seen})

    def _log_progress(self, previous: WorkflowRun | None, current: WorkflowRun) -> None:
        now = time.time()
        for name in current.checkpoints:
            if self._seen is None:
                self._seen = {}
            self._seen.setdefault(name, now)
        for line in progress_lines(previous, current, self.dashboard_url):
            self.log.info("%s", line)

    def _reading(self, body: bytes | None) -> WorkflowRun | None:
        """The run as the last answer's body said (parsed again: only on a change or at the end)."""
        if body is None:
            return None
        return WorkflowRun.model_validate_json(body, context={"workflow_run_id": self.workflow_run_id})

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await CoverbaseHook.release_async_client(client)

    async def cleanup(self) -> None:
        """Give the shared HTTP client back on every exit (success, timeout, triggerer restart)."""
        await self._close()

    async def on_kill(self) -> None:
        """A user marked or cleared the deferred task (Airflow >= 3.3): say that the run goes on.

        Coverbase has no API to cancel, pause or resume a workflow run, so only the waiting stops.
        """
        self.log.warning(
            "Stopped waiting for Coverbase run %s%sCoverbase has no API to cancel it, so it keeps going",
            self.workflow_run_id,
            linked(self.dashboard_url) if self.dashboard_url else ". ",
        )


class _ParseWithBody:
    """A call's ``parse`` that also hands back the answer's body, so the trigger can keep bytes."""

    __slots__ = ("parse",)

    def __init__(self, parse: Callable[[httpx.Response], WorkflowRun]) -> None:
        self.parse = parse

    def __call__(self, response: httpx.Response) -> tuple[WorkflowRun, bytes]:
        return self.parse(response), response.content


def _with_body(call: Call[WorkflowRun]) -> Call[tuple[WorkflowRun, bytes]]:
    return dataclasses.replace(call, parse=_ParseWithBody(call.parse))  # type: ignore[arg-type,return-value]
