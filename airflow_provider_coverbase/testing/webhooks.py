"""Outbound webhook delivery: a ticker turns due run events into signed HTTP POSTs.

Deliveries are at least once and unordered (one task each), signed with
``Coverbase-Signature = lowercase hex HMAC-SHA256(secret, raw body)``, and retried on non-2xx or
transport errors after the configured delays (emulated seconds, so scaled by the clock speed).

No Airflow imports, no client imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time

import httpx

from airflow_provider_coverbase.testing.state import JSON, DeliveryJob, EmulatorState, new_id

TICK_SECONDS = 0.02


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

    async def _tick_forever(self) -> None:
        while True:
            for job in self.state.due_events():
                task = asyncio.create_task(self._deliver(job))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            await asyncio.sleep(TICK_SECONDS)

    def _envelope(self, job: DeliveryJob) -> bytes:
        body: JSON = {
            "event_id": job.event_id,
            "event_type": job.event_type,
            "occurred_at": int(self.state.clock.now()),
            "data": job.data,
        }
        if self.state.dialect == "legacy" and job.run_id is not None:
            body["workflow_run_id"] = job.run_id
        return json.dumps(body, separators=(",", ":")).encode()

    async def _deliver(self, job: DeliveryJob) -> None:
        assert self._client is not None
        delays = self.state.config.webhook_retry_delays
        sub = job.subscription
        for attempt in range(1, len(delays) + 2):
            if self.state.subscriptions.get(sub.webhook_id) is not sub or not sub.enabled:
                return
            body = self._envelope(job)
            occurred_at = json.loads(body)["occurred_at"]
            headers = {
                "Content-Type": "application/json",
                "Coverbase-Signature": sign(sub.secret, body),
                "Coverbase-Timestamp": str(occurred_at),
                "X-Coverbase-Event-Id": job.event_id,
                "X-Coverbase-Event-Type": job.event_type,
            }
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
            self.state.record_delivery(
                {
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
                }
            )
            if ok or attempt > len(delays):
                return
            await asyncio.sleep(self.state.clock.real_seconds(delays[attempt - 1]))
