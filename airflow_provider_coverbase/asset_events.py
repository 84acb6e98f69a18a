"""A Coverbase event as an Airflow asset event's ``extra``: written, and read back in one shape. No Airflow imports.

:func:`asset_event_extra` builds the extra (the keys of :data:`EXTRA_KEYS`, bounded so Airflow's own
API and UI can always read it back). The webhook receiver stores it as the asset event's ``extra``;
the pull watcher's asset event carries it in ``extra["payload"]``. :func:`run_events` reads either
into :class:`CoverbaseRunEvent`, in the order they happened and once per event id, so a DAG handles
every event of its run the same way; :func:`airflow_provider_coverbase.assets.triggering_coverbase_events`
is the Airflow side.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "EXTRA_KEYS",
    "MAX_OUTPUT_BYTES",
    "MAX_OUTPUT_DEPTH",
    "AssetEventLike",
    "CoverbaseRunEvent",
    "asset_event_extra",
    "run_event_from_extra",
    "run_events",
]


#: The workflow output is kept in the asset event's extra only up to this many bytes of JSON.
MAX_OUTPUT_BYTES = 16 * 1024
#: ... and only up to this many levels of nesting (``{"a": 1}`` is 1): Airflow's API and UI read
#: the extra back through pydantic, which refuses JSON nested a few hundred levels deep, so one deep
#: output would break ``GET /api/v2/assets/events`` for everyone.
MAX_OUTPUT_DEPTH = 32
#: The keys of every asset event's extra, whichever path (webhook receiver or pull-path watcher) produced it.
EXTRA_KEYS = (
    "event_id",
    "event_type",
    "workflow_run_id",
    "workflow_name",
    "status",
    "checkpoint",
    "occurred_at",
    "output",
    "output_truncated",
)


def asset_event_extra(
    *,
    event_id: str,
    event_type: str,
    workflow_run_id: str | None,
    workflow_name: str | None,
    status: str | None,
    checkpoint: str | None = None,
    occurred_at: datetime | None = None,
    output: Any = None,
) -> dict[str, Any]:
    """The asset event's ``extra``: the keys of :data:`EXTRA_KEYS`, JSON values only.

    ``occurred_at`` becomes an ISO-8601 string. ``output`` is kept when its JSON is at most
    :data:`MAX_OUTPUT_BYTES` and :data:`MAX_OUTPUT_DEPTH` levels deep, and is plain JSON (no
    ``NaN``/``Infinity``, valid Unicode); otherwise it is ``None`` and ``output_truncated`` is true
    (read the whole output from the API with the ``workflow_run_id``). Every other value is a short
    string the receiver has already checked, so the extra is always readable back through Airflow.
    """
    truncated = False
    if output is not None and not _storable(output):
        output, truncated = None, True
    return {
        "event_id": event_id,
        "event_type": event_type,
        "workflow_run_id": workflow_run_id,
        "workflow_name": workflow_name,
        "status": status,
        "checkpoint": checkpoint,
        "occurred_at": occurred_at.isoformat() if occurred_at is not None else None,
        "output": output,
        "output_truncated": truncated,
    }


def _depth(value: Any) -> int:
    """How deep ``value`` nests (a scalar is 0, ``[1]`` is 1); iterative, so any depth is safe."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest


def _storable(output: Any) -> bool:
    if _depth(output) > MAX_OUTPUT_DEPTH:
        return False
    try:
        text = json.dumps(output, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        size = len(text.encode())
    except (TypeError, ValueError):  # not JSON, non-finite numbers, lone surrogates
        return False
    return size <= MAX_OUTPUT_BYTES and "\\u0000" not in text


# ---- reading it back: the events that triggered a DAG run, one shape for both paths ----


class CoverbaseRunEvent(BaseModel):
    """One Coverbase event as a consumer task sees it, whichever path produced the asset event.

    The webhook receiver writes the keys of :data:`EXTRA_KEYS` straight into the asset event's
    ``extra``; the pull watcher's asset event carries them in ``extra["payload"]`` (Airflow wraps
    trigger events as ``{"from_trigger": true, "payload": ...}``). Both read back as this model.
    ``source`` says which path it was (``webhook`` or ``watcher``); ``asset_uri`` is the asset the
    event landed on, when known. Unknown keys (added by later receivers) are ignored.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: str
    event_type: str
    workflow_run_id: str
    workflow_name: str | None = None
    status: str | None = None
    checkpoint: str | None = None
    occurred_at: datetime | None = None
    output: Any = None
    output_truncated: bool = False
    source: Literal["webhook", "watcher"] = "webhook"
    asset_uri: str | None = None


class AssetEventLike(Protocol):
    """What :func:`run_events` reads of one asset event (Airflow's triggering asset event has it)."""

    @property
    def extra(self) -> Mapping[str, Any]: ...

    @property
    def timestamp(self) -> datetime: ...


def run_event_from_extra(extra: Mapping[str, Any], *, asset_uri: str | None = None) -> CoverbaseRunEvent | None:
    """The :class:`CoverbaseRunEvent` an asset event's ``extra`` holds, in either shape, or ``None``.

    ``None`` means the extra is not a Coverbase event (e.g. an asset event created by hand in the UI).
    """
    fields: Any = extra
    source = "webhook"
    if extra.get("from_trigger") is True and isinstance(extra.get("payload"), Mapping):
        fields, source = extra["payload"], "watcher"
    try:
        return CoverbaseRunEvent.model_validate({**fields, "source": source, "asset_uri": asset_uri})
    except ValidationError:
        return None


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def run_events(
    asset_events: Iterable[tuple[str | None, AssetEventLike]],
) -> tuple[list[CoverbaseRunEvent], int]:
    """Every Coverbase event of ``(asset URI, asset event)`` pairs: in the order they happened, once each.

    Ordered by the event's ``occurred_at`` (when Coverbase sent it, or when the polled run finished),
    then by when Airflow recorded the asset event (also the fallback when ``occurred_at`` is missing),
    then by input order. An ``event_id`` seen twice (one watcher's event lands on every asset it
    watches) is kept once, at its first occurrence. Returns the events and how many asset events
    were not Coverbase events and were left out.
    """
    found: list[tuple[datetime, datetime, int, CoverbaseRunEvent]] = []
    skipped = 0
    for index, (uri, asset_event) in enumerate(asset_events):
        event = run_event_from_extra(asset_event.extra, asset_uri=uri)
        if event is None:
            skipped += 1
            continue
        recorded = _utc(asset_event.timestamp)
        happened = _utc(event.occurred_at) if event.occurred_at is not None else recorded
        found.append((happened, recorded, index, event))
    found.sort(key=lambda item: item[:3])
    seen: set[str] = set()
    events: list[CoverbaseRunEvent] = []
    for *_, event in found:
        if event.event_id not in seen:
            seen.add(event.event_id)
            events.append(event)
    return events, skipped
