"""The runs surface of ``/v1``: start a run (by name, by definition ID), read one, list them, authtest.

No Airflow imports, no client imports.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from airflow_provider_coverbase.testing import runs
from airflow_provider_coverbase.testing.answers import (
    DROP,
    Answers,
    body_error,
    conflict_body,
    json_response,
    not_an_object,
)
from airflow_provider_coverbase.testing.catalog import CURRENT_STATUSES, JSON, LEGACY_STATUSES
from airflow_provider_coverbase.testing.config import OrgConfig, WorkflowDefinition
from airflow_provider_coverbase.testing.input_schema import first_problem

RUN_BY_NAME = "/v1/workflows/{workflow_name}/run"
RUN_BY_DEFINITION = "/v1/workflows/runs"


class RunRoutes:
    """Route handlers for runs, bound to one emulator's state."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.state = answers.state

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/v1/utils/authtest", self.authtest, methods=["GET"])
        router.add_api_route(RUN_BY_DEFINITION, self.run_by_definition, methods=["POST"])
        router.add_api_route("/v1/workflows/runs", self.list_runs, methods=["GET"])
        router.add_api_route("/v1/workflows/runs/{workflow_run_id}", self.get_run, methods=["GET"])
        router.add_api_route("/v1/workflows/{workflow_name:path}/run", self.run_by_name, methods=["POST"])
        return router

    async def run_by_name(self, workflow_name: str, request: Request) -> Response:
        return await self._start(request, RUN_BY_NAME, workflow_name=workflow_name)

    async def run_by_definition(self, request: Request) -> Response:
        if self.state.dialect == "current":
            return self.answers.plain_error(request, 404, "Not Found")
        return await self._start(request, RUN_BY_DEFINITION, workflow_name=None)

    async def _payload(self, request: Request) -> JSON | Response:
        """The POST body as an object (empty body: ``{}``), or FastAPI's 422 for it."""
        raw = await request.body()
        payload: Any = {}
        if raw.strip():
            try:
                payload = json.loads(raw)
            except json.JSONDecodeError as exc:
                error = body_error("json_invalid", ["body", exc.pos], "JSON decode error", {})
                return self.answers.validation_error(request, [{**error, "ctx": {"error": exc.msg}}])
            except ValueError:
                error = body_error("json_invalid", ["body", 0], "JSON decode error", {})
                return self.answers.validation_error(request, [error])
        if not isinstance(payload, dict):
            return self.answers.validation_error(request, [not_an_object(payload)])
        return payload

    def _definition(
        self, request: Request, org: OrgConfig, payload: JSON, workflow_name: str | None
    ) -> WorkflowDefinition | Response:
        """The workflow to run (by name, or by ``workflow_definition_id``), or the error to return."""
        accounts = self.state.accounts
        if workflow_name is not None:
            definition, label = accounts.find_workflow(org.org_id, workflow_name), workflow_name
        else:
            label = payload["workflow_definition_id"]
            definition = accounts.find_definition_by_id(label, self.state.dialect, org.org_id)
        if definition is None:
            return self.answers.error(request, 404, "workflow_not_found", f"Workflow '{label}' not found.")
        if not definition.enabled:
            return self.answers.error(request, 409, "workflow_disabled", f"Workflow '{definition.name}' is disabled.")
        return definition

    def _run_input(self, request: Request, payload: JSON, definition: WorkflowDefinition) -> JSON | Response:
        """The input to store: checked against the schema (legacy) or normalised (current)."""
        run_input: Any = payload.get("input")
        if self.state.dialect == "legacy":
            if "input" not in payload:
                problem: str | None = "'input' is a required property (at input)"
            else:
                problem = first_problem(definition.input_validator, run_input)
            if problem is not None:
                message = f"Input does not match the workflow's schema: {problem}"
                return self.answers.error(request, 400, "invalid_input", message)
            accepted: JSON = run_input  # an object, unless the workflow's own schema allows another type
            return accepted
        if run_input is None:
            run_input = {}
        if not isinstance(run_input, dict):
            error = body_error("dict_type", ["body", "input"], "Input should be a valid dictionary", run_input)
            return self.answers.validation_error(request, [error])
        return runs.normalize_input(run_input, self.state.dialect)

    async def _start(self, request: Request, template: str, workflow_name: str | None) -> Response:
        state, answers = self.state, self.answers
        org = answers.admit(request)
        if isinstance(org, Response):
            return org
        payload = await self._payload(request)
        if isinstance(payload, Response):
            return payload
        if workflow_name is None and not isinstance(payload.get("workflow_definition_id"), str):
            missing = payload.get("workflow_definition_id") is None
            kind, msg = ("missing", "Field required") if missing else ("string_type", "Input should be a valid string")
            error = body_error(kind, ["body", "workflow_definition_id"], msg, payload)
            return answers.validation_error(request, [error])

        key = request.headers.get("idempotency-key")
        if key:
            replay = state.run_store.idempotent_get(org.org_id, template, key, state.clock.now())
            if replay is not None:
                status, body = replay
                if state.dialect == "current":
                    return json_response(body, status)
                return json_response(conflict_body(state.variants.conflict_shape, body), 409)

        definition = self._definition(request, org, payload, workflow_name)
        if isinstance(definition, Response):
            return definition
        run_input = self._run_input(request, payload, definition)
        if isinstance(run_input, Response):
            return run_input

        retry_after = state.concurrency_retry_after(org)
        if retry_after is not None:
            message = "Per-org workflow concurrency limit exceeded. Inspect retry_after."
            return answers.rate_limited(request, retry_after, message)

        fails = state.dialect == "current" and (definition.dispatch_fails or state.faults.take_dispatch_failure())
        run = state.start_run(org, definition, run_input, dispatched=not fails)
        if fails:
            return answers.error(
                request,
                502,
                "workflow_dispatch_failed",
                "Workflow run was created but could not be dispatched. "
                f"Retry with the same workflow run id ({run.run_id}).",
            )
        body = runs.post_view(run, state.dialect)
        if key:
            state.run_store.idempotent_put(org.org_id, template, key, run.started, 201, body)
        if state.faults.take_drop():
            request.scope[DROP] = True
        return json_response(body, 201)

    async def get_run(self, workflow_run_id: str, request: Request) -> Response:
        org = self.answers.admit(request)
        if isinstance(org, Response):
            return org
        run = self.state.run_store.get(org.org_id, workflow_run_id)
        if run is None:
            return self.answers.error(request, 404, "workflow_run_not_found", "Workflow run not found.")
        view = self.state.run_view(run)
        if self.state.variants.sparse_get_bodies:
            del view["workflow_run_id"], view["workflow_name"]
        return json_response(view)

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
        state = self.state
        if state.dialect == "legacy" and not state.variants.legacy_v2_endpoints:
            return self.answers.plain_error(request, 404, "Not Found")  # the legacy contract has no list endpoint
        org = self.answers.admit(request)
        if isinstance(org, Response):
            return org
        allowed = LEGACY_STATUSES if state.dialect == "legacy" else CURRENT_STATUSES
        expected = "Input should be " + ", ".join(repr(s) for s in allowed[:-1]) + f" or {allowed[-1]!r}"
        bad = [
            {
                **body_error("enum", ["query", "status", i], expected, value),
                "ctx": {"expected": ", ".join(repr(s) for s in allowed)},
            }
            for i, value in enumerate(status or [])
            if value not in allowed
        ]
        if bad:
            return self.answers.validation_error(request, bad)
        if workflow_name is not None and state.accounts.find_workflow(org.org_id, workflow_name) is None:
            return self.answers.error(request, 404, "workflow_not_found", f"Workflow '{workflow_name}' not found.")
        which = runs.RunFilter(workflow_name, status or (), created_at_after, created_at_before)
        return json_response(state.run_store.list(org.org_id, state.clock.now(), which, limit=limit, offset=offset))

    async def authtest(self, request: Request) -> Response:
        org = self.answers.admit(request)
        if isinstance(org, Response):
            return org
        return json_response({"msg": "Auth successful"})
