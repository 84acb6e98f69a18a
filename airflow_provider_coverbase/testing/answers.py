"""How the emulator answers: JSON bodies, the dialects' error envelopes, auth and budget checks.

Shared by the route modules (runs, webhooks, admin) and the outer middleware. Bodies are
pre-serialised JSON bytes, without per-request models, which keeps GET-run cheap.

No Airflow imports, no client imports.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from airflow_provider_coverbase.testing.catalog import JSON
from airflow_provider_coverbase.testing.config import OrgConfig
from airflow_provider_coverbase.testing.state import EmulatorState

#: ASGI scope keys the middleware and the routes share.
REQUEST_ID = "coverbase.request_id"
DROP = "coverbase.drop"
CONFLICT_MESSAGE = "A run already exists for this idempotency key. The original response is returned."


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status_code=status, headers=headers, media_type="application/json")


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def body_error(kind: str, loc: list[Any], msg: str, given: Any) -> JSON:
    """One item of a FastAPI-style 422 ``detail`` list."""
    return {"type": kind, "loc": loc, "msg": msg, "input": given}


def not_an_object(payload: Any, loc: tuple[str, ...] = ("body",)) -> JSON:
    """FastAPI's 422 item for a body (or part of one) that is not a JSON object."""
    return body_error(
        "model_attributes_type",
        list(loc),
        "Input should be a valid dictionary or object to extract fields from",
        payload,
    )


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


class Answers:
    """The error envelopes of one emulator's dialect, and the admission of ``/v1`` requests."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def _stamped(self, request: Request, body: JSON) -> JSON:
        """The current dialect adds the request's ID to every error body."""
        if self.state.dialect == "current":
            body["request_id"] = request.scope.get(REQUEST_ID)
        return body

    def error(
        self,
        request: Request,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """The ``{"detail": {"code", "message"}}`` envelope."""
        body = self._stamped(request, {"detail": {"code": code, "message": message}})
        return json_response(body, status, headers)

    def plain_error(self, request: Request, status: int, detail: Any) -> Response:
        """The ``{"detail": ...}`` envelope of FastAPI's own errors (404, 422, 401 in the current dialect)."""
        return json_response(self._stamped(request, {"detail": detail}), status)

    def validation_error(self, request: Request, errors: list[JSON]) -> Response:
        return self.plain_error(request, 422, errors)

    def unauthorized(self, request: Request) -> Response:
        message = "Invalid or expired API key."
        if self.state.dialect == "current":
            return self.plain_error(request, 401, message)
        return self.error(request, 401, "unauthorized", message)

    def rate_limited(self, request: Request, retry_after: int, message: str) -> Response:
        body: JSON = {"detail": {"code": "rate_limited", "message": message}}
        headers = place_retry_after(body, retry_after, self.state.variants.retry_after)
        return json_response(self._stamped(request, body), 429, headers)

    def admit(self, request: Request) -> OrgConfig | Response:
        """Authenticate and charge the request budget: the org, or the error to return."""
        org = self.state.accounts.authenticate(request.headers.get("authorization"))
        if org is None:
            return self.unauthorized(request)
        retry_after = self.state.accounts.consume_budget(org, self.state.clock.now())
        if retry_after is not None:
            return self.rate_limited(request, retry_after, "Per-org request rate limit exceeded. Inspect retry_after.")
        return org

    async def json_object(self, request: Request) -> JSON | Response:
        """The body as a JSON object, or the 422 to return."""
        try:
            payload = json.loads(await request.body() or b"null")
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return self.validation_error(request, [not_an_object(payload)])
        return payload
