"""``CoverbaseWorkflowRunEventTrigger``: the pull path for Airflow's ``AssetWatcher``.

For deployments that cannot receive Coverbase's webhooks: the trigger polls the list endpoint of
the current API (``GET /v1/workflows/runs``) and emits one ``TriggerEvent`` per run of one workflow
that reached a watched terminal status *after the watch began*. Attach it to an asset::

    from airflow.sdk import Asset, AssetWatcher

    sweep_done = Asset(
        "quarterly_privacy_sweep_completed",
        watchers=[
            AssetWatcher(
                name="sweep_completed",
                trigger=CoverbaseWorkflowRunEventTrigger("quarterly-privacy-sweep", statuses=["completed"]),
            )
        ],
    )

For the ``coverbase://`` assets, let :func:`~airflow_provider_coverbase.assets.coverbase_workflow_asset`
attach it instead (``[coverbase] pull_connections``): every DAG file that declares an asset must
declare the same watchers, or Airflow stops and restarts the watch on each parse.

Airflow turns each event into an asset event whose ``extra`` is
``{"from_trigger": True, "payload": <event>}``; the payload has the keys of the webhook receiver's
extra (see :func:`airflow_provider_coverbase.waiting.pull_watch.event_payload`). One trigger's events go to
every asset it watches, so put completed runs and failed runs on different assets with two
watchers (``statuses=["completed"]`` and ``statuses=["failed"]``); they share one poll (below).

**Never twice, also across triggerer restarts.** Airflow builds watcher triggers when it parses the
DAG and identifies them by a hash of their kwargs, and a triggerer restart rebuilds them from
those kwargs with no memory of what they emitted. So the kwargs hold only configuration (a
timestamp taken at construction would change the hash on every parse and restart the watch), and
what was emitted lives in one of two places:

- **Airflow >= 3.3: the asset state store** (``asset_state_store``, kept in Airflow's database
  per asset and injected by the triggerer). The trigger stores its
  :class:`~airflow_provider_coverbase.waiting.pull_watch.WatchState` (the highest ``completed_at`` handled
  and the runs handled within ten minutes of it) under ``coverbase-watch:<conn>:<workflow>:<statuses>``,
  and writes it *before* handing the events over. After a restart it resumes from that state:
  runs that finished while the triggerer was down are emitted once, runs already emitted never
  again. A crash in the instant between the write and the hand-over loses those events rather
  than repeating them (at most once). The baseline (runs already finished when the watch first
  started are not events) is taken once and stored too. A watch whose statuses change starts a
  new baseline.
- **Without a state store** (Airflow 3.2, or a trigger the triggerer gave none): the state lives
  in memory and every start takes a new baseline. Nothing is emitted twice, but runs that finish
  while the triggerer is down are not emitted.

Only runs created within ``lookback`` seconds are listed, which bounds each poll's cost: a run that
finishes more than ``lookback`` after it was created is not seen (current-API runs can stay
``started`` for weeks, so keep it generous).

**Shared polling (Airflow >= 3.3).** Watchers of one connection with the same ``poll_interval``
and ``lookback`` share one poll through ``shared_stream_key``: the triggerer runs one loop that
lists the finished runs of every workflow of the connection, and each watcher picks its workflow
and statuses from every listing and keeps its own state, so a watcher that joins late or restarts
misses nothing. Each watcher still checks once at start that its workflow exists. On Airflow 3.2
each trigger polls on its own.

**Legacy contract.** The legacy API has no list endpoint. The first poll then fails at once with an
error saying so (use the webhook receiver there). Airflow starts a failed watcher again at the
triggerer's next check, within seconds; a restarted watcher that failed within the last
``FATAL_RECHECK_SECONDS`` (in this triggerer process) waits that long before asking the API again,
so it floods neither the log nor the API.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_coverbase.client._error_mapping import is_missing_list_endpoint
from airflow_provider_coverbase.client._inputs import MAX_LIST_LIMIT, encode_path_segment
from airflow_provider_coverbase.defaults import DEFAULT_PULL_LOOKBACK, DEFAULT_PULL_POLL_INTERVAL
from airflow_provider_coverbase.exceptions import CoverbaseAPIError, CoverbaseError, NotFoundError
from airflow_provider_coverbase.hooks.coverbase import CoverbaseHook
from airflow_provider_coverbase.models import WorkflowRun, WorkflowRunStatus
from airflow_provider_coverbase.waiting.errors import WATCH_ERROR_POLICY, ErrorStreak, is_fatal
from airflow_provider_coverbase.waiting.pull_watch import (
    API_STATUS,
    WatchState,
    event_payload,
    normalise_statuses,
    select_new_runs,
)

__all__ = ["CoverbaseWatchError", "CoverbaseWorkflowRunEventTrigger"]

log = logging.getLogger(__name__)

#: How long a restarted watcher waits before asking again after a fatal error (legacy API, unknown
#: workflow, bad key).
FATAL_RECHECK_SECONDS = 600.0
_ALL_TERMINAL = tuple(API_STATUS.values())

#: (conn_id, workflow_name or "") -> (monotonic time, message) of the last fatal error in this process.
_recent_fatal: dict[tuple[str, str], tuple[float, str]] = {}
#: Restarts of one watch within this many seconds, in one triggerer process, that get a warning.
FLAPPING_RESTARTS = 2
FLAPPING_WINDOW = 600.0
#: state key -> monotonic times this triggerer process started that watch (within the window).
_watch_starts: dict[str, list[float]] = {}


def _note_start(state_key: str, workflow_name: str, logger: Any) -> None:
    """Warn when one watch keeps being stopped and started again while the triggerer runs.

    Airflow rewrites an asset's watchers from every DAG file that declares the asset: one file
    declaring it with this watcher and another without (or with other settings) stop and start the
    watch on each DAG-processor loop, and runs finishing in between are missed.
    """
    now = time.monotonic()
    starts = [t for t in _watch_starts.get(state_key, []) if now - t < FLAPPING_WINDOW] + [now]
    _watch_starts[state_key] = starts
    if len(starts) > FLAPPING_RESTARTS:
        logger.warning(
            "The watch of '%s' was started %d times in %.0f s in this triggerer: Airflow stops an asset's watcher "
            "whenever a DAG file declares that asset without it (or with other trigger settings) and starts it "
            "again when another file declares it with it, and runs that finish in between are missed. Declare "
            "Coverbase assets only with coverbase_workflow_asset() and choose the pull path with the "
            "[coverbase] pull_connections setting, so that every DAG file declares the same watcher.",
            workflow_name,
            len(starts),
            now - starts[0],
        )


class CoverbaseWatchError(CoverbaseError):
    """The watch cannot go on: no list endpoint (legacy API), unknown workflow, rejected key, no connection."""


@dataclass(frozen=True, slots=True)
class _Listing:
    """One poll's result, shared by every watcher of a shared poll."""

    runs: tuple[WorkflowRun, ...]
    polled_at: float


def _fatal(error: Exception, conn_id: str, workflow_name: str | None) -> CoverbaseWatchError | None:
    """The watch-ending error ``error`` means, or ``None`` when polling again may help.

    Fatal as the shared error policy says (:func:`~airflow_provider_coverbase.waiting.errors.is_fatal`):
    everything but a retryable Coverbase error, including what is not a Coverbase error at all (e.g.
    the Airflow connection does not exist). This says why, for the watcher's log.
    """
    if not is_fatal(error):
        return None
    if not isinstance(error, CoverbaseError):
        return CoverbaseWatchError(
            f"CoverbaseWorkflowRunEventTrigger cannot poll connection '{conn_id}': {type(error).__name__}: {error}"
        )
    if isinstance(error, CoverbaseAPIError) and is_missing_list_endpoint(
        error.method, error.path, error.status_code, error.code
    ):
        return CoverbaseWatchError(
            f"CoverbaseWorkflowRunEventTrigger cannot watch runs through connection '{conn_id}': the server "
            f"answered {error.status_code} to GET /v1/workflows/runs, so it speaks Coverbase's legacy contract, "
            "which has no list endpoint. Follow runs with webhooks there (the provider's webhook receiver)."
        )
    if isinstance(error, NotFoundError) and workflow_name is not None:
        return CoverbaseWatchError(
            f"CoverbaseWorkflowRunEventTrigger: workflow '{workflow_name}' not found for connection '{conn_id}' "
            f"({error})"
        )
    return CoverbaseWatchError(f"CoverbaseWorkflowRunEventTrigger cannot poll connection '{conn_id}': {error}")


async def _list_finished(
    hook: CoverbaseHook, *, workflow_name: str | None, api_statuses: Iterable[str], lookback: float, limit: int
) -> list[WorkflowRun]:
    """Every run created within ``lookback`` with one of ``api_statuses``, all pages."""
    since = int(time.time() - lookback)
    statuses = list(api_statuses)
    runs: dict[str, WorkflowRun] = {}
    offset = 0
    while True:
        if workflow_name is None:
            page = await hook.alist_workflow_runs(status=statuses, created_at_after=since, limit=limit, offset=offset)
        else:
            page = await hook.alist_workflow_runs(
                workflow_name=workflow_name, status=statuses, created_at_after=since, limit=limit, offset=offset
            )
        for run in page.data:
            runs.setdefault(run.workflow_run_id, run)  # a run created meanwhile shifts pages: dedupe
        if not page.has_more or not page.data:
            return list(runs.values())
        offset = page.offset + len(page.data)


async def _wait_out_recent_fatal(key: tuple[str, str], logger: Any) -> None:
    last = _recent_fatal.get(key)
    if last is None:
        return
    remaining = FATAL_RECHECK_SECONDS - (time.monotonic() - last[0])
    if remaining > 0:
        logger.warning("Not polling Coverbase for %.0f s after this error: %s", remaining, last[1])
        await asyncio.sleep(remaining)


class CoverbaseWorkflowRunEventTrigger(BaseEventTrigger):
    """Emit one event per run of ``workflow_name`` that reaches one of ``statuses`` after the watch began.

    See the module docstring for how restarts, shared polls and the legacy API are handled.

    :param workflow_name: The workflow to watch.
    :param coverbase_conn_id: The Airflow connection (the key is looked up in the triggerer).
    :param statuses: Terminal statuses to emit: ``completed``, ``failed``, ``cancelled``
        (``canceled`` is accepted).
    :param poll_interval: Seconds between polls.
    :param lookback: Only runs created within this many seconds are listed (default 30 days).
    :param page_size: Runs per list request (1-500).
    """

    def __init__(
        self,
        workflow_name: str,
        coverbase_conn_id: str = CoverbaseHook.default_conn_name,
        statuses: str | Iterable[str] = ("completed",),
        poll_interval: float = DEFAULT_PULL_POLL_INTERVAL,
        lookback: float = DEFAULT_PULL_LOOKBACK,  # 30 days
        page_size: int = MAX_LIST_LIMIT,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseEventTrigger is untyped
        encode_path_segment(workflow_name, what="workflow_name")  # same checks as the API calls
        if not isinstance(coverbase_conn_id, str) or not coverbase_conn_id:
            raise ValueError(f"coverbase_conn_id must be a non-empty string, got {coverbase_conn_id!r}")
        self.workflow_name = workflow_name
        self.coverbase_conn_id = coverbase_conn_id
        self.statuses = normalise_statuses(statuses)
        if not float(poll_interval) > 0:
            raise ValueError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")
        self.poll_interval = float(poll_interval)
        if not float(lookback) >= self.poll_interval:
            raise ValueError(f"lookback must be at least poll_interval ({self.poll_interval:g} s), got {lookback!r}")
        self.lookback = float(lookback)
        if not (isinstance(page_size, int) and 1 <= page_size <= MAX_LIST_LIMIT):
            raise ValueError(f"page_size must be between 1 and {MAX_LIST_LIMIT}, got {page_size!r}")
        self.page_size = page_size
        self._state: WatchState | None = None
        self._store_unusable = False
        self._hook: CoverbaseHook | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and configuration only: equal configurations hash equal on every parse."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "workflow_name": self.workflow_name,
                "coverbase_conn_id": self.coverbase_conn_id,
                "statuses": list(self.statuses),
                "poll_interval": self.poll_interval,
                "lookback": self.lookback,
                "page_size": self.page_size,
            },
        )

    @property
    def state_key(self) -> str:
        """The asset state store key of this watch's state."""
        return f"coverbase-watch:{self.coverbase_conn_id}:{self.workflow_name}:{','.join(self.statuses)}"

    @property
    def api_statuses(self) -> list[str]:
        return [API_STATUS[WorkflowRunStatus(s)] for s in self.statuses]

    # ---- state ---------------------------------------------------------------------------

    def _store(self) -> Any:
        """The asset state store accessor to keep the state in, or ``None`` (memory only)."""
        store = getattr(self, "asset_state_store", None)
        if store is None or self._store_unusable:
            return None
        by_name = getattr(store, "_by_name", None)
        by_uri = getattr(store, "_by_uri", None)
        if isinstance(by_name, dict) and isinstance(by_uri, dict) and len(by_name) + len(by_uri) > 1:
            # Watching several assets: keep the state with one of them, chosen the same way every time.
            accessors = [by_name[k] for k in sorted(by_name)] + [by_uri[k] for k in sorted(by_uri)]
            return accessors[0]
        return store

    async def _load_state(self) -> None:
        store = self._store()
        if store is None:
            self.log.info(
                "No asset state store (Airflow < 3.3, or not run by an AssetWatcher): each start of this watch "
                "takes a new baseline"
            )
            return
        try:
            stored = await store.aget(self.state_key)
        except (AttributeError, TypeError, ValueError) as exc:
            # The store's interface is not what this code expects: keep the state in memory instead.
            self._store_unusable = True
            self.log.warning("The asset state store is unusable here, keeping the watch state in memory: %s", exc)
            return
        except Exception as exc:
            self.log.warning("Could not read the watch state %s, taking a new baseline: %s", self.state_key, exc)
            return
        self._state = WatchState.from_json(stored)
        if self._state is not None:
            self.log.info(
                "Resuming the watch of '%s' from its stored state (watermark %s, %d runs near it)",
                self.workflow_name,
                self._state.watermark,
                len(self._state.handled),
            )

    async def _save_state(self, state: WatchState) -> bool:
        store = self._store()
        if store is None:
            return True
        try:
            await store.aset(self.state_key, state.to_json())
        except Exception as exc:
            # Not emitting is the safe side: the runs stay new and are tried again next poll.
            self.log.warning("Could not store the watch state %s; emitting nothing this poll: %s", self.state_key, exc)
            return False
        return True

    async def _events_from(self, runs: Iterable[WorkflowRun], *, workflow_filter: bool) -> list[TriggerEvent]:
        """The events of one listing, after the state that records them is stored."""
        baseline = self._state is None
        new, state = select_new_runs(self._state, runs, self.statuses, self.workflow_name if workflow_filter else None)
        if (new or baseline or state != self._state) and not await self._save_state(state):
            return []
        if baseline:
            self.log.info(
                "Watching '%s' for %s runs; %d already finished runs are the baseline",
                self.workflow_name,
                "/".join(self.statuses),
                len(state.handled),
            )
        self._state = state
        events = []
        for run in new:
            self.log.info("Coverbase run %s of '%s' is %s", run.workflow_run_id, self.workflow_name, run.status.value)
            events.append(TriggerEvent(event_payload(run)))  # type: ignore[no-untyped-call]
        return events

    # ---- standalone poll -----------------------------------------------------------------

    def _recent_key(self, workflow: bool = True) -> tuple[str, str]:
        return (self.coverbase_conn_id, self.workflow_name if workflow else "")

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll this workflow's finished runs forever, yielding one event per newly finished run."""
        _note_start(self.state_key, self.workflow_name, self.log)
        await _wait_out_recent_fatal(self._recent_key(), self.log)
        self.log.info("Watching '%s' with a poll of its own every %g s", self.workflow_name, self.poll_interval)
        self._hook = CoverbaseHook(self.coverbase_conn_id)
        await self._load_state()
        errors = ErrorStreak(self.poll_interval, WATCH_ERROR_POLICY)
        try:
            while True:
                try:
                    runs = await _list_finished(
                        self._hook,
                        workflow_name=self.workflow_name,
                        api_statuses=self.api_statuses,
                        lookback=self.lookback,
                        limit=self.page_size,
                    )
                except Exception as exc:
                    fatal = _fatal(exc, self.coverbase_conn_id, self.workflow_name)
                    if fatal is not None:
                        _recent_fatal[self._recent_key()] = (time.monotonic(), fatal.message)
                        raise fatal from None
                    pause = errors.failed(exc).pause
                    self.log.warning(
                        "Polling Coverbase failed (%d in a row), retry in %.0f s: %s", errors.failures, pause, exc
                    )
                else:
                    errors.succeeded()
                    _recent_fatal.pop(self._recent_key(), None)
                    for event in await self._events_from(runs, workflow_filter=False):
                        yield event
                    pause = self.poll_interval
                await asyncio.sleep(pause)
        finally:
            await self._close()

    # ---- shared poll (Airflow >= 3.3) ----------------------------------------------------

    def shared_stream_key(self) -> Hashable | None:
        """One poll per connection, poll interval, lookback and page size."""
        return ("coverbase-runs", self.coverbase_conn_id, self.poll_interval, self.lookback, self.page_size)

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        """List the finished runs of every workflow of the connection, once per poll interval.

        Transient errors back off and retry; a fatal one (e.g. the legacy API) ends the poll with
        an error, which the triggerer hands to every watcher sharing it.
        """
        conn_id = str(kwargs["coverbase_conn_id"])
        poll_interval = float(kwargs["poll_interval"])
        await _wait_out_recent_fatal((conn_id, ""), log)
        hook = CoverbaseHook(conn_id)
        errors = ErrorStreak(poll_interval, WATCH_ERROR_POLICY)
        try:
            while True:
                try:
                    runs = await _list_finished(
                        hook,
                        workflow_name=None,
                        api_statuses=_ALL_TERMINAL,
                        lookback=float(kwargs["lookback"]),
                        limit=int(kwargs["page_size"]),
                    )
                except Exception as exc:
                    fatal = _fatal(exc, conn_id, None)
                    if fatal is not None:
                        _recent_fatal[(conn_id, "")] = (time.monotonic(), fatal.message)
                        raise fatal from None
                    pause = errors.failed(exc).pause
                    log.warning(
                        "Shared Coverbase poll failed (%d in a row), retry in %.0f s: %s", errors.failures, pause, exc
                    )
                else:
                    errors.succeeded()
                    yield _Listing(tuple(runs), time.time())
                    pause = poll_interval
                await asyncio.sleep(pause)
        finally:
            await hook.aclose()

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        """Check the workflow exists, then pick this watch's new runs from every shared listing."""
        _note_start(self.state_key, self.workflow_name, self.log)
        await _wait_out_recent_fatal(self._recent_key(), self.log)
        await _wait_out_recent_fatal(self._recent_key(workflow=False), self.log)
        self._hook = CoverbaseHook(self.coverbase_conn_id)
        try:
            try:
                await self._hook.alist_workflow_runs(workflow_name=self.workflow_name, limit=1)
            except Exception as exc:
                fatal = _fatal(exc, self.coverbase_conn_id, self.workflow_name)
                if fatal is not None:
                    _recent_fatal[self._recent_key()] = (time.monotonic(), fatal.message)
                    raise fatal from None
                self.log.warning("Could not check that workflow '%s' exists, going on: %s", self.workflow_name, exc)
            await self._close()
            self.log.info(
                "Watching '%s' through the poll shared by the watchers of connection '%s'",
                self.workflow_name,
                self.coverbase_conn_id,
            )
            await self._load_state()
            async for listing in shared_stream:
                if not isinstance(listing, _Listing):
                    continue
                for event in await self._events_from(listing.runs, workflow_filter=True):
                    yield event
        finally:
            await self._close()

    # ---- lifecycle -----------------------------------------------------------------------

    async def _close(self) -> None:
        if self._hook is not None:
            await self._hook.aclose()
            self._hook = None

    async def cleanup(self) -> None:
        """Close the HTTP client on every exit (cancel, triggerer restart, error)."""
        await self._close()
