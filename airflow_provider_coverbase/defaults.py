"""The client's default settings, in one place. Plain values, no imports.

The client (:mod:`airflow_provider_coverbase.client`) uses them when a setting is not given, and the
connection form describes them (``get_provider_info``) without storing them, so a default changed in
a later release reaches every connection that left the field empty. This module imports nothing,
because Airflow reads the provider info in every process that discovers providers; every name in it
is a default, so it needs no ``__all__``.
"""

from __future__ import annotations

DEFAULT_BASE_URL = "https://api.coverbase.app"
#: Where runs are shown to people. Not documented by the API reference: override it per connection.
DEFAULT_DASHBOARD_URL = "https://dashboard.coverbase.app"
DEFAULT_DASHBOARD_RUN_PATH = "/workflows/runs/{workflow_run_id}"
#: Seconds to wait for a response (read/write/pool). A run-starting POST returns once the run exists.
DEFAULT_TIMEOUT = 30.0
#: Seconds to wait for the TCP/TLS connection.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Retries of one API call after the first attempt.
DEFAULT_MAX_RETRIES = 3
#: Backoff before the first retry, in seconds; it doubles on each retry up to the maximum.
DEFAULT_RETRY_INITIAL_DELAY = 0.5
DEFAULT_RETRY_MAX_DELAY = 10.0
#: How far a webhook's Coverbase-Timestamp may be from now, either way, in seconds (Coverbase suggests 5 min).
DEFAULT_WEBHOOK_TIMESTAMP_TOLERANCE = 300.0
#: The largest tolerance a connection may set: 7 days. The receiver keeps its dedupe records 30 days,
#: more than twice this, so a delivery is never acceptable again after its record is gone.
MAX_WEBHOOK_TIMESTAMP_TOLERANCE = 7 * 24 * 3600.0
#: The shortest webhook secret accepted: Coverbase itself refuses to register a shorter one.
MIN_WEBHOOK_SECRET_LENGTH = 16
#: Requests per second one process sends through one connection (all its triggers together).
#: Coverbase documents no rate limit; 25/s, paced one by one with 5% headroom (no burst, see
#: RequestBudget), keeps every 1-second window at or under 25 requests, and is far above what
#: adaptive polling needs (see the README).
DEFAULT_MAX_REQUESTS_PER_SECOND = 25.0
#: Seconds an idle HTTP connection is kept for reuse. httpx's own default (5 s) is shorter than
#: any poll interval, so every poll would open a new connection (a new TLS handshake in production).
#: An hour outlives the default longest poll interval (30 min); a server that closes earlier is
#: handled by opening a new connection.
DEFAULT_KEEPALIVE_EXPIRY = 3600.0
#: The pull path (``[coverbase] pull_poll_interval`` and ``pull_lookback``): seconds between polls, and
#: how far back in run creation each poll lists runs (30 days).
DEFAULT_PULL_POLL_INTERVAL = 60.0
DEFAULT_PULL_LOOKBACK = 30 * 24 * 3600.0
