"""The JSON API behind the "Coverbase" views of the Airflow UI (a task instance tab and a nav page).

Mounted by :class:`~airflow_provider_coverbase.plugins.ui.CoverbaseUIPlugin` on ``airflow
api-server`` at :data:`URL_PREFIX`:

- ``GET /api/runs``: every Coverbase run Airflow started, watched or heard of by webhook, newest
  first, filtered (``status``, ``workflow``, ``dag_id``, ``conn_id``, ``stale_only``) and paginated
  (``limit``, ``offset``), with the filter choices (``facets``) and the total. A run is *stale*
  when it is not finished and made no progress (no checkpoint, no start) for ``stale_hours``.
- ``GET /api/task-instance``: the run of one task instance (``dag_id``, ``dag_run_id``,
  ``task_id``, ``map_index``): the record the task pushed, refreshed from Coverbase while the run
  is not finished, and the webhook deliveries received for it.
- ``GET /static/main.umd.cjs``: the React bundle the UI loads.

**Authentication and authorization are Airflow's own.** Every endpoint needs a valid Airflow token
(``GetUserDep``: 401 without one). Runs recorded by task instances are visible only when the auth
manager lets the user read the DAG (``get_authorized_dag_ids``, as Airflow's own XCom and task
instance endpoints filter), in the rows, the total and the filter choices alike. A run known only
from webhooks has no DAG: like an asset event without a source DAG in Airflow's own API, it is
visible to a user who may read assets.

**Where the data comes from.** The XCom record each task pushes
(:mod:`airflow_provider_coverbase.monitoring`), the receiver's dedupe table and its asset events;
nothing here writes to the database. For the rows on screen whose run is not finished, the run is
read from Coverbase through the task's connection: at most one GET per visible row, none while the
cached reading is younger than :data:`LIVE_TTL` seconds, one attempt with short timeouts, through
one client per connection (so one request budget per connection in this process). The API key is
used only inside this process; no answer contains it.

Records are parsed once per process and kept (by XCom row and timestamp), so a page over 10,000
recorded runs reads the XCom keys and timestamps and parses only what changed
(``benchmarks/ui_api.py``).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from airflow_provider_coverbase.client import CoverbaseClient, RetryPolicy
from airflow_provider_coverbase.exceptions import CoverbaseError
from airflow_provider_coverbase.models import WorkflowRun
from airflow_provider_coverbase.monitoring import XCOM_KEY, checkpoint_times, current_step, expected_next_poll
from airflow_provider_coverbase.webhooks import event_kind  # the one table of event types

__all__ = ["LIVE_TTL", "URL_PREFIX", "create_app"]

URL_PREFIX = "/coverbase-ui"
#: Seconds a reading of a run from Coverbase is reused before the next page view reads it again.
LIVE_TTL = 15.0
#: Seconds allowed for reading one run from Coverbase while answering.
LIVE_TIMEOUT = 3.0
MAX_PAGE = 100
DEFAULT_STALE_HOURS = 24.0
TERMINAL = ("completed", "failed", "cancelled")
BUNDLE_DIR = Path(__file__).parent / "www" / "dist"


# ---- who may see what -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Access:
    """What the calling user may read: the DAG ids, and whether assets (webhook-only runs)."""

    dag_ids: frozenset[str]
    assets: bool


def _access(user: Any) -> Access:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import AssetDetails

    manager = get_auth_manager()
    dag_ids = frozenset(manager.get_authorized_dag_ids(user=user, method="GET"))
    assets = bool(manager.is_authorized_asset(method="GET", details=AssetDetails(), user=user))
    return Access(dag_ids, assets)


def _user_access(user: GetUserDep) -> Access:
    """The calling user's access (401 from ``GetUserDep`` without a valid Airflow token)."""
    return _access(user)


AccessDep = Annotated[Access, Depends(_user_access)]


# ---- records, parsed once ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One run as the page lists it, with the facts the filters and the order need."""

    key: tuple[str, str, str, int]  # dag_id, dag run id, task_id, map_index ("" ids for webhook-only runs)
    record: Mapping[str, Any]
    source: str  # "task" or "webhook"
    status: str | None = None
    workflow: str | None = None
    conn_id: str | None = None
    started: float = 0.0
    progress: float | None = None

    @classmethod
    def of(cls, key: tuple[str, str, str, int], record: Mapping[str, Any], source: str) -> Row:
        started = record.get("started_at") or record.get("last_poll_at") or 0.0
        return cls(
            key,
            record,
            source,
            status=record.get("status"),
            workflow=record.get("workflow_name") or record.get("workflow"),
            conn_id=record.get("conn_id"),
            started=float(started),
            progress=_last_progress(record),
        )

    def stale(self, now: float, stale_after: float) -> bool:
        return self.status not in TERMINAL and self.progress is not None and now - self.progress > stale_after


class _RecordCache:
    """Parsed XCom records by XCom row, refreshed by timestamp (thread safe).

    A cheap aggregate (count and newest timestamp of the records, count and newest delivery of the
    webhook table) is the version of what is stored: while it does not change, nothing is read
    again; when it does, the keys and timestamps are read and only new or changed rows are parsed.
    The sorted rows one user may see are kept per version and access.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str, str, int], tuple[datetime, Row]] = {}
        self._version: tuple[Any, ...] | None = None
        self._webhook_rows: list[Row] = []
        self._views: dict[tuple[Any, ...], tuple[list[Row], dict[str, list[str]]]] = {}

    def _read_version(self, session: Session) -> tuple[Any, ...]:
        from airflow_provider_coverbase.plugins import webhook_dedupe

        xcom = _xcom_table()
        version: tuple[Any, ...] = tuple(
            session.execute(
                sa.select(sa.func.count(), sa.func.max(xcom.c.timestamp)).where(xcom.c.key == XCOM_KEY)
            ).one()
        )
        if _has_dedupe_table(session):
            table = webhook_dedupe.dedupe_table
            version += tuple(session.execute(sa.select(sa.func.count(), sa.func.max(table.c.received_at))).one())
        return version

    def refresh(self, session: Session) -> tuple[Any, ...]:
        """Bring the cache up to what is stored; returns the version."""
        version = self._read_version(session)
        with self._lock:
            if version == self._version:
                return version
        xcom = _xcom_table()
        c = xcom.c
        stamps = session.execute(
            sa.select(c.dag_id, c.run_id, c.task_id, c.map_index, c.timestamp).where(c.key == XCOM_KEY)
        ).all()
        current = {(d, r, t, int(m)): ts for d, r, t, m, ts in stamps}
        with self._lock:
            stale = [k for k, ts in current.items() if k not in self._rows or self._rows[k][0] != ts]
            for gone in set(self._rows) - set(current):
                del self._rows[gone]
        columns = (c.dag_id, c.run_id, c.task_id, c.map_index, c.timestamp, c.value)
        if len(stale) > 200:  # many: one scan of the records beats a long OR
            batches = [sa.select(*columns).where(c.key == XCOM_KEY)]
        else:
            batches = [
                sa.select(*columns).where(
                    c.key == XCOM_KEY,
                    sa.or_(
                        *(
                            sa.and_(c.dag_id == d, c.run_id == r, c.task_id == t, c.map_index == m)
                            for d, r, t, m in chunk
                        )
                    ),
                )
                for chunk in _chunks(stale, 100)
            ]
        wanted = set(stale)
        parsed: dict[tuple[str, str, str, int], tuple[datetime, Row]] = {}
        for query in batches:
            for d, r, t, m, ts, value in session.execute(query):
                key = (d, r, t, int(m))
                if key in wanted and (record := _decode(value)) is not None:
                    parsed[key] = (ts, Row.of(key, record, "task"))
        known = {str(row.record.get("workflow_run_id")) for _, row in parsed.values()}
        with self._lock:
            self._rows.update(parsed)
            known |= {str(row.record.get("workflow_run_id")) for _, row in self._rows.values()}
        webhook_rows = [
            Row.of(("", "", "", -1), _webhook_record(conn_id, run_id, events), "webhook")
            for (conn_id, run_id), events in _deliveries(session).items()
            if run_id not in known  # a run some task recorded, in any DAG, is that task's row
        ]
        with self._lock:
            self._webhook_rows = webhook_rows
            self._version = version
            self._views.clear()
        return version

    def records(self, session: Session) -> dict[tuple[str, str, str, int], Mapping[str, Any]]:
        self.refresh(session)
        with self._lock:
            return {k: row.record for k, (_, row) in self._rows.items()}

    def view(self, session: Session, access: Access) -> tuple[list[Row], dict[str, list[str]]]:
        """The rows ``access`` may see, newest first, and the filter choices among them."""
        version = self.refresh(session)
        cache_key = (version, access)
        with self._lock:
            cached = self._views.get(cache_key)
            if cached is not None:
                return cached
            rows = [row for _, row in self._rows.values() if row.key[0] in access.dag_ids]
            if access.assets:
                rows += self._webhook_rows
        rows.sort(key=lambda row: row.started, reverse=True)
        facets = {
            "status": sorted({row.status for row in rows if row.status}),
            "workflow": sorted({row.workflow for row in rows if row.workflow}),
            "dag_id": sorted({row.key[0] for row in rows if row.key[0]}),
            "conn_id": sorted({row.conn_id for row in rows if row.conn_id}),
        }
        with self._lock:
            if len(self._views) > 64:
                self._views.clear()
            self._views[cache_key] = (rows, facets)
        return rows, facets


def _xcom_table() -> sa.Table:
    from airflow.models.xcom import XComModel

    table = XComModel.__table__
    assert isinstance(table, sa.Table)
    return table


def _has_dedupe_table(session: Session) -> bool:
    from airflow_provider_coverbase.plugins import webhook_dedupe

    return bool(sa.inspect(session.get_bind()).has_table(webhook_dedupe.TABLE_NAME))


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _decode(value: Any) -> dict[str, Any] | None:
    """An XCom value as stored (a JSON text inside the JSON column) -> the record, or ``None``."""
    for _ in range(2):
        if isinstance(value, dict):
            return value if value.get("workflow_run_id") else None
        if not isinstance(value, str | bytes):
            return None
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) and value.get("workflow_run_id") else None


_records = _RecordCache()


# ---- webhooks ---------------------------------------------------------------------------------


def _deliveries(session: Session, run_ids: Iterable[str] | None = None) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Webhook deliveries recorded by the receiver, by (connection, run id), oldest first."""
    from airflow.models.asset import AssetEvent

    from airflow_provider_coverbase.plugins import webhook_dedupe

    table = webhook_dedupe.dedupe_table
    if not _has_dedupe_table(session):
        return {}
    query = (
        sa.select(
            table.c.conn_id,
            table.c.workflow_run_id,
            table.c.event_id,
            table.c.event_type,
            table.c.received_at,
            table.c.asset_uri,
            AssetEvent.extra,
        )
        .outerjoin(AssetEvent, AssetEvent.id == table.c.asset_event_id)
        .where(table.c.workflow_run_id.is_not(None))
        .order_by(table.c.received_at)
    )
    if run_ids is not None:
        query = query.where(table.c.workflow_run_id.in_(list(run_ids)))
    result: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for conn_id, run_id, event_id, event_type, received_at, asset_uri, extra in session.execute(query):
        extra = extra if isinstance(extra, dict) else {}
        result.setdefault((conn_id, run_id), []).append(
            {
                "event_id": event_id,
                "event_type": event_type,
                "received_at": float(received_at),
                "occurred_at": _unix(extra.get("occurred_at")),
                "status": extra.get("status"),
                "checkpoint": extra.get("checkpoint"),
                "workflow_name": extra.get("workflow_name"),
                "asset_uri": asset_uri,
            }
        )
    return result


def _unix(value: Any) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def _event_status(event_type: str) -> str | None:
    """``completed``/``failed`` for a run's end event (both naming schemes), else ``None``."""
    kind = event_kind(event_type)
    return kind if kind in ("completed", "failed") else None


def _webhook_record(conn_id: str, run_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """What the deliveries alone say about a run nobody in Airflow started or watched."""
    status = None
    workflow = None
    checkpoints = []
    for event in events:
        status = event["status"] or _event_status(event["event_type"]) or status
        workflow = event["workflow_name"] or workflow
        if event["checkpoint"]:
            at = event["occurred_at"] or event["received_at"]
            checkpoints.append({"name": event["checkpoint"], "at": at, "source": "webhook"})
    times = [e["occurred_at"] or e["received_at"] for e in events]
    return {
        "conn_id": conn_id,
        "workflow_run_id": run_id,
        "workflow_name": workflow,
        "status": status or "running",
        "started_at": min(times) if times else None,
        "checkpoints": checkpoints,
        "origin": "webhook",
        "url": None,
    }


def _with_webhook_checkpoints(record: Mapping[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """The record, with the times Coverbase gave in ``workflow.checkpoint`` deliveries."""
    sent = {e["checkpoint"]: e["occurred_at"] for e in events if e["checkpoint"] and e["occurred_at"]}
    if not sent:
        return dict(record)
    checkpoints = [
        {"name": c["name"], "at": sent[c["name"]], "source": "webhook"}
        if c.get("source") != "coverbase" and c["name"] in sent
        else c
        for c in record.get("checkpoints") or []
    ]
    return {**record, "checkpoints": checkpoints}


# ---- live readings from Coverbase -------------------------------------------------------------


class _Live:
    """Readings of runs from Coverbase for the rows on screen: cached, one client per connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._clients: dict[str, CoverbaseClient] = {}

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
            clients, self._clients = self._clients, {}
        for client in clients.values():
            client.close()

    def _client(self, conn_id: str) -> CoverbaseClient:
        with self._lock:
            client = self._clients.get(conn_id)
        if client is not None:
            return client
        from airflow_provider_coverbase.hooks.coverbase import CoverbaseHook, settings_from_connection

        conn = CoverbaseHook.get_connection(conn_id)
        settings = settings_from_connection(
            conn_id, host=conn.host, port=conn.port, password=conn.password, extra=conn.extra
        )
        config = dataclasses.replace(
            settings.client,
            timeout=min(settings.client.timeout, LIVE_TIMEOUT),
            connect_timeout=min(settings.client.connect_timeout, LIVE_TIMEOUT),
            retry=RetryPolicy(max_attempts=1),
        )
        client = CoverbaseClient(config=config)
        with self._lock:
            existing = self._clients.setdefault(conn_id, client)
        if existing is not client:
            client.close()
        return existing

    def refresh(self, record: Mapping[str, Any], now: float) -> dict[str, Any]:
        """The record updated from Coverbase (at most one GET; none while the cache is fresh)."""
        conn_id, run_id = record.get("conn_id"), record.get("workflow_run_id")
        if not conn_id or not run_id or record.get("status") in TERMINAL:
            return dict(record)
        key = (str(conn_id), str(run_id))
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now - cached[0] < LIVE_TTL:
            return _merge(record, cached[1])
        try:
            run = self._client(key[0]).get_workflow_run(key[1])
        except Exception as exc:  # an unreadable run shows the record, and why; not asked again until the TTL
            reason = exc.message if isinstance(exc, CoverbaseError) else type(exc).__name__
            failure = {"live_error": f"could not read the run from Coverbase: {reason}"}
            with self._lock:
                self._cache[key] = (now, {**(cached[1] if cached else {}), **failure})
            return {**record, **failure}
        reading = {**_reading(run, record, cached[1] if cached else None, now), "live_error": None}
        with self._lock:
            self._cache[key] = (now, reading)
        return _merge(record, reading)


def _reading(
    run: WorkflowRun, record: Mapping[str, Any], earlier: Mapping[str, Any] | None, now: float
) -> dict[str, Any]:
    previous = {"checkpoints": [*(record.get("checkpoints") or []), *((earlier or {}).get("checkpoints") or [])]}
    failed = run.failed_step
    return {
        "status": run.status.value,
        "api_status": run.api_status,
        "completed_at": run.completed_at.timestamp() if run.completed_at else None,
        "checkpoints": checkpoint_times(run, previous, now),
        "current_step": current_step(run),
        "failed_step": failed.label if failed is not None else None,
        "failure_reason": run.failure_reason,
        "read_at": now,
    }


def _merge(record: Mapping[str, Any], reading: Mapping[str, Any]) -> dict[str, Any]:
    return {**record, **reading, "live": "read_at" in reading}


_live = _Live()


# ---- shaping ----------------------------------------------------------------------------------


def _last_progress(record: Mapping[str, Any]) -> float | None:
    times = [float(c["at"]) for c in record.get("checkpoints") or [] if isinstance(c.get("at"), int | float)]
    started = record.get("started_at")
    if isinstance(started, int | float):
        times.append(float(started))
    return max(times) if times else None


def _ti_path(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    from urllib.parse import quote

    path = f"dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"
    return f"{path}/mapped/{map_index}" if map_index >= 0 else path


def _summary(row: Row, now: float, stale_after: float) -> dict[str, Any]:
    record = row.record
    dag_id, run_id, task_id, map_index = row.key
    checkpoints = record.get("checkpoints") or []
    progress = row.progress
    started = record.get("started_at")
    return {
        "source": row.source,
        "dag_id": dag_id or None,
        "dag_run_id": run_id or None,
        "task_id": task_id or None,
        "map_index": map_index,
        "try_number": record.get("try_number"),
        "ti_path": _ti_path(dag_id, run_id, task_id, map_index) if row.source == "task" else None,
        "conn_id": record.get("conn_id"),
        "workflow": row.workflow,
        "workflow_run_id": record.get("workflow_run_id"),
        "status": record.get("status"),
        "started_at": started,
        "age_seconds": now - float(started) if isinstance(started, int | float) else None,
        "last_checkpoint": checkpoints[-1]["name"] if checkpoints else None,
        "last_progress_at": progress,
        "stale": row.stale(now, stale_after),
        "coverbase_url": record.get("url"),
        "failure_reason": record.get("failure_reason"),
        "live_error": record.get("live_error"),
    }


# ---- endpoints --------------------------------------------------------------------------------


def list_runs(
    access: Access,
    session: Session,
    *,
    status: str | None = None,
    workflow: str | None = None,
    dag_id: str | None = None,
    conn_id: str | None = None,
    stale_hours: float = DEFAULT_STALE_HOURS,
    stale_only: bool = False,
    limit: int = 25,
    offset: int = 0,
    now: float | None = None,
) -> dict[str, Any]:
    """The page of runs (see the module docstring); the rows on it refreshed from Coverbase."""
    now = time.time() if now is None else now
    stale_after = stale_hours * 3600.0
    rows, facets = _records.view(session, access)
    wanted = {"status": status, "workflow": workflow, "conn_id": conn_id}
    chosen = [
        row
        for row in rows
        if (dag_id is None or row.key[0] == dag_id)
        and all(value is None or getattr(row, name) == value for name, value in wanted.items())
        and (not stale_only or row.stale(now, stale_after))
    ]
    refreshed = []
    for row in chosen[offset : offset + limit]:
        if row.source == "task" and row.status not in TERMINAL:
            row = Row.of(row.key, _live.refresh(row.record, now), "task")
        refreshed.append(_summary(row, now, stale_after))
    return {
        "total": len(chosen),
        "offset": offset,
        "limit": limit,
        "stale_hours": stale_hours,
        "facets": facets,
        "runs": refreshed,
        "now": now,
    }


def task_instance_run(
    access: Access, session: Session, *, dag_id: str, dag_run_id: str, task_id: str, map_index: int = -1
) -> dict[str, Any]:
    """The run of one task instance, refreshed from Coverbase while it is not finished."""
    if dag_id not in access.dag_ids:
        raise HTTPException(403, detail=f"You may not read DAG '{dag_id}'.")
    from airflow.models.taskinstance import TaskInstance

    state = session.execute(
        sa.select(TaskInstance.state, TaskInstance.try_number).where(
            TaskInstance.dag_id == dag_id,
            TaskInstance.run_id == dag_run_id,
            TaskInstance.task_id == task_id,
            TaskInstance.map_index == map_index,
        )
    ).first()
    record = _records.records(session).get((dag_id, dag_run_id, task_id, map_index))
    ti = {"state": state[0] if state else None, "try_number": state[1] if state else None}
    if record is None:
        return {"run": None, "task_instance": ti, "deliveries": []}
    now = time.time()
    events = _deliveries(session, [str(record["workflow_run_id"])]).get(
        (str(record.get("conn_id")), str(record["workflow_run_id"])), []
    )
    view = _with_webhook_checkpoints(_live.refresh(record, now), events)
    if ti["state"] in ("deferred", "running", "up_for_reschedule") and view.get("status") not in TERMINAL:
        view["next_poll_at"] = expected_next_poll(view, now) if view.get("live") else view.get("next_poll_at")
    else:
        view["next_poll_at"] = None
    view["last_progress_at"] = _last_progress(view)
    return {"run": view, "task_instance": ti, "deliveries": events, "now": now}


def create_app() -> FastAPI:
    """The FastAPI app of the UI's API and bundle (mounted at :data:`URL_PREFIX`)."""
    app = FastAPI(title="Coverbase UI", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/api/runs")
    def runs(
        access: AccessDep,
        session: SessionDep,
        status: str | None = None,
        workflow: str | None = None,
        dag_id: str | None = None,
        conn_id: str | None = None,
        stale_hours: Annotated[float, Query(gt=0, le=24 * 365)] = DEFAULT_STALE_HOURS,
        stale_only: bool = False,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 25,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        return list_runs(
            access,
            session,
            status=status,
            workflow=workflow,
            dag_id=dag_id,
            conn_id=conn_id,
            stale_hours=stale_hours,
            stale_only=stale_only,
            limit=limit,
            offset=offset,
        )

    @app.get("/api/task-instance")
    def task_instance(
        access: AccessDep,
        session: SessionDep,
        dag_id: str,
        dag_run_id: str,
        task_id: str,
        map_index: int = -1,
    ) -> dict[str, Any]:
        return task_instance_run(
            access, session, dag_id=dag_id, dag_run_id=dag_run_id, task_id=task_id, map_index=map_index
        )

    @app.get("/static/main.umd.cjs", include_in_schema=False)
    def bundle() -> FileResponse:
        # An explicit JavaScript type: Python knows no type for ``.cjs``, and browsers refuse to
        # import a module served as text/plain.
        return FileResponse(BUNDLE_DIR / "main.umd.cjs", media_type="text/javascript")

    return app
