"""Where a verified webhook event becomes an Airflow asset event, exactly once per ``event_id``.

Runs inside ``airflow api-server`` and uses Airflow's metadata database (internal API: the ORM
models and ``asset_manager``, as Airflow's own REST endpoint does).

**Dedupe.** Coverbase delivers at least once, unordered, possibly to several API-server replicas at
the same moment. The record of which events were already turned into asset events lives in the
metadata database, in a small table of this provider, ``coverbase_webhook_event``, whose primary key
is ``(conn_id, event_id)``. Recording an event inserts that row and the asset event in **one
transaction**: a second delivery of the same event (a redelivery, another replica, after a restart)
fails the primary key and is answered as a duplicate; if creating the asset event fails, the row
is rolled back too, so Coverbase's retry still gets through. A primary key is enforced by every
database Airflow supports, with no reliance on isolation levels or row locks.

The table is created by the receiver itself, on first use, with ``CREATE TABLE IF NOT EXISTS``
semantics; it is not part of Airflow's schema, so Airflow's migrations (``airflow db migrate``) leave
it alone and the provider needs no migration of its own. ``airflow db reset`` may drop it; it is
created again on the next delivery.

**Retention.** Rows older than :data:`RETENTION` (30 days) are deleted, at most once an hour per
process, when an event is recorded. That is far longer than Coverbase retries a delivery (24 hours in
the legacy contract, about 10 minutes in V3), so a redelivery always finds its row.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from airflow_provider_coverbase.webhooks import CoverbaseWebhookEvent

log = logging.getLogger(__name__)

TABLE_NAME = "coverbase_webhook_event"
#: How long a delivered event's dedupe record is kept.
RETENTION = timedelta(days=30)
_PRUNE_EVERY_SECONDS = 3600.0

_metadata = sa.MetaData()
dedupe_table = sa.Table(
    TABLE_NAME,
    _metadata,
    sa.Column("conn_id", sa.String(250), primary_key=True),
    sa.Column("event_id", sa.String(250), primary_key=True),
    sa.Column("event_type", sa.String(250), nullable=False),
    sa.Column("workflow_run_id", sa.String(250), nullable=True),
    sa.Column("asset_uri", sa.String(1500), nullable=True),
    sa.Column("asset_event_id", sa.Integer, nullable=True),
    #: Unix seconds (an integer compares the same way on every database).
    sa.Column("received_at", sa.BigInteger, nullable=False, index=True),
)

_lock = threading.Lock()
_table_ready = False
_last_prune = 0.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What recording an event did."""

    status: Literal["created", "duplicate", "no_asset"]
    asset_event_id: int | None = None


def _engine() -> sa.Engine:
    from airflow import settings

    if settings.engine is None:  # the API server configures the ORM at start
        raise RuntimeError("Airflow's metadata database is not configured in this process")
    return settings.engine


def ensure_table(force: bool = False) -> None:
    """Create the dedupe table if it does not exist (once per process; safe across replicas)."""
    global _table_ready
    with _lock:
        if _table_ready and not force:
            return
        engine = _engine()
        try:
            _metadata.create_all(engine, checkfirst=True)
        except (OperationalError, ProgrammingError):
            # Another replica created it between our check and our CREATE.
            if not sa.inspect(engine).has_table(TABLE_NAME):
                raise
        _table_ready = True


def already_recorded(conn_id: str, event_id: str) -> bool:
    """True when this event was already turned into an asset event (a cheap check before API calls)."""
    ensure_table()
    with _engine().connect() as connection:
        row = connection.execute(
            sa.select(dedupe_table.c.event_id).where(
                dedupe_table.c.conn_id == conn_id, dedupe_table.c.event_id == event_id
            )
        ).first()
    return row is not None


def record_event(
    conn_id: str, event: CoverbaseWebhookEvent, *, asset_name: str, asset_uri: str, extra: dict[str, Any]
) -> Outcome:
    """Insert the dedupe row and the asset event in one transaction; a duplicate creates nothing."""
    try:
        return _record(conn_id, event, asset_name, asset_uri, extra)
    except (OperationalError, ProgrammingError):
        # The table may have been dropped under us (``airflow db reset``): create it and try once more.
        ensure_table(force=True)
        return _record(conn_id, event, asset_name, asset_uri, extra)


def _record(
    conn_id: str, event: CoverbaseWebhookEvent, asset_name: str, asset_uri: str, extra: dict[str, Any]
) -> Outcome:
    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session

    ensure_table()
    outcome: Outcome
    with create_session(scoped=False) as session:
        # The row first: a concurrent delivery of the same event blocks here until this transaction
        # ends, then fails the primary key.
        try:
            session.execute(
                dedupe_table.insert().values(
                    conn_id=conn_id,
                    event_id=event.event_id,
                    event_type=event.event_type,
                    workflow_run_id=event.workflow_run_id,
                    asset_uri=asset_uri,
                    received_at=int(time.time()),
                )
            )
        except IntegrityError:
            session.rollback()
            return Outcome("duplicate")
        asset = session.scalar(sa.select(AssetModel).where(AssetModel.name == asset_name, AssetModel.uri == asset_uri))
        if asset is None:
            session.rollback()  # no DAG uses this asset: nothing to record
            return Outcome("no_asset")
        asset_event = asset_manager.register_asset_change(
            asset=asset, extra=extra, session=session, source_is_api=True, api_user_teams=set()
        )
        if asset_event is None:  # pragma: no cover - the asset was looked up in this transaction
            raise RuntimeError(f"Airflow created no asset event for {asset_uri}")
        session.execute(
            dedupe_table.update()
            .where(dedupe_table.c.conn_id == conn_id, dedupe_table.c.event_id == event.event_id)
            .values(asset_event_id=asset_event.id)
        )
        outcome = Outcome("created", asset_event.id)
    _maybe_prune()
    return outcome


def _maybe_prune() -> None:
    global _last_prune
    now = time.monotonic()
    with _lock:
        if _last_prune and now - _last_prune < _PRUNE_EVERY_SECONDS:
            return
        _last_prune = now
    prune()


def prune(older_than: timedelta = RETENTION) -> int:
    """Delete dedupe rows older than ``older_than``; returns how many were deleted."""
    ensure_table()
    cutoff = int(time.time() - older_than.total_seconds())
    with _engine().begin() as connection:
        result = connection.execute(dedupe_table.delete().where(dedupe_table.c.received_at < cutoff))
    deleted = int(result.rowcount or 0)
    if deleted:
        log.info("Coverbase webhooks: pruned %d dedupe records older than %s", deleted, older_than)
    return deleted
