"""Readings of runs from Coverbase for the rows the Coverbase UI shows, cached per run.

For the rows on screen whose run is not finished, the run is read from Coverbase through the task's
connection: at most one GET per row, none while the cached reading is younger than
:data:`LIVE_TTL` seconds, one attempt with short timeouts, through one client per connection (so
one request budget per connection in this process). The API key is used only inside this process;
no reading contains it. Used by :mod:`airflow_provider_coverbase.plugins.ui_api`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from airflow_provider_coverbase.client import CoverbaseClient
from airflow_provider_coverbase.exceptions import CoverbaseError
from airflow_provider_coverbase.models import WorkflowRun
from airflow_provider_coverbase.monitoring import TERMINAL, brief

#: Seconds a reading of a run from Coverbase is reused before the next page view reads it again.
LIVE_TTL = 15.0
#: Seconds allowed for reading one run from Coverbase while answering.
LIVE_TIMEOUT = 3.0


class LiveReadings:
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
        from airflow_provider_coverbase.hooks.coverbase import CoverbaseHook

        settings = CoverbaseHook(conn_id).get_settings()  # the key is masked as soon as it is read
        client = CoverbaseClient(config=settings.client.single_attempt(LIVE_TIMEOUT))
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
    reading = brief(run, previous, now)
    for known in ("workflow_run_id", "workflow_name", "started_at"):
        del reading[known]  # the record's own (the current API's run may not name its workflow)
    return {**reading, "read_at": now}


def _merge(record: Mapping[str, Any], reading: Mapping[str, Any]) -> dict[str, Any]:
    return {**record, **reading, "live": "read_at" in reading}


readings = LiveReadings()
