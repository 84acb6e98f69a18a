"""The Coverbase webhook receiver: an Airflow plugin whose FastAPI app ``airflow api-server`` mounts.

``POST /coverbase/webhooks/{coverbase_conn_id}`` on the API server takes Coverbase's deliveries for
the Coverbase connection ``coverbase_conn_id`` and turns each verified workflow event into an Airflow
asset event (see :mod:`airflow_provider_coverbase.assets` for which asset):

==============================================  ===============================================
Delivery                                        Answer
==============================================  ===============================================
body over 256 KB                                413, before reading more than the limit
unknown connection, connection without a        401 ``{"detail": "invalid signature"}``: the same
``webhook_secret``, missing or wrong signature, answer every time, so the endpoint reveals
stale or future ``Coverbase-Timestamp``         nothing about which connections exist
signed, but not a Coverbase envelope            400 (Coverbase does not retry 4xx: no retry storm)
an event type that is not a workflow event      200 ``ignored``
an event already recorded (same ``event_id``)   200 ``duplicate``
a workflow event                                200 ``created`` (or ``no_asset`` when no DAG uses
                                                the asset)
run details unreadable from the API             503, so Coverbase retries the delivery
==============================================  ===============================================

Coverbase cannot log in to Airflow, so the endpoint has no Airflow authentication: the HMAC
signature is the only authentication, and a connection without a secret refuses every delivery.
When a delivery does not name the workflow (the V1+ envelope carries only ``workflow_run_id``), the
run is read from the API with the same connection (one attempt, a few seconds at most), which also
confirms that the run really ended that way. Everything else waits until after the answer is sent:
the scheduler, not this handler, starts the DAG runs. Nothing here logs the secret, the signature or
the API key.

Registered through the ``airflow.plugins`` entry point (always loaded) and listed in the provider
info (which Airflow reads only with ``[core] lazy_discover_providers = False``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from airflow_provider_coverbase.assets import asset_for_event, extra_for_event
from airflow_provider_coverbase.client import CoverbaseClient, RetryPolicy
from airflow_provider_coverbase.exceptions import CoverbaseError, NotFoundError
from airflow_provider_coverbase.hooks.coverbase import (
    CoverbaseHook,
    WebhookSettings,
    settings_from_connection,
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

_UNAUTHORIZED = {"detail": "invalid signature"}
_KIND_STATUS = {"completed": WorkflowRunStatus.COMPLETED, "failed": WorkflowRunStatus.FAILED}


def _answer(status_code: int, **body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=status_code)


async def _read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refusing (413) as soon as it is known to be too large."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        check_body_size(int(declared), max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        check_body_size(size, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


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
    conn = CoverbaseHook.get_connection(conn_id)
    try:
        settings = settings_from_connection(
            conn_id, host=conn.host, port=conn.port, password=conn.password, extra=conn.extra
        )
    except CoverbaseError as exc:
        raise _Ignore(f"the connection cannot read runs from the API ({exc.message})") from None
    config = dataclasses.replace(
        settings.client,
        timeout=min(settings.client.timeout, API_READ_TIMEOUT),
        connect_timeout=min(settings.client.connect_timeout, API_READ_TIMEOUT),
        retry=RetryPolicy(max_attempts=1),
    )
    try:
        with CoverbaseClient(config=config) as client:
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
    from airflow_provider_coverbase.plugins import _store

    if _store.already_recorded(conn_id, event.event_id):
        return _answer(200, status="duplicate", event_id=event.event_id)
    facts = _RunFacts(event.workflow_name, event.status)
    try:
        if event.workflow_name is None:
            facts = _read_run(conn_id, event)
        if not facts.workflow_name:
            raise _Ignore(f"the name of the workflow of run {event.workflow_run_id} is unknown")
    except _RetryLater as exc:
        log.warning("Coverbase webhook %s (%s): %s; asking for a retry", event.event_id, event.event_type, exc)
        return _answer(503, detail=str(exc))
    except _Ignore as exc:
        log.info("Coverbase webhook %s (%s) ignored: %s", event.event_id, event.event_type, exc)
        return _answer(200, status="ignored", event_id=event.event_id, reason=str(exc))
    asset = asset_for_event(event, conn_id, facts.workflow_name)
    assert asset is not None
    extra = extra_for_event(event, workflow_name=facts.workflow_name, status=facts.status)
    outcome = _store.record_event(conn_id, event, asset_name=asset.name, asset_uri=asset.uri, extra=extra)
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


async def receive_webhook(coverbase_conn_id: str, request: Request) -> JSONResponse:
    """Verify one delivery and turn it into (at most) one asset event."""
    try:
        body = await _read_body(request, MAX_BODY_BYTES)
    except WebhookError as exc:
        return _answer(exc.http_status, detail=str(exc))
    settings = await run_in_threadpool(_webhook_settings, coverbase_conn_id)
    if settings is None or settings.secret is None:
        return _answer(401, **_UNAUTHORIZED)
    try:
        event = receive(body, request.headers, settings.secret, tolerance=settings.timestamp_tolerance)
    except WebhookSignatureError as exc:
        log.warning("Coverbase webhook for connection %r refused: %s", coverbase_conn_id, exc)
        return _answer(401, **_UNAUTHORIZED)
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
