"""The emulator's HTTP surface: the Coverbase ``/v1`` routes and the ``/_emulator`` admin API.

``create_app(state)`` returns a plain ASGI callable: a thin outer layer (request log, injected
faults and delays, dropped connections, ``x-coverbase-request-id``) around a FastAPI app. Handlers
return pre-serialised JSON bytes and avoid per-request models, which keeps GET-run cheap.

No Airflow imports, no client imports.
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_coverbase.testing.config import (
    ConfigError,
    OrgConfig,
    WorkflowDefinition,
)
from airflow_provider_coverbase.testing.schema import validate
from airflow_provider_coverbase.testing.state import (
    CURRENT_EVENT_TYPES,
    CURRENT_STATUSES,
    JSON,
    LEGACY_EVENT_TYPES,
    LEGACY_STATUSES,
    DeliveryJob,
    EmulatorState,
    Fault,
    SigningOverride,
    Subscription,
    new_id,
)
from airflow_provider_coverbase.testing.webhooks import WebhookDispatcher

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

RUN_BY_NAME = "/v1/workflows/{workflow_name}/run"
RUN_BY_DEFINITION = "/v1/workflows/runs"
_REQUEST_ID = "coverbase.request_id"
_DROP = "coverbase.drop"
#: The documented keys of a delivery-history item (the records hold a few more for tests).
_DELIVERY_KEYS = (
    "id",
    "webhook_id",
    "event_id",
    "event_type",
    "status",
    "response_status",
    "response_time_ms",
    "error",
    "payload",
    "attempted_at",
    "created_at",
)
_FAULT_CODES = {
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_dumps(body), status_code=status, headers=headers, media_type="application/json")


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Api:
    """Route handlers bound to one state."""

    def __init__(self, state: EmulatorState, dispatcher: WebhookDispatcher) -> None:
        self.state = state
        self.dispatcher = dispatcher

    # -------------------------------------------------------------- envelopes

    def error(
        self,
        request: Request,
        status: int,
        code: str,
        message: str,
        *,
        extra: JSON | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        body: JSON = {"detail": {"code": code, "message": message}}
        if extra:
            body.update(extra)
        if self.state.dialect == "current":
            body["request_id"] = request.scope.get(_REQUEST_ID)
        return _json(body, status, headers)

    def plain_error(self, request: Request, status: int, detail: Any) -> Response:
        body: JSON = {"detail": detail}
        if self.state.dialect == "current":
            body["request_id"] = request.scope.get(_REQUEST_ID)
        return _json(body, status)

    def unauthorized(self, request: Request) -> Response:
        message = "Invalid or expired API key."
        if self.state.dialect == "current":
            return self.plain_error(request, 401, message)
        return self.error(request, 401, "unauthorized", message)

    def rate_limited(self, request: Request, retry_after: int, message: str) -> Response:
        body: JSON = {"detail": {"code": "rate_limited", "message": message}}
        headers = place_retry_after(body, retry_after, self.state.variants.retry_after)
        if self.state.dialect == "current":
            body["request_id"] = request.scope.get(_REQUEST_ID)
        return _json(body, 429, headers)

    def admit(self, request: Request) -> OrgConfig | Response:
        """Authenticate and charge the request budget: the org, or the error to return."""
        org = self.state.authenticate(request.headers.get("authorization"))
        if org is None:
            return self.unauthorized(request)
        retry_after = self.state.consume_budget(org)
        if retry_after is not None:
            return self.rate_limited(request, retry_after, "Per-org request rate limit exceeded. Inspect retry_after.")
        return org

    def validation_error(self, request: Request, errors: list[JSON]) -> Response:
        return self.plain_error(request, 422, errors)

    # -------------------------------------------------------------- runs

    async def run_by_name(self, workflow_name: str, request: Request) -> Response:
        return await self._start(request, RUN_BY_NAME, workflow_name=workflow_name)

    async def run_by_definition(self, request: Request) -> Response:
        if self.state.dialect == "current":
            return self.plain_error(request, 404, "Not Found")
        return await self._start(request, RUN_BY_DEFINITION, workflow_name=None)

    async def _start(self, request: Request, template: str, workflow_name: str | None) -> Response:
        state = self.state
        org = self.admit(request)
        if isinstance(org, Response):
            return org
        raw = await request.body()
        payload: Any = {}
        if raw.strip():
            try:
                payload = json.loads(raw)
            except json.JSONDecodeError as exc:
                error = {
                    "type": "json_invalid",
                    "loc": ["body", exc.pos],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
                return self.validation_error(request, [error])
            except ValueError:
                error = {"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error", "input": {}}
                return self.validation_error(request, [error])
        if not isinstance(payload, dict):
            return self.validation_error(request, [_not_an_object(payload)])
        definition_id: str | None = None
        if workflow_name is None:
            value = payload.get("workflow_definition_id")
            if not isinstance(value, str):
                kind = "missing" if value is None else "string_type"
                msg = "Field required" if value is None else "Input should be a valid string"
                return self.validation_error(
                    request,
                    [{"type": kind, "loc": ["body", "workflow_definition_id"], "msg": msg, "input": payload}],
                )
            definition_id = value

        key = request.headers.get("idempotency-key")
        if key:
            replay = state.idempotent_get(org.org_id, template, key)
            if replay is not None:
                status, body = replay
                if state.dialect == "current":
                    return _json(body, status)
                return _json(conflict_body(state.variants.conflict_shape, body), 409)

        if definition_id is not None:
            definition = state.find_definition_by_id(definition_id, org.org_id)
            label = definition_id
        else:
            assert workflow_name is not None
            definition = state.find_workflow(org.org_id, workflow_name)
            label = workflow_name
        if definition is None:
            return self.error(request, 404, "workflow_not_found", f"Workflow '{label}' not found.")
        if not definition.enabled:
            return self.error(request, 409, "workflow_disabled", f"Workflow '{definition.name}' is disabled.")

        run_input: Any = payload.get("input")
        if state.dialect == "legacy":
            problem: str | None = None
            if "input" not in payload:
                problem = "'input' is a required property (at input)"
            elif definition.input_schema is not None:
                problem = validate(run_input, definition.input_schema)
            elif not isinstance(run_input, dict):
                problem = f"{run_input!r} is not of type 'object' (at input)"
            if problem is not None:
                return self.error(
                    request, 400, "invalid_input", f"Input does not match the workflow's schema: {problem}"
                )
        else:
            if run_input is None:
                run_input = {}
            if not isinstance(run_input, dict):
                return self.validation_error(
                    request,
                    [
                        {
                            "type": "dict_type",
                            "loc": ["body", "input"],
                            "msg": "Input should be a valid dictionary",
                            "input": run_input,
                        }
                    ],
                )
            run_input = state.normalize_input(run_input)

        retry_after = state.concurrency_retry_after(org)
        if retry_after is not None:
            return self.rate_limited(
                request, retry_after, "Per-org workflow concurrency limit exceeded. Inspect retry_after."
            )

        fails = state.dialect == "current" and (definition.dispatch_fails or state.take_dispatch_failure())
        run = state.create_run(org.org_id, definition, run_input, dispatched=not fails)
        if fails:
            return self.error(
                request,
                502,
                "workflow_dispatch_failed",
                "Workflow run was created but could not be dispatched. "
                f"Retry with the same workflow run id ({run.run_id}).",
            )
        body = state.post_view(run)
        if key:
            state.idempotent_put(org.org_id, template, key, 201, body)
        if state.take_drop():
            request.scope[_DROP] = True
        return _json(body, 201)

    async def get_run(self, workflow_run_id: str, request: Request) -> Response:
        org = self.admit(request)
        if isinstance(org, Response):
            return org
        run = self.state.get_run(org.org_id, workflow_run_id)
        if run is None:
            return self.error(request, 404, "workflow_run_not_found", "Workflow run not found.")
        view = self.state.run_view(run)
        if self.state.variants.sparse_get_bodies:
            del view["workflow_run_id"], view["workflow_name"]
        return _json(view)

    async def list_runs(
        self,
        request: Request,
        workflow_name: str | None = None,
        status: list[str] | None = Query(None),  # noqa: B008 - FastAPI's declaration style
        created_at_after: int | None = None,
        created_at_before: int | None = None,
        limit: int = Query(100, ge=1, le=500),
        offset: int = Query(0, ge=0),
    ) -> Response:
        if self.state.dialect == "legacy" and not self.state.variants.legacy_v2_endpoints:
            return self.plain_error(request, 404, "Not Found")  # the legacy contract has no list endpoint
        org = self.admit(request)
        if isinstance(org, Response):
            return org
        allowed = LEGACY_STATUSES if self.state.dialect == "legacy" else CURRENT_STATUSES
        bad = [
            {
                "type": "enum",
                "loc": ["query", "status", i],
                "msg": "Input should be " + ", ".join(repr(s) for s in allowed[:-1]) + f" or {allowed[-1]!r}",
                "input": value,
                "ctx": {"expected": ", ".join(repr(s) for s in allowed)},
            }
            for i, value in enumerate(status or [])
            if value not in allowed
        ]
        if bad:
            return self.validation_error(request, bad)
        if workflow_name is not None and self.state.find_workflow(org.org_id, workflow_name) is None:
            return self.error(request, 404, "workflow_not_found", f"Workflow '{workflow_name}' not found.")
        body = self.state.list_runs(
            org.org_id,
            workflow_name=workflow_name,
            statuses=status,
            created_after=created_at_after,
            created_before=created_at_before,
            limit=limit,
            offset=offset,
        )
        return _json(body)

    async def authtest(self, request: Request) -> Response:
        org = self.admit(request)
        if isinstance(org, Response):
            return org
        return _json({"msg": "Auth successful"})

    # -------------------------------------------------------------- webhooks

    def _url_problem(self, url: str) -> bool:
        """True when ``url`` is not acceptable: HTTPS anywhere public, or HTTP(S) on loopback."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return True
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
            return True
        if _is_loopback(host):
            return False
        if parts.scheme != "https" or port not in (None, 443):
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host.endswith((".local", ".internal")) or host == "metadata.google.internal"
        return not address.is_global

    async def _json_object(self, request: Request) -> JSON | Response:
        try:
            payload = json.loads(await request.body() or b"null")
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return self.validation_error(request, [_not_an_object(payload)])
        return payload

    def _webhook_field_problem(self, request: Request, payload: JSON, *, partial: bool) -> Response | None:
        """Validate in the documented order: ``secret``, then ``url``, then ``events``.

        ``partial`` (PATCH): only the fields given and not ``null``; otherwise every field."""
        if not partial or payload.get("secret") is not None:
            secret = payload.get("secret")
            if not isinstance(secret, str) or len(secret) < 16:
                return self.error(request, 400, "weak_secret", "Secret must be at least 16 characters.")
        if not partial or payload.get("url") is not None:
            url = payload.get("url")
            if not isinstance(url, str) or self._url_problem(url):
                return self.error(
                    request,
                    400,
                    "invalid_url",
                    "Webhook URL must be HTTPS and must not target a private, link-local, or metadata address "
                    "(the emulator also accepts http:// on loopback).",
                )
        if not partial or payload.get("events") is not None:
            events = payload.get("events")
            if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
                return self.validation_error(
                    request,
                    [
                        {
                            "type": "list_type",
                            "loc": ["body", "events"],
                            "msg": "Input should be a valid list",
                            "input": events,
                        }
                    ],
                )
            catalog = LEGACY_EVENT_TYPES if self.state.dialect == "legacy" else CURRENT_EVENT_TYPES
            unknown = [e for e in events if e not in catalog]
            if unknown:
                if self.state.dialect == "legacy":
                    return self.error(request, 400, "invalid_event_type", f"Unsupported event type: {unknown[0]}")
                return self.error(
                    request, 422, "invalid_event_types", f"Unsupported event type(s): {', '.join(unknown)}"
                )
        return None

    async def create_webhook(self, request: Request) -> Response:
        org = self.admit(request)
        if isinstance(org, Response):
            return org
        payload = await self._json_object(request)
        if isinstance(payload, Response):
            return payload
        missing = [
            {"type": "missing", "loc": ["body", name], "msg": "Field required", "input": payload}
            for name in ("url", "events", "secret")
            if name not in payload
        ]
        if missing:
            return self.validation_error(request, missing)
        problem = self._webhook_field_problem(request, payload, partial=False)
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
            self.state.subscriptions[sub.webhook_id] = sub
        return _json(self.state.webhook_view(sub), 201)

    def _own_webhook(self, request: Request, org: OrgConfig, webhook_id: str) -> Subscription | Response:
        sub = self.state.subscriptions.get(webhook_id)
        if sub is None or sub.org_id != org.org_id:
            return self.error(request, 404, "webhook_not_found", "Webhook not found.")
        return sub

    async def update_webhook(self, webhook_id: str, request: Request) -> Response:
        """``PATCH``: omitted and ``null`` fields stay; current dialect: ``description: null`` clears it."""
        org = self.admit(request)
        if isinstance(org, Response):
            return org
        payload = await self._json_object(request)
        if isinstance(payload, Response):
            return payload
        problem = self._webhook_field_problem(request, payload, partial=True)
        if problem is not None:
            return problem
        with self.state.lock:
            sub = self._own_webhook(request, org, webhook_id)
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
            return _json(self.state.webhook_view(sub))

    async def test_webhook(self, webhook_id: str, request: Request) -> Response:
        """Legacy: a synchronous delivery with its result. Current: enqueued, never retried, nulls."""
        org = self.admit(request)
        if isinstance(org, Response):
            return org
        raw = await request.body()
        payload: JSON = {}
        if raw.strip():
            parsed = await self._json_object(request)
            if isinstance(parsed, Response):
                return parsed
            payload = parsed
        event_type = payload.get("event_type") or "webhook.test"
        if not isinstance(event_type, str):
            return self.validation_error(
                request,
                [{"type": "string_type", "loc": ["body", "event_type"], "msg": "Input should be a valid string"}],
            )
        data = payload.get("payload")
        if data is None:
            data = {"test": True}
        if not isinstance(data, dict):
            return self.validation_error(request, [{**_not_an_object(data), "loc": ["body", "payload"]}])
        with self.state.lock:
            sub = self._own_webhook(request, org, webhook_id)
            if isinstance(sub, Response):
                return sub
            if self.state.dialect == "legacy" and event_type != "webhook.test" and event_type not in sub.events:
                return self.error(
                    request,
                    400,
                    "invalid_event_type",
                    f"Event type {event_type} is not subscribed by this webhook (or use webhook.test).",
                )
            job = DeliveryJob(sub, new_id("cbevt_test"), event_type, None, data, test=True)
            self.state.events[job.event_id] = job
        if self.state.dialect == "legacy":
            record = await self.dispatcher.attempt(job, 1)
            return _json(
                {
                    "event_id": job.event_id,
                    "delivered": record["status"] == "delivered",
                    "response_status": record["response_status"],
                    "response_time_ms": record["response_time_ms"],
                    "attempted_at": record["attempted_at"],
                }
            )
        self.dispatcher.spawn(job)
        return _json(
            {
                "event_id": job.event_id,
                "delivered": True,
                "response_status": None,
                "response_time_ms": None,
                "attempted_at": int(self.state.clock.now()),
            }
        )

    async def webhook_deliveries(self, webhook_id: str, request: Request, limit: int = 50, offset: int = 0) -> Response:
        """Delivery history (current dialect): newest first, ``limit`` clamped to 1-100, ``offset`` to >= 0."""
        if self.state.dialect == "legacy":
            return self.plain_error(request, 404, "Not Found")
        org = self.admit(request)
        if isinstance(org, Response):
            return org
        limit = min(max(limit, 1), 100)
        offset = max(offset, 0)
        with self.state.lock:
            sub = self._own_webhook(request, org, webhook_id)
            if isinstance(sub, Response):
                return sub
            mine = [d for d in reversed(self.state.deliveries) if d["webhook_id"] == webhook_id]
            page = [{k: d[k] for k in _DELIVERY_KEYS} for d in mine[offset : offset + limit]]
        return _json({"data": page, "total": len(mine), "limit": limit, "offset": offset})

    async def list_webhooks(self, request: Request) -> Response:
        org = self.admit(request)
        if isinstance(org, Response):
            return org
        with self.state.lock:
            subs = [s for s in self.state.subscriptions.values() if s.org_id == org.org_id]
            return _json({"data": [self.state.webhook_view(s) for s in subs]})

    async def delete_webhook(self, webhook_id: str, request: Request) -> Response:
        org = self.admit(request)
        if isinstance(org, Response):
            return org
        with self.state.lock:
            sub = self._own_webhook(request, org, webhook_id)
            if isinstance(sub, Response):
                return sub
            del self.state.subscriptions[webhook_id]
        return Response(status_code=204)


def _admin_routes(app: FastAPI, state: EmulatorState, dispatcher: WebhookDispatcher) -> None:
    """The ``/_emulator`` admin API (no auth; the outer layer restricts it to loopback clients)."""

    async def body_of(request: Request) -> JSON:
        raw = await request.body()
        data = json.loads(raw) if raw.strip() else {}
        if not isinstance(data, dict):
            raise StarletteHTTPException(422, "expected a JSON object")
        return data

    @app.get("/_emulator", include_in_schema=False)
    @app.get("/_emulator/", include_in_schema=False)
    async def info() -> Response:
        return _json(
            {
                "dialect": state.dialect,
                "speed": state.clock.speed,
                "now": state.clock.now(),
                "orgs": [{"org_id": o.org_id, "name": o.name} for o in state.orgs.values()],
                "workflows": sorted(state.workflows),
                "variants": state.variants.as_dict(),
                "connections": state.connections_view(),
            }
        )

    @app.get("/_emulator/connections", include_in_schema=False)
    async def connections() -> Response:
        return _json(state.connections_view())

    @app.post("/_emulator/variants", include_in_schema=False)
    async def variants(request: Request) -> Response:
        data = await body_of(request)
        try:
            changed = state.set_variants(**data)
        except ConfigError as exc:
            raise StarletteHTTPException(422, str(exc)) from exc
        return _json(changed.as_dict())

    @app.post("/_emulator/faults", include_in_schema=False)
    async def faults(request: Request) -> Response:
        data = await body_of(request)
        with state.lock:
            if "fail_next" in data:
                retry_after = data.get("retry_after")
                state.faults.fail.append(
                    Fault(
                        remaining=int(data["fail_next"]),
                        status=int(data.get("status", 503)),
                        path_prefix=str(data.get("path_prefix") or "/v1/"),
                        retry_after=int(retry_after) if retry_after is not None else None,
                    )
                )
            if "drop_after_commit" in data:
                state.faults.drop_after_commit = int(data["drop_after_commit"])
            if "dispatch_fail_next" in data:
                state.faults.dispatch_fail_next = int(data["dispatch_fail_next"])
            if "delay_seconds" in data:
                state.faults.delay_seconds = float(data["delay_seconds"])
        return _json({"ok": True})

    @app.delete("/_emulator/faults", include_in_schema=False)
    async def clear_faults() -> Response:
        with state.lock:
            state.faults.fail.clear()
            state.faults.drop_after_commit = state.faults.dispatch_fail_next = 0
            state.faults.delay_seconds = 0.0
        return Response(status_code=204)

    @app.post("/_emulator/reset", include_in_schema=False)
    async def reset() -> Response:
        state.reset()
        return _json({"ok": True})

    @app.get("/_emulator/requests", include_in_schema=False)
    async def requests_log() -> Response:
        return _json({"data": list(state.request_log)})

    @app.delete("/_emulator/requests", include_in_schema=False)
    async def clear_requests() -> Response:
        state.request_log.clear()
        return Response(status_code=204)

    @app.post("/_emulator/clock/advance", include_in_schema=False)
    async def advance(request: Request) -> Response:
        data = await body_of(request)
        return _json({"now": state.clock.advance(float(data.get("seconds", 0)))})

    @app.post("/_emulator/clock/speed", include_in_schema=False)
    async def speed(request: Request) -> Response:
        data = await body_of(request)
        state.clock.set_speed(float(data["speed"]))
        return _json({"speed": state.clock.speed, "now": state.clock.now()})

    @app.post("/_emulator/limits", include_in_schema=False)
    async def limits(request: Request) -> Response:
        data = await body_of(request)
        state.set_limits(
            data.get("org_id"),
            requests_per_window=data.get("requests_per_window"),
            window_seconds=data.get("window_seconds"),
            max_concurrent_runs=data.get("max_concurrent_runs"),
        )
        return _json({"ok": True})

    @app.post("/_emulator/workflows", include_in_schema=False)
    async def add_workflow(request: Request) -> Response:
        data = await body_of(request)
        try:
            definition = WorkflowDefinition.from_dict(data)
        except (ConfigError, KeyError, ValueError) as exc:
            raise StarletteHTTPException(422, str(exc)) from exc
        state.add_workflow(definition)
        return _json({"name": definition.name, "id": definition.definition_id(state.dialect)}, 201)

    @app.get("/_emulator/webhook_deliveries", include_in_schema=False)
    async def deliveries() -> Response:
        with state.lock:
            return _json({"data": list(state.deliveries)})

    def signing_of(data: JSON, *, default_count: int | None) -> SigningOverride | None:
        mode = data.get("signature", "valid")
        if mode == "valid":
            return None
        if mode not in ("none", "secret"):
            raise StarletteHTTPException(422, "signature must be 'valid', 'none' or 'secret'")
        secret = data.get("secret")
        if mode == "secret" and not isinstance(secret, str):
            raise StarletteHTTPException(422, "signature 'secret' needs the other 'secret' to sign with")
        count = int(data.get("count", default_count or 1))
        return SigningOverride(count, mode, secret if isinstance(secret, str) else None)

    @app.post("/_emulator/webhooks/redeliver", include_in_schema=False)
    async def redeliver(request: Request) -> Response:
        """Send a raised event again, once, now: ``{"event_id", "signature"?, "secret"?}``."""
        data = await body_of(request)
        try:
            record = await dispatcher.redeliver(str(data.get("event_id")), signing_of(data, default_count=1))
        except KeyError:
            raise StarletteHTTPException(404, f"no event {data.get('event_id')!r} was raised") from None
        return _json(record)

    @app.post("/_emulator/webhooks/signing", include_in_schema=False)
    async def signing(request: Request) -> Response:
        """Sign the next ``count`` delivery attempts wrongly: ``{"signature": "none"|"secret", ...}``."""
        data = await body_of(request)
        override = signing_of(data, default_count=1)
        with state.lock:
            state.webhook_controls.signing = [override] if override is not None else []
        return _json({"ok": True})

    @app.post("/_emulator/webhooks/hold", include_in_schema=False)
    async def hold() -> Response:
        """Keep due deliveries back until released (to send them in another order)."""
        with state.lock:
            state.webhook_controls.hold = True
        return _json({"ok": True})

    @app.get("/_emulator/webhooks/held", include_in_schema=False)
    async def held() -> Response:
        with state.lock:
            jobs = list(state.webhook_controls.held)
        return _json({"data": [_job_view(job) for job in jobs]})

    @app.post("/_emulator/webhooks/release", include_in_schema=False)
    async def release(request: Request) -> Response:
        """Send the held deliveries one after the other: ``{"order": "fifo"|"reverse"|[event_id, ...]}``."""
        data = await body_of(request)
        try:
            jobs = state.release_held(data.get("order", "fifo"))
        except (KeyError, ValueError) as exc:
            raise StarletteHTTPException(422, str(exc)) from None
        await dispatcher.deliver_in_order(jobs)
        return _json({"data": [_job_view(job) for job in jobs]})

    @app.get("/_emulator/webhooks/events", include_in_schema=False)
    async def raised_events() -> Response:
        with state.lock:
            jobs = list(state.events.values())
        return _json({"data": [_job_view(job) for job in jobs]})

    @app.get("/_emulator/runs", include_in_schema=False)
    async def runs() -> Response:
        with state.lock:
            data = [{"org_id": r.org_id, **state.run_view(r)} for r in state.runs.values()]
        return _json({"data": data, "total": len(data)})

    @app.get("/_emulator/runs/{workflow_run_id}", include_in_schema=False)
    @app.get("/_emulator/workflows/runs/{workflow_run_id}", include_in_schema=False)
    async def run_page(workflow_run_id: str, request: Request) -> Response:
        run = state.get_run(None, workflow_run_id)
        if run is None:
            raise StarletteHTTPException(404, "Workflow run not found.")
        view = {"org_id": run.org_id, **state.run_view(run), "input": run.input}
        reason = state.failure_reason(run)
        if reason is not None:
            view["failure_reason"] = reason
        if request.query_params.get("format") == "json" or "text/html" not in request.headers.get("accept", ""):
            return _json(view)
        pretty = html.escape(json.dumps(view, indent=2))
        title = html.escape(f"{run.definition.name}: {view['status']}")
        reason = state.failure_reason(run)
        why = f"<p><strong>Reason:</strong> {html.escape(reason)}</p>" if reason else ""
        return HTMLResponse(
            f"<!doctype html><html><head><title>{title}</title></head><body>"
            f"<h1>Coverbase emulator run {html.escape(run.run_id)}</h1><p>{title}</p>{why}"
            f"<pre>{pretty}</pre></body></html>"
        )


def build_fastapi(state: EmulatorState) -> FastAPI:
    """The FastAPI app with every route (without the outer fault/log layer)."""
    dispatcher = WebhookDispatcher(state)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await dispatcher.start()
        try:
            yield
        finally:
            await dispatcher.stop()

    app = FastAPI(
        title="Coverbase Workflows API emulator",
        docs_url="/_emulator/docs",
        redoc_url=None,
        openapi_url="/_emulator/openapi.json",
        lifespan=lifespan,
    )
    api = _Api(state, dispatcher)
    app.add_api_route("/v1/utils/authtest", api.authtest, methods=["GET"])
    app.add_api_route("/v1/workflows/runs", api.run_by_definition, methods=["POST"])
    app.add_api_route("/v1/workflows/runs", api.list_runs, methods=["GET"])
    app.add_api_route("/v1/workflows/runs/{workflow_run_id}", api.get_run, methods=["GET"])
    app.add_api_route("/v1/workflows/{workflow_name:path}/run", api.run_by_name, methods=["POST"])
    app.add_api_route("/v1/webhooks", api.create_webhook, methods=["POST"], status_code=201)
    app.add_api_route("/v1/webhooks", api.list_webhooks, methods=["GET"])
    app.add_api_route("/v1/webhooks/{webhook_id}", api.update_webhook, methods=["PATCH"])
    app.add_api_route("/v1/webhooks/{webhook_id}", api.delete_webhook, methods=["DELETE"], status_code=204)
    app.add_api_route("/v1/webhooks/{webhook_id}/test", api.test_webhook, methods=["POST"])
    app.add_api_route("/v1/webhooks/{webhook_id}/deliveries", api.webhook_deliveries, methods=["GET"])
    _admin_routes(app, state, dispatcher)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [{k: v for k, v in e.items() if k != "url"} for e in exc.errors()]
        return api.plain_error(request, 422, json.loads(json.dumps(errors, default=str)))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 204 or exc.status_code < 400:
            return Response(status_code=exc.status_code)
        return api.plain_error(request, exc.status_code, exc.detail)

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    return app


class EmulatorASGI:
    """Outer ASGI layer: loopback-only admin, request log, faults, delays, dropped responses."""

    def __init__(self, state: EmulatorState, app: FastAPI) -> None:
        self.state = state
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if not path.startswith("/v1/"):
            client = scope.get("client")
            if path.startswith("/_emulator") and not _is_loopback(client[0] if client else None):
                await _send_raw(send, 403, _dumps({"detail": "The admin API is loopback-only."}), [])
                return
            await self.app(scope, receive, send)
            return
        await self._v1(scope, receive, send)

    async def _v1(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        request_id = str(uuid.uuid4()) if state.dialect == "current" else None
        scope[_REQUEST_ID] = request_id
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        outcome: dict[str, Any] = {"status": None, "dropped": False, "logged": False}

        def log_once() -> None:
            # Logged before the client can see the answer, so the log is in the order answers left.
            if not outcome["logged"]:
                outcome["logged"] = True
                state.log_request(_log_entry(scope, body, outcome["status"], state.clock.now()))

        async def guarded_send(message: Message) -> None:
            if outcome["dropped"]:
                return
            if message["type"] == "http.response.start":
                outcome["status"] = message["status"]
                if scope.get(_DROP):
                    outcome["dropped"] = True
                    outcome["status"] = "dropped"
                    log_once()
                    await _abort(send, message)
                    return
                log_once()
                if request_id is not None:
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"x-coverbase-request-id", request_id.encode()),
                    ]
            await send(message)

        try:
            delay = state.faults.delay_seconds
            if delay > 0:
                await asyncio.sleep(delay)
            fault = state.take_fault(scope["path"])
            if fault is not None:
                outcome["status"] = fault.status
                await self._fault_response(guarded_send, fault, request_id)
            else:
                await self.app(scope, replay, guarded_send)
        finally:
            log_once()

    async def _fault_response(self, send: Send, fault: Fault, request_id: str | None) -> None:
        code = _FAULT_CODES.get(fault.status, "injected_fault")
        body: JSON = {"detail": {"code": code, "message": fault.message}}
        headers: list[tuple[bytes, bytes]] = []
        if fault.retry_after is not None:
            placed = place_retry_after(body, fault.retry_after, self.state.variants.retry_after)
            headers += [(name.lower().encode(), value.encode()) for name, value in placed.items()]
        if request_id is not None:
            body["request_id"] = request_id
        await _send_raw(send, fault.status, _dumps(body), headers)


async def _send_raw(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _abort(send: Send, start: Message) -> None:
    """Close the connection without answering: the "committed but response lost" case.

    uvicorn's ``send`` is a bound method of its request cycle, which holds the transport; aborting
    it makes the client see a transport error. Fallback: send the headers, then fail mid-body.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None:
        transport.abort()
        for _ in range(5):  # let connection_lost() run so uvicorn knows the peer is gone
            await asyncio.sleep(0)
        return
    await send(start)
    raise ConnectionAbortedError("coverbase emulator: dropped the response after commit")


def _log_entry(scope: Scope, body: bytes, status: Any, now: float) -> JSON:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").lower()
        headers[name] = "***" if name == "authorization" else raw_value.decode("latin-1")
    parsed: Any = None
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = body.decode("utf-8", "replace")
    query = scope.get("query_string", b"").decode("latin-1")
    return {
        "method": scope["method"],
        "path": scope["path"],
        "query": parse_qsl(query, keep_blank_values=True),
        "headers": headers,
        "body": parsed,
        "status": status,
        "time": now,
    }


def create_app(state: EmulatorState) -> EmulatorASGI:
    """The ASGI application to serve for ``state``."""
    return EmulatorASGI(state, build_fastapi(state))


CONFLICT_MESSAGE = "A run already exists for this idempotency key. The original response is returned."


def conflict_body(shape: str, original: JSON) -> JSON:
    """A legacy ``409 idempotency_conflict`` replay body carrying ``original`` the way ``shape`` says.

    See :class:`~airflow_provider_coverbase.testing.config.EmulatorConfig` for the shapes.
    """
    code = "idempotency_conflict"
    if shape == "bare":
        return dict(original)
    if shape == "flat":
        return {"code": code, "message": CONFLICT_MESSAGE, "workflow_run_id": original["workflow_run_id"]}
    if shape == "nested":
        return {"detail": {"code": code, "message": CONFLICT_MESSAGE, "original_response": original}}
    if shape == "none":
        return {"detail": {"code": code, "message": CONFLICT_MESSAGE}}
    return {"detail": {"code": code, "message": CONFLICT_MESSAGE}, **original}


def place_retry_after(body: JSON, seconds: int, placement: str) -> dict[str, str]:
    """Put ``retry_after`` into an error ``body`` (in place) per ``placement``; return the headers to send."""
    if placement in ("both", "top_level"):
        body["retry_after"] = seconds
    elif placement == "string":
        body["retry_after"] = str(seconds)
    elif placement == "detail" and isinstance(body.get("detail"), dict):
        body["detail"]["retry_after"] = seconds
    return {"Retry-After": str(seconds)} if placement in ("both", "header") else {}


def _job_view(job: DeliveryJob) -> JSON:
    return {
        "event_id": job.event_id,
        "event_type": job.event_type,
        "webhook_id": job.subscription.webhook_id,
        "workflow_run_id": job.run_id,
        "data": job.data,
        "test": job.test,
    }


def _not_an_object(payload: Any) -> dict[str, Any]:
    """FastAPI's 422 item for a body that is not a JSON object."""
    return {
        "type": "model_attributes_type",
        "loc": ["body"],
        "msg": "Input should be a valid dictionary or object to extract fields from",
        "input": payload,
    }
