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
nothing here writes to the database; :mod:`~airflow_provider_coverbase.plugins.ui_records` reads
them into rows, parsed once per process. For the rows on screen whose run is not finished, the run
is read from Coverbase through the task's connection
(:mod:`~airflow_provider_coverbase.plugins.ui_live`): at most one GET per visible row, none while
the cached reading is younger than :data:`LIVE_TTL` seconds. The API key is used only inside this
process; no answer contains it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from airflow_provider_coverbase.monitoring import TERMINAL, expected_next_poll
from airflow_provider_coverbase.plugins import ui_live, ui_records
from airflow_provider_coverbase.plugins.ui_live import LIVE_TTL
from airflow_provider_coverbase.plugins.ui_records import Access, Row, last_progress

__all__ = ["LIVE_TTL", "URL_PREFIX", "create_app"]

URL_PREFIX = "/coverbase-ui"
MAX_PAGE = 100
DEFAULT_STALE_HOURS = 24.0
BUNDLE_DIR = Path(__file__).parent / "www" / "dist"


# ---- who may see what -------------------------------------------------------------------------


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


# ---- shaping ----------------------------------------------------------------------------------


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


class RunsQuery(BaseModel):
    """The filters and the page of ``GET /api/runs``: its query parameters, checked by FastAPI (422)."""

    model_config = ConfigDict(frozen=True)

    status: str | None = None
    workflow: str | None = None
    dag_id: str | None = None
    conn_id: str | None = None
    stale_hours: float = Field(DEFAULT_STALE_HOURS, gt=0, le=24 * 365)
    stale_only: bool = False
    limit: int = Field(25, ge=1, le=MAX_PAGE)
    offset: int = Field(0, ge=0)


def list_runs(access: Access, session: Session, query: RunsQuery, *, now: float | None = None) -> dict[str, Any]:
    """The page of runs (see the module docstring); the rows on it refreshed from Coverbase."""
    now = time.time() if now is None else now
    stale_after = query.stale_hours * 3600.0
    rows, facets = ui_records.cache.view(session, access)
    wanted = {"status": query.status, "workflow": query.workflow, "conn_id": query.conn_id}
    chosen = [
        row
        for row in rows
        if (query.dag_id is None or row.key[0] == query.dag_id)
        and all(value is None or getattr(row, name) == value for name, value in wanted.items())
        and (not query.stale_only or row.stale(now, stale_after))
    ]
    refreshed = []
    for row in chosen[query.offset : query.offset + query.limit]:
        if row.source == "task" and row.status not in TERMINAL:
            row = Row.of(row.key, ui_live.readings.refresh(row.record, now), "task")
        refreshed.append(_summary(row, now, stale_after))
    return {
        "total": len(chosen),
        "offset": query.offset,
        "limit": query.limit,
        "stale_hours": query.stale_hours,
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
    record = ui_records.cache.record(session, (dag_id, dag_run_id, task_id, map_index))
    ti = {"state": state[0] if state else None, "try_number": state[1] if state else None}
    if record is None:
        return {"run": None, "task_instance": ti, "deliveries": []}
    now = time.time()
    events = ui_records.deliveries(session, [str(record["workflow_run_id"])]).get(
        (str(record.get("conn_id")), str(record["workflow_run_id"])), []
    )
    view = ui_records.with_webhook_checkpoints(ui_live.readings.refresh(record, now), events)
    if ti["state"] in ("deferred", "running", "up_for_reschedule") and view.get("status") not in TERMINAL:
        view["next_poll_at"] = expected_next_poll(view, now) if view.get("live") else view.get("next_poll_at")
    else:
        view["next_poll_at"] = None
    view["last_progress_at"] = last_progress(view)
    return {"run": view, "task_instance": ti, "deliveries": events, "now": now}


def create_app() -> FastAPI:
    """The FastAPI app of the UI's API and bundle (mounted at :data:`URL_PREFIX`)."""
    app = FastAPI(title="Coverbase UI", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/api/runs")
    def runs(access: AccessDep, session: SessionDep, query: Annotated[RunsQuery, Query()]) -> dict[str, Any]:
        return list_runs(access, session, query)

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
