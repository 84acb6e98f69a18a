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

**Decisions, not only asset events.** A genuine event that leads to no asset event (no DAG uses the
asset, the run is unknown to the API, the API reports another outcome) is recorded too, with no
``asset_event_id``: a replay of it is answered ``duplicate`` from this table, without reading the run
from Coverbase again. Only an undecided delivery (the API still reports the run as running, or could
not be read) leaves no row, so Coverbase's retry is handled afresh.

**Retention.** Rows older than :data:`RETENTION` (30 days) are deleted, at most once an hour per
process, when an event is recorded. A delivery is acceptable only while its signed time is within
the connection's timestamp tolerance of now (at most 7 days, see
:func:`airflow_provider_coverbase.webhooks.check_freshness`), so a row always outlives every
delivery that could still be accepted: more than twice the largest tolerance, and far longer than
Coverbase retries (24 hours in the legacy contract, about 10 minutes in V3).

**Storable or refused.** A value the database refuses (PostgreSQL: a value too long for its column,
text it cannot encode) raises :class:`UnstorableError`, which the receiver answers with 400: such a
delivery can never be stored, and a 5xx would only make Coverbase retry it for a day.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, ProgrammingError

from airflow_provider_coverbase.defaults import MAX_WEBHOOK_TIMESTAMP_TOLERANCE
from airflow_provider_coverbase.webhooks import CoverbaseWebhookEvent

log = logging.getLogger(__name__)
T = TypeVar("T")

TABLE_NAME = "coverbase_webhook_event"
#: How long a delivered event's dedupe record is kept.
RETENTION = timedelta(days=30)
assert RETENTION.total_seconds() > 2 * MAX_WEBHOOK_TIMESTAMP_TOLERANCE, "records must outlive acceptable replays"
#: The longest asset URI Airflow stores (``asset.uri`` is a 1,500-character column).
MAX_ASSET_URI_LENGTH = 1500
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


class UnstorableError(Exception):
    """The database refused a value of the event: the delivery can never be stored (answer 400)."""


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
    """Insert the dedupe row and the asset event in one transaction; a duplicate creates nothing.

    When no DAG uses the asset, the row is kept without an asset event (``no_asset``), so a replay is
    a ``duplicate``.

    :raises UnstorableError: the database refused one of the event's values.
    """
    return _retrying(lambda: _record(conn_id, event, asset_name, asset_uri, extra))


def record_decision(conn_id: str, event: CoverbaseWebhookEvent) -> bool:
    """Record a genuine event that leads to no asset event; False when it was already recorded.

    :raises UnstorableError: the database refused one of the event's values.
    """
    return _retrying(lambda: _insert_decision(conn_id, event))


def _retrying(action: Callable[[], T]) -> T:
    try:
        try:
            return action()
        except (OperationalError, ProgrammingError):
            # The table may have been dropped under us (``airflow db reset``): create it and try once more.
            ensure_table(force=True)
            return action()
    except (DataError, UnicodeEncodeError) as exc:
        # DataError: PostgreSQL refused a value (too long, bad text); a driver raises the other for
        # text it cannot encode. Never something a retry fixes.
        log.warning("Coverbase webhooks: the database refused an event: %s", type(exc).__name__)
        raise UnstorableError(f"the database cannot store this event ({type(exc).__name__})") from None


def _insert_decision(conn_id: str, event: CoverbaseWebhookEvent) -> bool:
    ensure_table()
    try:
        with _engine().begin() as connection:
            connection.execute(dedupe_table.insert().values(**_row(conn_id, event, None)))
    except IntegrityError:
        return False
    _maybe_prune()
    return True


def _row(conn_id: str, event: CoverbaseWebhookEvent, asset_uri: str | None) -> dict[str, Any]:
    return {
        "conn_id": conn_id,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "workflow_run_id": event.workflow_run_id,
        "asset_uri": asset_uri,
        "received_at": int(time.time()),
    }


def _record(
    conn_id: str, event: CoverbaseWebhookEvent, asset_name: str, asset_uri: str, extra: dict[str, Any]
) -> Outcome:
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session

    ensure_table()
    outcome: Outcome
    with create_session(scoped=False) as session:
        # The row first: a concurrent delivery of the same event blocks here until this transaction
        # ends, then fails the primary key.
        try:
            session.execute(dedupe_table.insert().values(**_row(conn_id, event, asset_uri)))
        except IntegrityError:
            session.rollback()
            return Outcome("duplicate")
        asset = session.scalar(sa.select(AssetModel).where(AssetModel.name == asset_name, AssetModel.uri == asset_uri))
        # No DAG uses the asset: the row alone is kept (committed on leaving), so a replay is a duplicate.
        outcome = Outcome("no_asset") if asset is None else _register(session, conn_id, event, asset, extra)
    _maybe_prune()
    return outcome


def _register(session: Any, conn_id: str, event: CoverbaseWebhookEvent, asset: Any, extra: dict[str, Any]) -> Outcome:
    """Create the asset event and note its id on the dedupe row, in the caller's transaction."""
    from airflow.assets.manager import asset_manager

    asset_event = asset_manager.register_asset_change(
        asset=asset, extra=extra, session=session, source_is_api=True, api_user_teams=set()
    )
    if asset_event is None:  # pragma: no cover - the asset was looked up in this transaction
        raise RuntimeError(f"Airflow created no asset event for {asset.uri}")
    session.execute(
        dedupe_table.update()
        .where(dedupe_table.c.conn_id == conn_id, dedupe_table.c.event_id == event.event_id)
        .values(asset_event_id=asset_event.id)
    )
    return Outcome("created", asset_event.id)


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
