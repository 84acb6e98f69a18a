"""The ``/_emulator`` admin API: inspect and drive an emulator from another process (the CLI's).

No auth; the outer middleware answers 403 to any client not on loopback. Errors are
``{"detail": ...}`` with status 422 (bad control input) or 404.

No Airflow imports, no client imports.
"""

from __future__ import annotations

import html
import json
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_coverbase.testing import runs
from airflow_provider_coverbase.testing.answers import json_response
from airflow_provider_coverbase.testing.catalog import JSON
from airflow_provider_coverbase.testing.config import ConfigError, WorkflowDefinition
from airflow_provider_coverbase.testing.controls import Fault
from airflow_provider_coverbase.testing.state import EmulatorState
from airflow_provider_coverbase.testing.webhook_delivery import WebhookDispatcher
from airflow_provider_coverbase.testing.webhook_store import SigningOverride

_OK = {"ok": True}


async def _body_of(request: Request) -> JSON:
    raw = await request.body()
    data = json.loads(raw) if raw.strip() else {}
    if not isinstance(data, dict):
        raise StarletteHTTPException(422, "expected a JSON object")
    return data


def _signing_of(data: JSON) -> SigningOverride | None:
    """``{"signature": "valid"|"none"|"secret", "secret"?, "count"?}`` as an override (``None``: valid)."""
    mode = data.get("signature", "valid")
    if mode == "valid":
        return None
    if mode not in ("none", "secret"):
        raise StarletteHTTPException(422, "signature must be 'valid', 'none' or 'secret'")
    secret = data.get("secret")
    if mode == "secret" and not isinstance(secret, str):
        raise StarletteHTTPException(422, "signature 'secret' needs the other 'secret' to sign with")
    return SigningOverride(int(data.get("count", 1)), mode, secret if isinstance(secret, str) else None)


class AdminRoutes:
    """Route handlers of the admin API, bound to one emulator's state and dispatcher."""

    def __init__(self, state: EmulatorState, dispatcher: WebhookDispatcher) -> None:
        self.state = state
        self.dispatcher = dispatcher

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/_emulator", include_in_schema=False)
        for path in ("", "/"):
            router.add_api_route(path, self.info, methods=["GET"])
        routes: list[tuple[str, Callable[..., Awaitable[Response]], str]] = [
            ("/connections", self.connections, "GET"),
            ("/variants", self.variants, "POST"),
            ("/faults", self.faults, "POST"),
            ("/faults", self.clear_faults, "DELETE"),
            ("/reset", self.reset, "POST"),
            ("/requests", self.requests_log, "GET"),
            ("/requests", self.clear_requests, "DELETE"),
            ("/clock/advance", self.advance, "POST"),
            ("/clock/speed", self.speed, "POST"),
            ("/limits", self.limits, "POST"),
            ("/workflows", self.add_workflow, "POST"),
            ("/webhook_deliveries", self.deliveries, "GET"),
            ("/webhooks/redeliver", self.redeliver, "POST"),
            ("/webhooks/signing", self.signing, "POST"),
            ("/webhooks/hold", self.hold, "POST"),
            ("/webhooks/held", self.held, "GET"),
            ("/webhooks/release", self.release, "POST"),
            ("/webhooks/events", self.raised_events, "GET"),
            ("/runs", self.runs, "GET"),
            ("/runs/{workflow_run_id}", self.run_page, "GET"),
            ("/workflows/runs/{workflow_run_id}", self.run_page, "GET"),
        ]
        for path, handler, method in routes:
            router.add_api_route(path, handler, methods=[method])
        return router

    async def info(self) -> Response:
        state = self.state
        return json_response(
            {
                "dialect": state.dialect,
                "speed": state.clock.speed,
                "now": state.clock.now(),
                "orgs": [{"org_id": o.org_id, "name": o.name} for o in state.accounts.orgs.values()],
                "workflows": sorted(state.accounts.workflows),
                "variants": state.variants.as_dict(),
                "connections": state.connections_view(),
            }
        )

    async def connections(self) -> Response:
        return json_response(self.state.connections_view())

    async def variants(self, request: Request) -> Response:
        try:
            changed = self.state.set_variants(**await _body_of(request))
        except ConfigError as exc:
            raise StarletteHTTPException(422, str(exc)) from exc
        return json_response(changed.as_dict())

    async def faults(self, request: Request) -> Response:
        data = await _body_of(request)
        faults = self.state.faults
        with self.state.lock:
            if "fail_next" in data:
                retry_after = data.get("retry_after")
                faults.fail.append(
                    Fault(
                        remaining=int(data["fail_next"]),
                        status=int(data.get("status", 503)),
                        path_prefix=str(data.get("path_prefix") or "/v1/"),
                        retry_after=int(retry_after) if retry_after is not None else None,
                    )
                )
            if "drop_after_commit" in data:
                faults.drop_after_commit = int(data["drop_after_commit"])
            if "dispatch_fail_next" in data:
                faults.dispatch_fail_next = int(data["dispatch_fail_next"])
            if "delay_seconds" in data:
                faults.delay_seconds = float(data["delay_seconds"])
        return json_response(_OK)

    async def clear_faults(self) -> Response:
        self.state.faults.clear()
        return Response(status_code=204)

    async def reset(self) -> Response:
        self.state.reset()
        return json_response(_OK)

    async def requests_log(self) -> Response:
        return json_response({"data": list(self.state.request_log)})

    async def clear_requests(self) -> Response:
        self.state.request_log.clear()
        return Response(status_code=204)

    async def advance(self, request: Request) -> Response:
        data = await _body_of(request)
        return json_response({"now": self.state.clock.advance(float(data.get("seconds", 0)))})

    async def speed(self, request: Request) -> Response:
        data = await _body_of(request)
        self.state.clock.set_speed(float(data["speed"]))
        return json_response({"speed": self.state.clock.speed, "now": self.state.clock.now()})

    async def limits(self, request: Request) -> Response:
        data = await _body_of(request)
        self.state.accounts.set_limits(data.get("org_id"), data)
        return json_response(_OK)

    async def add_workflow(self, request: Request) -> Response:
        """Add a workflow given in its config-file form; 422 with the config error otherwise."""
        data = await _body_of(request)
        try:
            definition = WorkflowDefinition.from_dict(data)
        except ConfigError as exc:
            raise StarletteHTTPException(422, str(exc)) from exc
        self.state.accounts.add_workflow(definition)
        return json_response({"name": definition.name, "id": definition.definition_id(self.state.dialect)}, 201)

    async def deliveries(self) -> Response:
        with self.state.lock:
            return json_response({"data": list(self.state.webhooks.deliveries)})

    async def redeliver(self, request: Request) -> Response:
        """Send a raised event again, once, now: ``{"event_id", "signature"?, "secret"?}``."""
        data = await _body_of(request)
        try:
            record = await self.dispatcher.redeliver(str(data.get("event_id")), _signing_of(data))
        except KeyError:
            raise StarletteHTTPException(404, f"no event {data.get('event_id')!r} was raised") from None
        return json_response(record)

    async def signing(self, request: Request) -> Response:
        """Sign the next ``count`` delivery attempts wrongly: ``{"signature": "none"|"secret", ...}``."""
        override = _signing_of(await _body_of(request))
        with self.state.lock:
            self.state.webhooks.controls.signing = [override] if override is not None else []
        return json_response(_OK)

    async def hold(self) -> Response:
        """Keep due deliveries back until released (to send them in another order)."""
        with self.state.lock:
            self.state.webhooks.controls.hold = True
        return json_response(_OK)

    async def held(self) -> Response:
        with self.state.lock:
            jobs = list(self.state.webhooks.controls.held)
        return json_response({"data": [job.view() for job in jobs]})

    async def release(self, request: Request) -> Response:
        """Send the held deliveries one after the other: ``{"order": "fifo"|"reverse"|[event_id, ...]}``."""
        data = await _body_of(request)
        try:
            jobs = self.state.webhooks.release_held(data.get("order", "fifo"))
        except (KeyError, ValueError) as exc:
            raise StarletteHTTPException(422, str(exc)) from None
        await self.dispatcher.deliver_in_order(jobs)
        return json_response({"data": [job.view() for job in jobs]})

    async def raised_events(self) -> Response:
        with self.state.lock:
            jobs = list(self.state.webhooks.events.values())
        return json_response({"data": [job.view() for job in jobs]})

    async def runs(self) -> Response:
        with self.state.lock:
            data = [{"org_id": r.org_id, **self.state.run_view(r)} for r in self.state.runs.values()]
        return json_response({"data": data, "total": len(data)})

    async def run_page(self, workflow_run_id: str, request: Request) -> Response:
        """One run (any org) with its input and why it failed: HTML for a browser, JSON otherwise."""
        state = self.state
        run = state.run_store.get(None, workflow_run_id)
        if run is None:
            raise StarletteHTTPException(404, "Workflow run not found.")
        view = {"org_id": run.org_id, **state.run_view(run), "input": run.input}
        reason = runs.failure_reason(run, state.clock.now())
        if reason is not None:
            view["failure_reason"] = reason
        if request.query_params.get("format") == "json" or "text/html" not in request.headers.get("accept", ""):
            return json_response(view)
        pretty = html.escape(json.dumps(view, indent=2))
        title = html.escape(f"{run.definition.name}: {view['status']}")
        why = f"<p><strong>Reason:</strong> {html.escape(reason)}</p>" if reason else ""
        return HTMLResponse(
            f"<!doctype html><html><head><title>{title}</title></head><body>"
            f"<h1>Coverbase emulator run {html.escape(run.run_id)}</h1><p>{title}</p>{why}"
            f"<pre>{pretty}</pre></body></html>"
        )
