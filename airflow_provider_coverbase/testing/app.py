"""The emulator's HTTP application: the Coverbase ``/v1`` surfaces and the ``/_emulator`` admin API.

``create_app(state)`` returns a plain ASGI callable: the faults middleware
(:mod:`.middleware`: request log, injected faults and delays, dropped connections,
``x-coverbase-request-id``) around a FastAPI app that includes one ``APIRouter`` per surface:
runs (:mod:`.routes_runs`), webhook subscriptions (:mod:`.routes_webhooks`) and the admin API
(:mod:`.routes_admin`). The app's lifespan runs the outbound webhook dispatcher.

No Airflow imports, no client imports.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_coverbase.testing.answers import Answers
from airflow_provider_coverbase.testing.middleware import FaultsMiddleware
from airflow_provider_coverbase.testing.routes_admin import AdminRoutes
from airflow_provider_coverbase.testing.routes_runs import RunRoutes
from airflow_provider_coverbase.testing.routes_webhooks import WebhookRoutes
from airflow_provider_coverbase.testing.state import EmulatorState
from airflow_provider_coverbase.testing.webhook_delivery import WebhookDispatcher


def build_fastapi(state: EmulatorState) -> FastAPI:
    """The FastAPI app with every route (without the outer faults middleware)."""
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
    answers = Answers(state)
    app.include_router(RunRoutes(answers).router())
    app.include_router(WebhookRoutes(answers, dispatcher).router())
    app.include_router(AdminRoutes(state, dispatcher).router())

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [{k: v for k, v in e.items() if k != "url"} for e in exc.errors()]
        return answers.plain_error(request, 422, json.loads(json.dumps(errors, default=str)))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 204 or exc.status_code < 400:
            return Response(status_code=exc.status_code)
        return answers.plain_error(request, exc.status_code, exc.detail)

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    return app


def create_app(state: EmulatorState) -> FaultsMiddleware:
    """The ASGI application to serve for ``state``."""
    return FaultsMiddleware(build_fastapi(state), state)
