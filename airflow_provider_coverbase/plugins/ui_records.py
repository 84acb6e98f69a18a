"""The runs the Coverbase UI lists, read from what Airflow stores: XCom records and webhook deliveries.

Each task's XCom record (:mod:`airflow_provider_coverbase.monitoring`) becomes a :class:`Row`; so
does each run known only from the webhook receiver's dedupe table and its asset events. Records
are parsed once per process and kept (by XCom row and timestamp) in :data:`cache`, so a page over
10,000 recorded runs reads the XCom keys and timestamps and parses only what changed
(``benchmarks/ui_api.py``). Nothing here writes to the database. Used by
:mod:`airflow_provider_coverbase.plugins.ui_api`.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from airflow_provider_coverbase.assets import workflow_of_asset_uri
from airflow_provider_coverbase.monitoring import TERMINAL, XCOM_KEY
from airflow_provider_coverbase.webhooks import event_kind  # the one table of event types


@dataclasses.dataclass(frozen=True, slots=True)
class Access:
    """What the calling user may read: the DAG ids, and whether assets (webhook-only runs)."""

    dag_ids: frozenset[str]
    assets: bool


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
            progress=last_progress(record),
        )

    def stale(self, now: float, stale_after: float) -> bool:
        return self.status not in TERMINAL and self.progress is not None and now - self.progress > stale_after


class RecordCache:
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
            for (conn_id, run_id), events in deliveries(session).items()
            if run_id not in known  # a run some task recorded, in any DAG, is that task's row
        ]
        with self._lock:
            self._webhook_rows = webhook_rows
            self._version = version
            self._views.clear()
        return version

    def record(self, session: Session, key: tuple[str, str, str, int]) -> Mapping[str, Any] | None:
        """The current record of one task instance (``dag_id, run_id, task_id, map_index``), or ``None``."""
        self.refresh(session)
        with self._lock:
            found = self._rows.get(key)
        return found[1].record if found is not None else None

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


cache = RecordCache()


# ---- webhooks ---------------------------------------------------------------------------------


def deliveries(session: Session, run_ids: Iterable[str] | None = None) -> dict[tuple[str, str], list[dict[str, Any]]]:
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
                # An event no DAG used has no asset event: its asset URI still names the workflow.
                "workflow_name": extra.get("workflow_name") or (asset_uri and workflow_of_asset_uri(asset_uri)),
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


def with_webhook_checkpoints(record: Mapping[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
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


def last_progress(record: Mapping[str, Any]) -> float | None:
    times = [float(c["at"]) for c in record.get("checkpoints") or [] if isinstance(c.get("at"), int | float)]
    started = record.get("started_at")
    if isinstance(started, int | float):
        times.append(float(started))
    return max(times) if times else None
