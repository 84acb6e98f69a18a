"""The webhooks surface of ``/v1``: subscriptions (create, list, update, delete), test deliveries,
and the delivery history, with the documented validation order and each dialect's errors.

No Airflow imports, no client imports.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response

from airflow_provider_coverbase.testing.answers import Answers, body_error, is_loopback, json_response, not_an_object
from airflow_provider_coverbase.testing.catalog import CURRENT_EVENT_TYPES, JSON, LEGACY_EVENT_TYPES, new_id
from airflow_provider_coverbase.testing.config import OrgConfig
from airflow_provider_coverbase.testing.webhook_delivery import WebhookDispatcher
from airflow_provider_coverbase.testing.webhook_store import DeliveryJob, Subscription

#: Keys of a delivery record that only the emulator's test API shows, not the delivery history.
TEST_ONLY_DELIVERY_KEYS = frozenset({"attempt", "signature"})
_URL_MESSAGE = (
    "Webhook URL must be HTTPS and must not target a private, link-local, or metadata address "
    "(the emulator also accepts http:// on loopback)."
)


def url_refused(url: str) -> bool:
    """True when ``url`` is not acceptable: HTTPS anywhere public, or HTTP(S) on loopback."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return True
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
        return True
    if is_loopback(host):
        return False
    if parts.scheme != "https" or port not in (None, 443):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host.endswith((".local", ".internal")) or host == "metadata.google.internal"
    return not address.is_global


class WebhookRoutes:
    """Route handlers for webhook subscriptions, bound to one emulator's state and dispatcher."""

    def __init__(self, answers: Answers, dispatcher: WebhookDispatcher) -> None:
        self.answers = answers
        self.state = answers.state
        self.store = answers.state.webhooks
        self.dispatcher = dispatcher

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/v1/webhooks", self.create_webhook, methods=["POST"], status_code=201)
        router.add_api_route("/v1/webhooks", self.list_webhooks, methods=["GET"])
        router.add_api_route("/v1/webhooks/{webhook_id}", self.update_webhook, methods=["PATCH"])
        router.add_api_route("/v1/webhooks/{webhook_id}", self.delete_webhook, methods=["DELETE"], status_code=204)
        router.add_api_route("/v1/webhooks/{webhook_id}/test", self.test_webhook, methods=["POST"])
        router.add_api_route("/v1/webhooks/{webhook_id}/deliveries", self.webhook_deliveries, methods=["GET"])
        return router

    def _field_problem(self, request: Request, payload: JSON, *, partial: bool) -> Response | None:
        """Validate in the documented order: ``secret``, then ``url``, then ``events``.

        ``partial`` (PATCH): only the fields given and not ``null``; otherwise every field."""
        answers = self.answers
        if not partial or payload.get("secret") is not None:
            secret = payload.get("secret")
            if not isinstance(secret, str) or len(secret) < 16:
                return answers.error(request, 400, "weak_secret", "Secret must be at least 16 characters.")
        if not partial or payload.get("url") is not None:
            url = payload.get("url")
            if not isinstance(url, str) or url_refused(url):
                return answers.error(request, 400, "invalid_url", _URL_MESSAGE)
        if not partial or payload.get("events") is not None:
            events = payload.get("events")
            if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
                error = body_error("list_type", ["body", "events"], "Input should be a valid list", events)
                return answers.validation_error(request, [error])
            catalog = LEGACY_EVENT_TYPES if self.state.dialect == "legacy" else CURRENT_EVENT_TYPES
            unknown = [e for e in events if e not in catalog]
            if unknown and self.state.dialect == "legacy":
                return answers.error(request, 400, "invalid_event_type", f"Unsupported event type: {unknown[0]}")
            if unknown:
                message = f"Unsupported event type(s): {', '.join(unknown)}"
                return answers.error(request, 422, "invalid_event_types", message)
        return None

    async def _admitted_object(self, request: Request) -> tuple[OrgConfig, JSON] | Response:
        """The org and the JSON object body of a subscription write, or the error to return."""
        org = self.answers.admit(request)
        if isinstance(org, Response):
            return org
        payload = await self.answers.json_object(request)
        if isinstance(payload, Response):
            return payload
        return org, payload

    def _own(self, request: Request, org: OrgConfig, webhook_id: str) -> Subscription | Response:
        sub = self.store.subscriptions.get(webhook_id)
        if sub is None or sub.org_id != org.org_id:
            return self.answers.error(request, 404, "webhook_not_found", "Webhook not found.")
        return sub

    async def create_webhook(self, request: Request) -> Response:
        admitted = await self._admitted_object(request)
        if isinstance(admitted, Response):
            return admitted
        org, payload = admitted
        missing = [
            body_error("missing", ["body", name], "Field required", payload)
            for name in ("url", "events", "secret")
            if name not in payload
        ]
        if missing:
            return self.answers.validation_error(request, missing)
        problem = self._field_problem(request, payload, partial=False)
        if problem is not None:
            return problem
        description = payload.get("description")
        sub = Subscription(
            webhook_id=new_id("cbwh"),
            org_id=org.org_id,
            url=payload["url"],
            events=list(dict.fromkeys(payload["events"])),
            secret=payload["secret"],
            description=description if isinstance(description, str) else None,
            enabled=bool(payload.get("enabled", True)),
            created_at=int(self.state.clock.now()),
        )
        with self.state.lock:
            self.store.subscriptions[sub.webhook_id] = sub
        return json_response(self.store.view(sub), 201)

    async def update_webhook(self, webhook_id: str, request: Request) -> Response:
        """``PATCH``: omitted and ``null`` fields stay; current dialect: ``description: null`` clears it."""
        admitted = await self._admitted_object(request)
        if isinstance(admitted, Response):
            return admitted
        org, payload = admitted
        problem = self._field_problem(request, payload, partial=True)
        if problem is not None:
            return problem
        with self.state.lock:
            sub = self._own(request, org, webhook_id)
            if isinstance(sub, Response):
                return sub
            if payload.get("url") is not None:
                sub.url = payload["url"]
            if payload.get("events") is not None:
                sub.events = list(dict.fromkeys(payload["events"]))
            if payload.get("secret") is not None:
                sub.secret = payload["secret"]  # takes effect at once; no overlap window
            if payload.get("enabled") is not None:
                sub.enabled = bool(payload["enabled"])
            if "description" in payload:
                description = payload["description"]
                if isinstance(description, str):
                    sub.description = description
                elif description is None and self.state.dialect == "current":
                    sub.description = None
            return json_response(self.store.view(sub))

    async def test_webhook(self, webhook_id: str, request: Request) -> Response:
        """Legacy: a synchronous delivery with its result. Current: enqueued, never retried, nulls."""
        answers = self.answers
        org = answers.admit(request)
        if isinstance(org, Response):
            return org
        payload: JSON = {}
        if (await request.body()).strip():
            parsed = await answers.json_object(request)
            if isinstance(parsed, Response):
                return parsed
            payload = parsed
        event_type = payload.get("event_type") or "webhook.test"
        if not isinstance(event_type, str):
            error = {"type": "string_type", "loc": ["body", "event_type"], "msg": "Input should be a valid string"}
            return answers.validation_error(request, [error])
        data = payload.get("payload")
        if data is None:
            data = {"test": True}
        if not isinstance(data, dict):
            return answers.validation_error(request, [not_an_object(data, ("body", "payload"))])
        with self.state.lock:
            sub = self._own(request, org, webhook_id)
            if isinstance(sub, Response):
                return sub
            if self.state.dialect == "legacy" and event_type != "webhook.test" and event_type not in sub.events:
                message = f"Event type {event_type} is not subscribed by this webhook (or use webhook.test)."
                return answers.error(request, 400, "invalid_event_type", message)
            job = DeliveryJob(sub, new_id("cbevt_test"), event_type, None, data, test=True)
            self.store.events[job.event_id] = job
        if self.state.dialect == "legacy":
            record = await self.dispatcher.attempt(job, 1)
            delivered = record["status"] == "delivered"
            timing = (record["response_status"], record["response_time_ms"], record["attempted_at"])
        else:
            self.dispatcher.spawn(job)
            delivered, timing = True, (None, None, int(self.state.clock.now()))
        keys = ("response_status", "response_time_ms", "attempted_at")
        return json_response({"event_id": job.event_id, "delivered": delivered, **dict(zip(keys, timing, strict=True))})

    async def webhook_deliveries(self, webhook_id: str, request: Request, limit: int = 50, offset: int = 0) -> Response:
        """Delivery history (current dialect): newest first, ``limit`` clamped to 1-100, ``offset`` to >= 0."""
        if self.state.dialect == "legacy":
            return self.answers.plain_error(request, 404, "Not Found")
        org = self.answers.admit(request)
        if isinstance(org, Response):
            return org
        limit = min(max(limit, 1), 100)
        offset = max(offset, 0)
        with self.state.lock:
            sub = self._own(request, org, webhook_id)
            if isinstance(sub, Response):
                return sub
            mine = [d for d in reversed(self.store.deliveries) if d["webhook_id"] == webhook_id]
            page = [
                {k: v for k, v in d.items() if k not in TEST_ONLY_DELIVERY_KEYS} for d in mine[offset : offset + limit]
            ]
        return json_response({"data": page, "total": len(mine), "limit": limit, "offset": offset})

    async def list_webhooks(self, request: Request) -> Response:
        org = self.answers.admit(request)
        if isinstance(org, Response):
            return org
        with self.state.lock:
            subs = [s for s in self.store.subscriptions.values() if s.org_id == org.org_id]
            return json_response({"data": [self.store.view(s) for s in subs]})

    async def delete_webhook(self, webhook_id: str, request: Request) -> Response:
        org = self.answers.admit(request)
        if isinstance(org, Response):
            return org
        with self.state.lock:
            sub = self._own(request, org, webhook_id)
            if isinstance(sub, Response):
                return sub
            del self.store.subscriptions[webhook_id]
        return Response(status_code=204)
