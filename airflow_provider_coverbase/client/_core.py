"""The client's logic, written once and free of I/O. No Airflow imports here.

Everything that decides something lives in the modules this one drives: how each endpoint's request
is built (:mod:`._requests`, with the input checks of :mod:`._inputs`), how an answer is read
(:mod:`._answers`), which error a status or a transport failure maps to, with a message a person
can act on (:mod:`._error_mapping`), and here the retry decision (:meth:`ClientCore.after_failure`).
``CoverbaseClient`` and ``AsyncCoverbaseClient`` only send the requests built here, feed the outcome
back to :meth:`ClientCore.finish`, and wait as told.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from typing import TypeVar, cast

import httpx

from airflow_provider_coverbase.client._answers import as_success, check_same_workflow, json_or_none, run_in_conflict
from airflow_provider_coverbase.client._call import Call
from airflow_provider_coverbase.client._config import ClientConfig
from airflow_provider_coverbase.client._error_mapping import add_workflow_name_hint, status_error, transport_error
from airflow_provider_coverbase.client._inputs import RunListFilters
from airflow_provider_coverbase.client._requests import RequestBuilder
from airflow_provider_coverbase.exceptions import CoverbaseAPIError, CoverbaseError, NotFoundError
from airflow_provider_coverbase.models import WorkflowRun

#: ``Call`` and ``RunListFilters`` are re-exported: the two drivers need nothing but this module.
__all__ = ["Call", "ClientCore", "RunListFilters"]

log = logging.getLogger("airflow_provider_coverbase.client")

T = TypeVar("T")


class ClientCore(RequestBuilder):
    """Builds requests and reads responses for both clients. Holds no connection and does no I/O."""

    def __init__(self, config: ClientConfig, *, rng: Callable[[], float] | None = None) -> None:
        super().__init__(config)
        self._rng = rng or random.random

    def __repr__(self) -> str:
        return f"ClientCore(base_url={self.config.base_url!r})"

    def add_workflow_name_hint(self, error: NotFoundError, workflow_name: str, known: Iterable[str] | None) -> None:
        """Extend a ``workflow_not_found`` error with where names are and, if ``known`` has one, the closest.

        ``known`` is what :meth:`workflow_name_lookups` found (``None``: nothing could be read).
        """
        add_workflow_name_hint(self.config, error, workflow_name, known)

    # ---- response handling ---------------------------------------------------------------

    def finish(self, call: Call[T], outcome: httpx.Response | httpx.TransportError, attempt: int) -> T | Call[T]:
        """Turn one attempt's outcome into the call's result, or raise the error it means.

        Both clients call this after every attempt; the raised error carries ``attempts`` and
        ``retryable``, which the retry policy reads. A 409 replay whose run has no ``status`` returns
        another :class:`Call` instead: the GET that reads that run, which the client sends next.
        """
        try:
            if isinstance(outcome, httpx.TransportError):
                raise transport_error(self.config, call, outcome)
            if log.isEnabledFor(logging.DEBUG):  # call.path decodes the URL: skip it when nobody reads it
                log.debug("%s %s -> %s", call.method, call.path, outcome.status_code)
            if outcome.is_success:
                result = call.parse(outcome)
                if isinstance(result, WorkflowRun) and (call.starts_run or call.reads_replay):
                    replay_possible = call.reads_replay or call.caller_key or attempt > 1
                    check_same_workflow(call, result, outcome, replay_possible=replay_possible)
                    if call.replay_of_earlier_call:
                        result._replayed = True
                return result
            if call.starts_run and outcome.status_code == 409:
                replayed = run_in_conflict(json_or_none(outcome))
                if replayed is not None:
                    run_id = str(replayed["workflow_run_id"])
                    key = call.idempotency_key
                    log.info("Coverbase replayed run %s, already started with idempotency key %s", run_id, key)
                    if not isinstance(replayed.get("status"), str):
                        return cast(Call[T], self.read_replayed_run(call, run_id, earlier=attempt == 1))
                    run = call.parse(as_success(outcome, replayed))
                    if isinstance(run, WorkflowRun):
                        check_same_workflow(call, run, outcome, replay_possible=True)
                        run._replayed = attempt == 1
                    return run
            raise status_error(self.config, call, outcome)
        except CoverbaseError as error:
            error.attempts = attempt
            raise

    # ---- retries -------------------------------------------------------------------------

    def after_failure(self, error: CoverbaseError, attempt: int) -> tuple[float | None, float]:
        """What to do after attempt number ``attempt`` (1-based) of a call failed with ``error``.

        Returns ``(retry_in, pause_all)``: the seconds to wait before sending the call again, or
        ``None`` to raise ``error`` now; and the seconds every user of the connection should hold
        off (a 429's ``Retry-After``, else its backoff; 0 for any other error), so one rate-limited
        answer slows all of a process's callers instead of each finding out for itself.
        """
        policy = self.config.retry
        pause = 0.0
        if isinstance(error, CoverbaseAPIError) and error.status_code == 429:
            pause = error.retry_after if error.retry_after is not None else policy.backoff(attempt, self._rng())
        if attempt >= policy.max_attempts or not policy.should_retry(error):
            return None, pause
        delay = policy.delay(attempt, error, self._rng())
        log.warning(
            "Retrying in %.1f s (attempt %d of %d failed): %s", delay, attempt, policy.max_attempts, error.message
        )
        return delay, pause
