"""Outbound webhook delivery: a ticker turns due run events into signed HTTP POSTs, per dialect.

Deliveries are at least once and unordered (one task each) and follow the dialect's documented
wire format and retry rule:

- **legacy (V0)**: the five-key envelope (``event_id``, ``event_type``, ``occurred_at``, ``data``
  and a top-level ``workflow_run_id``), headers ``Content-Type`` and ``Coverbase-Signature`` only;
  every failure (transport error, timeout, any non-2xx) is retried with exponential backoff for
  24 hours (``EmulatorConfig.legacy_webhook_retry_delays``).
- **current (V3)**: the four-key envelope, headers ``Coverbase-Signature``, ``Coverbase-Timestamp``
  (= ``occurred_at``, re-stamped on every attempt), ``X-Coverbase-Event-Id`` and
  ``X-Coverbase-Event-Type``; up to 6 attempts (``EmulatorConfig.webhook_retry_delays``: 4 s,
  16 s, 64 s, 4 min, 4 min) on a transport error, timeout, 408, 429 or 5xx, none on any other
  status; test deliveries are never retried.

``Coverbase-Signature`` is the lowercase hex HMAC-SHA256 of the raw body keyed by the secret's
UTF-8 bytes. Waits are emulated seconds, so they shrink with the clock speed. The test controls
(hold and release in another order, redeliver, unsigned or wrongly signed attempts) live on the
webhook store (``WebhookControls``) and in :meth:`WebhookDispatcher.redeliver`.

No Airflow imports, no client imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Coroutine
from typing import Any

import httpx

from airflow_provider_coverbase.testing.catalog import JSON, new_id
from airflow_provider_coverbase.testing.state import EmulatorState
from airflow_provider_coverbase.testing.webhook_store import DeliveryJob, SigningOverride

TICK_SECONDS = 0.02
#: Statuses the current API retries besides 5xx (V3: any other non-2xx is not retried).
CURRENT_RETRY_STATUSES = frozenset({408, 429})


def sign(secret: str, body: bytes) -> str:
    """The ``Coverbase-Signature`` header value for ``body``."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookDispatcher:
    """Runs on the server's event loop; started and stopped by the app's lifespan."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self._client: httpx.AsyncClient | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.state.config.webhook_timeout_seconds, trust_env=False)
        self._ticker = asyncio.create_task(self._tick_forever())

    async def stop(self) -> None:
        tasks = [t for t in (self._ticker, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.aclose()

    def spawn(self, job: DeliveryJob) -> None:
        """Deliver ``job`` in the background, with the dialect's retries."""
        self._spawn(self._deliver(job))

    async def _tick_forever(self) -> None:
        while True:
            for job in self.state.due_events():
                self.spawn(job)
            await asyncio.sleep(TICK_SECONDS)

    # ---- wire format ---------------------------------------------------------------------

    def envelope(self, job: DeliveryJob, occurred_at: int) -> bytes:
        """The raw body of one attempt, in the dialect's envelope."""
        body: JSON = {
            "event_id": job.event_id,
            "event_type": job.event_type,
            "occurred_at": occurred_at,
            "data": job.data,
        }
        if self.state.dialect == "legacy":
            body["workflow_run_id"] = job.run_id
        return json.dumps(body, separators=(",", ":")).encode()

    def headers(
        self, job: DeliveryJob, body: bytes, occurred_at: int, signing: SigningOverride | None
    ) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if signing is None:
            headers["Coverbase-Signature"] = sign(job.subscription.secret, body)
        elif signing.mode == "secret":
            headers["Coverbase-Signature"] = sign(signing.secret or "", body)
        if self.state.dialect == "current":
            headers["Coverbase-Timestamp"] = str(occurred_at)
            headers["X-Coverbase-Event-Id"] = job.event_id
            headers["X-Coverbase-Event-Type"] = job.event_type
        return headers

    def _retryable(self, status: int | None) -> bool:
        if status is None or self.state.dialect == "legacy":
            return True
        return status >= 500 or status in CURRENT_RETRY_STATUSES

    # ---- delivery ------------------------------------------------------------------------

    async def attempt(self, job: DeliveryJob, attempt: int, signing: SigningOverride | None = None) -> JSON:
        """One POST of ``job``; records and returns the attempt (the delivery-history item)."""
        assert self._client is not None
        sub = job.subscription
        occurred_at = int(self.state.clock.now())
        body = self.envelope(job, occurred_at)
        headers = self.headers(job, body, occurred_at, signing)
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            response = await self._client.post(sub.url, content=body, headers=headers)
            status = response.status_code
        except httpx.TimeoutException as exc:
            error = f"timeout: {exc!r}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        ok = status is not None and 200 <= status < 300
        outcome = "delivered" if ok else ("timeout" if error and error.startswith("timeout") else "error")
        record: JSON = {
            "id": new_id("cbwhd"),
            "webhook_id": sub.webhook_id,
            "event_id": job.event_id,
            "event_type": job.event_type,
            "attempt": attempt,
            "status": outcome,
            "response_status": status,
            "response_time_ms": int((time.monotonic() - started) * 1000),
            "error": error,
            "payload": job.data,
            "attempted_at": occurred_at,
            "created_at": occurred_at,
            "signature": "valid" if signing is None else signing.mode,
        }
        self.state.webhooks.record_delivery(record)
        return record

    def _delays(self) -> tuple[float, ...]:
        config = self.state.config
        return config.legacy_webhook_retry_delays if self.state.dialect == "legacy" else config.webhook_retry_delays

    def _active(self, job: DeliveryJob) -> bool:
        sub = job.subscription
        return self.state.webhooks.subscriptions.get(sub.webhook_id) is sub and sub.enabled

    def _needs_retry(self, job: DeliveryJob, record: JSON) -> bool:
        return record["status"] != "delivered" and not job.test and self._retryable(record["response_status"])

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, job: DeliveryJob) -> None:
        if not self._active(job):
            return
        record = await self.attempt(job, 1, self.state.webhooks.take_signing())
        if self._needs_retry(job, record):
            await self._retry_from(job, 2)

    async def _retry_from(self, job: DeliveryJob, first_attempt: int) -> None:
        delays = self._delays()
        for attempt in range(first_attempt, len(delays) + 2):
            await asyncio.sleep(self.state.clock.real_seconds(delays[attempt - 2]))
            if not self._active(job):
                return
            record = await self.attempt(job, attempt, self.state.webhooks.take_signing())
            if not self._needs_retry(job, record):
                return

    async def deliver_in_order(self, jobs: list[DeliveryJob]) -> None:
        """Make the first attempt of each job one after the other; retries go on in the background."""
        for job in jobs:
            if not self._active(job):
                continue
            record = await self.attempt(job, 1, self.state.webhooks.take_signing())
            if self._needs_retry(job, record):
                self._spawn(self._retry_from(job, 2))

    async def redeliver(self, event_id: str, signing: SigningOverride | None = None) -> JSON:
        """Send an already raised event again, once, now (Coverbase's at-least-once delivery)."""
        job = self.state.webhooks.events.get(event_id)
        if job is None:
            raise KeyError(event_id)
        attempts = [d["attempt"] for d in self.state.webhooks.deliveries if d["event_id"] == event_id]
        return await self.attempt(job, max(attempts, default=0) + 1, signing)
