"""A stateful fake of the Coverbase Workflows API for ``httpx.MockTransport`` (unit tests).

It keeps runs per org, checks the bearer key, replays idempotency keys per route template, and
speaks either contract (``legacy`` or ``current``). ``script`` injects responses or transport
errors ahead of normal handling; ``lose_next_response`` handles a request, then raises a timeout,
which is the "run committed, answer lost" case. Every request is recorded in ``requests``.

It is deliberately independent of the client's models: it builds wire JSON by hand.
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

import httpx

Dialect = Literal["legacy", "current"]
API_KEY = "ak_test_unit_0123456789abcdef"
OTHER_ORG_KEY = "ak_test_other_org_fedcba9876543210"
STARTED_AT = 1746576000

ScriptItem = httpx.Response | Exception


@dataclass
class FakeRun:
    run_id: str
    name: str
    definition_id: str
    org: str
    input: dict[str, Any]
    status: str
    checkpoints: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    output: Any = None
    completed_at: int | None = None


class FakeCoverbaseAPI:
    """Callable handler: ``httpx.MockTransport(FakeCoverbaseAPI())`` serves sync and async clients."""

    def __init__(self, dialect: Dialect = "legacy") -> None:
        self.dialect = dialect
        self.keys = {API_KEY: "org_1", OTHER_ORG_KEY: "org_2"}
        self.workflows: dict[str, dict[str, Any]] = {
            "quarterly-privacy-sweep": {"id": "cbwfdef_1a2b3c4d5e6f7a8b", "enabled": True},
        }
        self.runs: dict[str, FakeRun] = {}
        self.idempotency: dict[tuple[str, str, str], tuple[int, bytes]] = {}
        self.script: deque[ScriptItem] = deque()
        self.requests: list[httpx.Request] = []
        self.lose_next_response = 0
        #: Legacy replays: how a 409 carries the original run. ``detail`` (the error envelope plus the
        #: run's fields at the top level), ``bare`` (the original body as it was), ``flat`` (``code``,
        #: ``message`` and ``workflow_run_id`` only), ``nested`` (the run under
        #: ``detail.original_response``) or ``none`` (no run at all).
        self.conflict_shape = "detail"
        #: GET run bodies without ``workflow_run_id`` and ``workflow_name`` (the legacy page's field list).
        self.sparse_get = False
        #: Resolve workflow names ignoring letter case, echoing the stored spelling.
        self.case_insensitive_names = False
        self._ids = itertools.count(1)

    # ---- helpers for tests -------------------------------------------------------------

    def add_workflow(self, name: str, *, enabled: bool = True) -> None:
        self.workflows[name] = {"id": f"cbwfdef_{len(self.workflows):016x}", "enabled": enabled}

    def runs_of(self, name: str) -> list[FakeRun]:
        return [run for run in self.runs.values() if run.name == name]

    def set_status(self, run_id: str, status: str, **changes: Any) -> None:
        run = self.runs[run_id]
        run.status = status
        for key, value in changes.items():
            setattr(run, key, value)

    # ---- wire --------------------------------------------------------------------------

    def _error(self, status: int, code: str, message: str, **extra: Any) -> httpx.Response:
        body: dict[str, Any] = {"detail": {"code": code, "message": message}, **extra}
        headers = {}
        if self.dialect == "current":
            body["request_id"] = "41ff4305-740d-4181-bed9-1fbe21bd69ab"
            headers["x-coverbase-request-id"] = body["request_id"]
        return httpx.Response(status, json=body, headers=headers)

    def run_json(self, run: FakeRun) -> dict[str, Any]:
        data: dict[str, Any] = {
            "workflow_run_id": run.run_id,
            "workflow_name": run.name,
            "workflow_definition_id": run.definition_id,
            "status": run.status,
            "started_at": STARTED_AT,
            "completed_at": run.completed_at,
        }
        if self.dialect == "legacy":
            data["checkpoints_reached"] = run.checkpoints
            data["output"] = run.output
        else:
            data["steps"] = run.steps
        return data

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.script:
            item = self.script.popleft()
            if isinstance(item, Exception):
                raise item
            return item
        response = self._handle(request)
        if self.lose_next_response:
            self.lose_next_response -= 1
            raise httpx.ReadTimeout("response lost", request=request)
        return response

    def _handle(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        org = self.keys.get(auth.removeprefix("Bearer "))
        if not auth:
            return httpx.Response(403, json={"detail": "Not authenticated"})
        if org is None:
            return httpx.Response(401, json={"detail": "Invalid or expired API key."})
        parts = request.url.raw_path.decode().split("?")[0].split("/")
        method = request.method
        if method == "GET" and parts[1:] == ["v1", "utils", "authtest"]:
            return httpx.Response(200, json={"msg": "Auth successful"})
        if method == "POST" and len(parts) == 5 and parts[1:3] == ["v1", "workflows"] and parts[4] == "run":
            return self._start(request, org, unquote(parts[3]), "/v1/workflows/{workflow_name}/run")
        if method == "POST" and parts[1:] == ["v1", "workflows", "runs"]:
            if self.dialect != "legacy":
                return httpx.Response(404, json={"detail": "Not Found"})
            body = json.loads(request.content)
            names = [n for n, w in self.workflows.items() if w["id"] == body.get("workflow_definition_id")]
            if not names:
                return self._error(404, "workflow_not_found", "Workflow definition not found.")
            return self._start(request, org, names[0], "/v1/workflows/runs")
        if method == "GET" and len(parts) == 5 and parts[1:4] == ["v1", "workflows", "runs"]:
            run = self.runs.get(unquote(parts[4]))
            if run is None or run.org != org:
                return self._error(404, "workflow_run_not_found", "Workflow run not found.")
            body = self.run_json(run)
            if self.sparse_get:
                del body["workflow_run_id"], body["workflow_name"]
            return httpx.Response(200, json=body)
        if method == "GET" and parts[1:] == ["v1", "workflows", "runs"]:
            params = request.url.params
            runs = [r for r in self.runs.values() if r.org == org]
            name = params.get("workflow_name")
            if self.dialect == "current" and name is not None and name not in self.workflows:
                return self._error(404, "workflow_not_found", f"Workflow '{name}' not found.")
            if "workflow_name" in params:
                runs = [r for r in runs if r.name == params["workflow_name"]]
            statuses = params.get_list("status")
            if statuses:
                runs = [r for r in runs if r.status in statuses]
            limit, offset = int(params.get("limit", 100)), int(params.get("offset", 0))
            items = [{**self.run_json(r), "step_count": len(r.steps)} for r in reversed(runs)]
            return httpx.Response(
                200,
                json={
                    "data": items[offset : offset + limit],
                    "total": len(items),
                    "limit": limit,
                    "offset": offset,
                },
            )
        return httpx.Response(404, json={"detail": "Not Found"})

    def _conflict(self, original: dict[str, Any]) -> dict[str, Any]:
        code = "idempotency_conflict"
        message = "A run already exists for this idempotency key. The original response is returned."
        if self.conflict_shape == "bare":
            return original
        if self.conflict_shape == "flat":
            return {"code": code, "message": message, "workflow_run_id": original["workflow_run_id"]}
        if self.conflict_shape == "nested":
            return {"detail": {"code": code, "message": message, "original_response": original}}
        if self.conflict_shape == "none":
            return {"detail": {"code": code, "message": message}}
        return {"detail": {"code": code, "message": message}, **original}

    def _start(self, request: httpx.Request, org: str, name: str, route: str) -> httpx.Response:
        key = request.headers.get("idempotency-key")
        if key is not None and (org, route, key) in self.idempotency:
            status, body = self.idempotency[(org, route, key)]
            if self.dialect == "legacy":
                return httpx.Response(409, json=self._conflict(json.loads(body)))
            return httpx.Response(status, content=body, headers={"content-type": "application/json"})
        if self.case_insensitive_names:
            name = next((known for known in self.workflows if known.casefold() == name.casefold()), name)
        workflow = self.workflows.get(name)
        if workflow is None:
            return self._error(404, "workflow_not_found", f"Workflow '{name}' not found.")
        if not workflow["enabled"]:
            return self._error(409, "workflow_disabled", f"Workflow '{name}' is disabled.")
        run_input = json.loads(request.content).get("input", {})
        number = next(self._ids)
        prefix = "cbwfr_" if self.dialect == "legacy" else "cbwr_"
        run = FakeRun(
            run_id=f"{prefix}{number:032x}",
            name=name,
            definition_id=workflow["id"],
            org=org,
            input=run_input,
            status="running" if self.dialect == "legacy" else "started",
        )
        self.runs[run.run_id] = run
        body: dict[str, Any] = {
            "workflow_run_id": run.run_id,
            "workflow_name": name,
            "status": run.status,
            "started_at": STARTED_AT,
            "input": run_input,
        }
        if self.dialect == "legacy":
            body["workflow_definition_id"] = run.definition_id
        content = json.dumps(body).encode()
        if key is not None:
            self.idempotency[(org, route, key)] = (201, content)
        return httpx.Response(201, content=content, headers={"content-type": "application/json"})
