"""The Coverbase webhook receiver: an Airflow plugin whose FastAPI app ``airflow api-server`` mounts.

``POST /coverbase/webhooks/{coverbase_conn_id}`` on the API server takes Coverbase's deliveries for
the Coverbase connection ``coverbase_conn_id`` and turns each verified workflow event into an Airflow
asset event (see :mod:`airflow_provider_coverbase.assets` for which asset):

==============================================  ===============================================
Delivery                                        Answer
==============================================  ===============================================
body over 256 KB                                413, before reading more than the limit
body not complete within 10 s                   408 (Coverbase gives an attempt 10 s in all)
unknown connection, connection without a        401 ``{"detail": "invalid signature"}``: the same
valid ``webhook_secret``, missing or wrong      answer, sent the same time after the body
signature, stale, future or missing signed      arrived (:data:`UNAUTHORIZED_ANSWER_SECONDS`),
time                                            so it reveals nothing about which connections
                                                exist or have a secret
signed, but not a Coverbase envelope, or        400 saying why (Coverbase does not retry 4xx:
holding what cannot be stored (bad ids, NaN,    no retry storm for what can never succeed)
JSON too deep, an asset URI over 1,500 chars)
an event type that is not a workflow event      200 ``ignored``
an event already decided (same ``event_id``)    200 ``duplicate``, from the dedupe table alone
a workflow event                                200 ``created`` (or ``no_asset`` when no DAG uses
                                                the asset, or ``ignored`` with the reason)
run reads over the connection's budget          429 with ``Retry-After`` (Coverbase retries it)
run details unreadable from the API             503, so Coverbase retries the delivery
==============================================  ===============================================

Coverbase cannot log in to Airflow, so the endpoint has no Airflow authentication: the HMAC
signature is the only authentication, and a connection without a secret refuses every delivery.
When a delivery does not name the workflow (the V1+ envelope carries only ``workflow_run_id``), the
run is read from the API with the same connection (one attempt, a few seconds at most), which also
confirms that the run really ended that way. Everything else waits until after the answer is sent:
the scheduler, not this handler, starts the DAG runs. Nothing here logs the secret, the signature or
the API key.

Replays cost Coverbase nothing: every decided event (asset event created, no asset, run unknown or
reported otherwise) is recorded in the dedupe table, and a replay is answered from there. Run reads
are also limited per connection and process (:data:`RUN_READS_PER_SECOND`, bursts of
:data:`RUN_READ_BURST`), so even deliveries that stay undecided (a run still running) cannot turn
into a flood of API calls.

Registered through the ``airflow.plugins`` entry point (always loaded) and listed in the provider
info (which Airflow reads only with ``[core] lazy_discover_providers = False``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from airflow_provider_coverbase.assets import asset_for_event, extra_for_event
from airflow_provider_coverbase.client import CoverbaseClient, RequestBudget
from airflow_provider_coverbase.exceptions import CoverbaseConfigError, CoverbaseError, NotFoundError
from airflow_provider_coverbase.hooks.coverbase import (
    CoverbaseHook,
    WebhookSettings,
    webhook_settings_from_connection,
)
from airflow_provider_coverbase.models import WorkflowRunStatus
from airflow_provider_coverbase.webhooks import (
    MAX_BODY_BYTES,
    CoverbaseWebhookEvent,
    WebhookError,
    WebhookSignatureError,
    check_body_size,
    receive,
)

__all__ = ["URL_PREFIX", "CoverbaseWebhookPlugin", "create_app"]

log = logging.getLogger(__name__)

URL_PREFIX = "/coverbase"
#: Seconds allowed for reading a run from the API before answering (Coverbase waits 10 s in all).
API_READ_TIMEOUT = 4.0
#: Seconds allowed for the whole body to arrive. Coverbase gives each attempt 10 s in all, so a body
#: still incomplete by then is no genuine delivery; the connection is answered 408 and closed.
BODY_READ_TIMEOUT = 10.0
#: Every 401 is sent this long after the body arrived, whichever check failed (the connection lookup
#: of an unknown connection takes longer than a signature check): the time of the answer tells
#: nothing about which connections exist. Far above the lookup's own cost, far below 10 s.
UNAUTHORIZED_ANSWER_SECONDS = 0.25
#: Run reads per second, per connection and API-server process, in bursts of :data:`RUN_READ_BURST`.
RUN_READS_PER_SECOND = 2.0
RUN_READ_BURST = 20

#: The clock and the sleep of the 401 path (tests inject their own).
_clock: Callable[[], float] = time.monotonic
_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
_read_budgets: dict[str, RequestBudget] = {}
_budgets_lock = threading.Lock()

_UNAUTHORIZED = {"detail": "invalid signature"}
_KIND_STATUS = {"completed": WorkflowRunStatus.COMPLETED, "failed": WorkflowRunStatus.FAILED}


def _answer(status_code: int, **body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=status_code)


class _BodyTimeoutError(WebhookError):
    """408: the body did not arrive in time."""

    http_status = 408


async def _read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refusing as soon as it is known to be too large (413) or too slow (408)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        check_body_size(int(declared), max_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT):
            async for chunk in request.stream():
                size += len(chunk)
                check_body_size(size, max_bytes)
                chunks.append(chunk)
    except TimeoutError:
        raise _BodyTimeoutError(f"the body did not arrive within {BODY_READ_TIMEOUT:g} s") from None
    return b"".join(chunks)


async def _unauthorized(started: float) -> JSONResponse:
    """The one 401 answer, sent :data:`UNAUTHORIZED_ANSWER_SECONDS` after ``started``."""
    delay = started + UNAUTHORIZED_ANSWER_SECONDS - _clock()
    if delay > 0:
        await _sleep(delay)
    return _answer(401, **_UNAUTHORIZED)


def _read_budget(conn_id: str) -> RequestBudget:
    """The run-read budget of a connection (case variants of its id share it: env lookups ignore case)."""
    key = conn_id.casefold()
    with _budgets_lock:
        budget = _read_budgets.get(key)
        if budget is None:
            budget = _read_budgets[key] = RequestBudget(RUN_READS_PER_SECOND, burst=RUN_READ_BURST)
        return budget


def _webhook_settings(conn_id: str) -> WebhookSettings | None:
    """The connection's webhook settings, or ``None`` when the connection is unknown or unusable."""
    try:
        conn = CoverbaseHook.get_connection(conn_id)
    except Exception:  # Airflow's "not found" differs across versions; any failure is a refusal
        log.warning("Coverbase webhook for connection %r refused: no such connection", conn_id)
        return None
    if conn.conn_type != CoverbaseHook.conn_type:
        log.warning("Coverbase webhook for connection %r refused: not a coverbase connection", conn_id)
        return None
    try:
        settings = webhook_settings_from_connection(conn_id, conn.extra)
    except CoverbaseError as exc:
        log.warning("Coverbase webhook for connection %r refused: %s", conn_id, exc)
        return None
    if not settings.secret:
        log.warning("Coverbase webhook for connection %r refused: the connection has no webhook_secret", conn_id)
        return None
    return settings


@dataclasses.dataclass(frozen=True, slots=True)
class _RunFacts:
    workflow_name: str | None
    status: str | None


class _RetryLater(Exception):
    """The delivery cannot be handled now; answer 503 so Coverbase sends it again."""


class _Ignore(Exception):
    """The delivery is genuine but leads to no asset event; answer 200 with this reason."""


def _read_run(conn_id: str, event: CoverbaseWebhookEvent) -> _RunFacts:
    """Read the run from the API (one attempt, short timeouts) and check it ended as the event says."""
    assert event.workflow_run_id is not None
    try:
        settings = CoverbaseHook(conn_id).get_settings()  # the key is masked as soon as it is read
    except CoverbaseError as exc:
        raise _Ignore(f"the connection cannot read runs from the API ({exc.message})") from None
    try:
        with CoverbaseClient(config=settings.client.single_attempt(API_READ_TIMEOUT)) as client:
            run = client.get_workflow_run(event.workflow_run_id)
    except NotFoundError:
        # e.g. a V3 test delivery with a real event type carries sample ids that do not exist
        raise _Ignore(f"run {event.workflow_run_id} does not exist for this connection") from None
    except CoverbaseError as exc:
        raise _RetryLater(f"could not read run {event.workflow_run_id} from the API ({type(exc).__name__})") from None
    expected = _KIND_STATUS.get(event.kind)
    if expected is not None and run.status != expected:
        if not run.status.is_terminal:
            raise _RetryLater(f"the API still reports run {event.workflow_run_id} as {run.api_status}")
        raise _Ignore(f"the API reports run {event.workflow_run_id} as {run.api_status}, not {event.kind}")
    return _RunFacts(run.workflow_name, run.api_status if expected is not None else event.status)


def _act(conn_id: str, event: CoverbaseWebhookEvent) -> JSONResponse:
    """Everything after verification: dedupe, run details if needed, the asset event."""
    from airflow_provider_coverbase.plugins import webhook_dedupe

    if webhook_dedupe.already_recorded(conn_id, event.event_id):
        return _answer(200, status="duplicate", event_id=event.event_id)
    facts = _RunFacts(event.workflow_name, event.status)
    try:
        if event.workflow_name is None:
            budget = _read_budget(conn_id)
            if not budget.try_reserve():
                log.warning(
                    "Coverbase webhook %s (%s): over the run-read budget of connection %r; asking for a retry",
                    event.event_id,
                    event.event_type,
                    conn_id,
                )
                wait = max(1, math.ceil(1 / budget.rate))
                return JSONResponse(
                    {"detail": "too many run reads for this connection; retry later"},
                    status_code=429,
                    headers={"Retry-After": str(wait)},
                )
            facts = _read_run(conn_id, event)
        if not facts.workflow_name:
            raise _Ignore(f"the name of the workflow of run {event.workflow_run_id} is unknown")
    except _RetryLater as exc:
        log.warning("Coverbase webhook %s (%s): %s; asking for a retry", event.event_id, event.event_type, exc)
        return _answer(503, detail=str(exc))
    except _Ignore as exc:
        log.info("Coverbase webhook %s (%s) ignored: %s", event.event_id, event.event_type, exc)
        try:
            decided = webhook_dedupe.record_decision(conn_id, event)
        except webhook_dedupe.UnstorableError as unstorable:
            return _unstorable(event, str(unstorable))
        if not decided:  # a concurrent delivery of the same event decided first
            return _answer(200, status="duplicate", event_id=event.event_id)
        return _answer(200, status="ignored", event_id=event.event_id, reason=str(exc))
    try:
        asset = asset_for_event(event, conn_id, facts.workflow_name)
        if asset is None:  # pragma: no cover - a workflow event with a name always has an asset
            raise CoverbaseConfigError("no asset")
        if len(asset.uri) > webhook_dedupe.MAX_ASSET_URI_LENGTH:
            raise ValueError(f"its asset URI is {len(asset.uri)} characters long")
    except (ValueError, CoverbaseConfigError) as exc:
        # Airflow refuses asset names and URIs over 1,500 characters: this event can never be stored.
        return _unstorable(event, f"the event's asset cannot exist in Airflow ({exc})")
    extra = extra_for_event(event, workflow_name=facts.workflow_name, status=facts.status)
    try:
        outcome = webhook_dedupe.record_event(conn_id, event, asset_name=asset.name, asset_uri=asset.uri, extra=extra)
    except webhook_dedupe.UnstorableError as exc:
        return _unstorable(event, str(exc))
    log.info(
        "Coverbase webhook %s (%s, run %s) on %s: %s",
        event.event_id,
        event.event_type,
        event.workflow_run_id,
        asset.uri,
        outcome.status,
    )
    body: dict[str, Any] = {"status": outcome.status, "event_id": event.event_id, "asset_uri": asset.uri}
    if outcome.asset_event_id is not None:
        body["asset_event_id"] = outcome.asset_event_id
    return _answer(200, **body)


def _unstorable(event: CoverbaseWebhookEvent, reason: str) -> JSONResponse:
    log.warning("Coverbase webhook %s (%s) refused: %s", event.event_id, event.event_type, reason)
    return _answer(400, detail=reason, event_id=event.event_id)


async def receive_webhook(coverbase_conn_id: str, request: Request) -> JSONResponse:
    """Verify one delivery and turn it into (at most) one asset event."""
    try:
        body = await _read_body(request, MAX_BODY_BYTES)
    except WebhookError as exc:
        # The rest of the body was not read: close the connection rather than keep it alive, or a
        # client that never finishes its body holds it until the server's keep-alive timeout.
        return JSONResponse({"detail": str(exc)}, status_code=exc.http_status, headers={"Connection": "close"})
    started = _clock()
    settings = await run_in_threadpool(_webhook_settings, coverbase_conn_id)
    if settings is None or settings.secret is None:
        return await _unauthorized(started)
    try:
        event = receive(body, request.headers, settings.secret, tolerance=settings.timestamp_tolerance)
    except WebhookSignatureError as exc:
        log.warning("Coverbase webhook for connection %r refused: %s", coverbase_conn_id, exc)
        return await _unauthorized(started)
    except WebhookError as exc:
        log.warning("Coverbase webhook for connection %r refused: %s", coverbase_conn_id, exc)
        return _answer(exc.http_status, detail=str(exc))
    if not event.is_workflow_event:
        return _answer(200, status="ignored", event_id=event.event_id, reason=f"'{event.event_type}' is not handled")
    return await run_in_threadpool(_act, coverbase_conn_id, event)


def create_app() -> FastAPI:
    """The receiver's FastAPI app (Airflow mounts it at :data:`URL_PREFIX`)."""
    app = FastAPI(title="Coverbase webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_api_route("/webhooks/{coverbase_conn_id}", receive_webhook, methods=["POST"])
    return app


class CoverbaseWebhookPlugin(AirflowPlugin):
    """Mounts the Coverbase webhook receiver on ``airflow api-server`` at ``/coverbase``."""

    name = "coverbase"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Coverbase webhooks"}]
