"""Request building: each endpoint's request, checked and ready to send, free of I/O.

A run-starting POST gets its idempotency key here, once, so every retry sends the same one. GETs of
one client share their headers, body and extensions (a waiting trigger keeps its prepared GET for as
long as the run lasts; thousands of them wait at once).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import httpx

from airflow_provider_coverbase import __version__
from airflow_provider_coverbase.client._answers import ModelParser, json_or_none
from airflow_provider_coverbase.client._call import LIST_RUNS_PATH, Call
from airflow_provider_coverbase.client._config import ClientConfig, is_loopback_host
from airflow_provider_coverbase.client._inputs import (
    MAX_LIST_LIMIT,
    check_idempotency_key,
    check_json_object,
    encode_path_segment,
    new_key,
    unix_seconds,
)
from airflow_provider_coverbase.exceptions import CoverbaseConfigError
from airflow_provider_coverbase.models import WorkflowRun, WorkflowRunList

__all__ = ["RequestBuilder"]


class RequestBuilder:
    """Builds each endpoint's :class:`Call` for one client's settings. Holds no connection."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        agent = f"airflow-provider-coverbase/{__version__} httpx/{httpx.__version__}"
        self._user_agent = f"{agent} {config.user_agent}".strip()
        self._timeout = httpx.Timeout(config.timeout, connect=config.connect_timeout)
        # What every request of this client carries alike, made once and shared by its requests (a
        # waiting trigger keeps its prepared request for days; thousands of them wait at once).
        self._extensions: dict[str, Any] = {"timeout": self._timeout.as_dict()}
        self._bodyless_headers = _shared_headers(
            [
                ("Host", httpx.URL(config.base_url).netloc.decode("ascii")),
                ("Authorization", f"Bearer {config.api_key}"),
                ("Accept", "application/json"),
                ("User-Agent", self._user_agent),
            ]
        )

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: list[tuple[str, str | int]] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Request:
        url = httpx.URL(self.config.base_url + path, params=params)
        if body is None and idempotency_key is None:
            # A GET: the same headers (Host first, as httpx puts it) as every other GET of this
            # client, shared read-only, and the shared empty body and extensions.
            request = httpx.Request(method, url, headers=self._bodyless_headers, stream=_NO_BODY)
            request.headers = self._bodyless_headers
            request.extensions = self._extensions
            request.read()
            return request
        headers = {
            "Authorization": f"Bearer {self.config.api_key}",
            "Accept": "application/json",
            "User-Agent": self._user_agent,
        }
        content: bytes | None = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        request = httpx.Request(method, url, headers=headers, content=content)
        request.extensions = self._extensions
        return request

    def run_workflow(
        self, workflow_name: str, input: Mapping[str, Any] | None, idempotency_key: str | None
    ) -> Call[WorkflowRun]:
        """``POST /v1/workflows/{workflow_name}/run`` with ``{"input": {...}}``."""
        segment = encode_path_segment(workflow_name, what="workflow_name")
        return self._start(
            f"/v1/workflows/{segment}/run",
            {"input": check_json_object(input)},
            idempotency_key,
            action=f"start workflow '{workflow_name}'",
            workflow_name=workflow_name,
        )

    def run_workflow_definition(
        self, workflow_definition_id: str, input: Mapping[str, Any] | None, idempotency_key: str | None
    ) -> Call[WorkflowRun]:
        """``POST /v1/workflows/runs`` with ``workflow_definition_id`` (legacy contract only)."""
        encode_path_segment(workflow_definition_id, what="workflow_definition_id")  # the same checks
        return self._start(
            "/v1/workflows/runs",
            {"workflow_definition_id": workflow_definition_id, "input": check_json_object(input)},
            idempotency_key,
            action=f"start workflow definition '{workflow_definition_id}'",
            workflow_definition_id=workflow_definition_id,
        )

    def _start(
        self,
        path: str,
        payload: Mapping[str, Any],
        idempotency_key: str | None,
        *,
        action: str,
        workflow_name: str | None = None,
        workflow_definition_id: str | None = None,
    ) -> Call[WorkflowRun]:
        """A run-starting POST: the key is fixed here, once, so every retry sends the same one."""
        key = check_idempotency_key(idempotency_key) if idempotency_key is not None else new_key()
        return Call(
            self._request("POST", path, body=payload, idempotency_key=key),
            ModelParser(WorkflowRun),
            action=action,
            workflow_name=workflow_name,
            idempotency_key=key,
            starts_run=True,
            workflow_definition_id=workflow_definition_id,
            caller_key=idempotency_key is not None,
        )

    def get_workflow_run(self, workflow_run_id: str) -> Call[WorkflowRun]:
        """``GET /v1/workflows/runs/{workflow_run_id}``."""
        segment = encode_path_segment(workflow_run_id, what="workflow_run_id")
        return Call(
            self._request("GET", f"/v1/workflows/runs/{segment}"),
            ModelParser(WorkflowRun, workflow_run_id),
            action=f"read workflow run '{workflow_run_id}'",
            workflow_run_id=workflow_run_id,
        )

    def read_replayed_run(self, call: Call[Any], workflow_run_id: str, *, earlier: bool) -> Call[WorkflowRun]:
        """The GET that reads a run a 409 replay named without its status; checked like the replay."""
        read = self.get_workflow_run(workflow_run_id)
        return Call(
            read.request,
            read.parse,
            action=f"read run {workflow_run_id}, which Coverbase replayed for idempotency key {call.idempotency_key}",
            workflow_name=call.workflow_name,
            workflow_run_id=workflow_run_id,
            idempotency_key=call.idempotency_key,
            workflow_definition_id=call.workflow_definition_id,
            reads_replay=True,
            replay_of_earlier_call=earlier,
        )

    def list_workflow_runs(
        self,
        *,
        workflow_name: str | None = None,
        status: str | Iterable[str] | None = None,
        created_at_after: datetime | int | None = None,
        created_at_before: datetime | int | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> Call[WorkflowRunList]:
        """``GET /v1/workflows/runs`` (current API): newest first, ``limit``/``offset`` paging."""
        params: list[tuple[str, str | int]] = []
        if workflow_name is not None:
            encode_path_segment(workflow_name, what="workflow_name")
            params.append(("workflow_name", workflow_name))
        statuses = [status] if isinstance(status, str) else list(status or ())
        params.extend(("status", str(value)) for value in statuses)
        for name, value in (("created_at_after", created_at_after), ("created_at_before", created_at_before)):
            seconds = unix_seconds(value, name)
            if seconds is not None:
                params.append((name, seconds))
        if limit is not None:
            if not (isinstance(limit, int) and 1 <= limit <= MAX_LIST_LIMIT):
                raise CoverbaseConfigError(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit!r}")
            params.append(("limit", limit))
        if offset is not None:
            if not (isinstance(offset, int) and offset >= 0):
                raise CoverbaseConfigError(f"offset must be an integer >= 0, got {offset!r}")
            params.append(("offset", offset))
        return Call(
            self._request("GET", LIST_RUNS_PATH, params=params),
            ModelParser(WorkflowRunList),
            action="list workflow runs",
            workflow_name=workflow_name,
        )

    def check_auth(self) -> Call[str]:
        """``GET /v1/utils/authtest``: 200 for any valid key."""

        def parse(response: httpx.Response) -> str:
            body = json_or_none(response)
            message = body.get("msg") if isinstance(body, dict) else None
            return str(message or "Auth successful")

        return Call(self._request("GET", "/v1/utils/authtest"), parse, action="check the API key")

    def workflow_name_lookups(self) -> list[Call[list[str]]]:
        """Where workflow names can be read, for the hint after a ``404 workflow_not_found``.

        Coverbase has no endpoint that lists workflows. The emulator lists its own at ``GET
        /_emulator`` (asked only on a loopback base URL, where the emulator runs); the current API's
        run list (``GET /v1/workflows/runs``, the newest 500 runs) names the workflows that ran
        lately. The legacy contract has neither, and then the hint only says where names are.
        """

        def emulator_names(response: httpx.Response) -> list[str]:
            body = json_or_none(response)
            names = body.get("workflows") if isinstance(body, dict) else None
            return [str(name) for name in names] if isinstance(names, list) else []

        lookups: list[Call[list[str]]] = []
        if is_loopback_host(httpx.URL(self.config.base_url).host):
            emulator = self._request("GET", "/_emulator")
            lookups.append(Call(emulator, emulator_names, action="list the emulator's workflows"))
        runs = self.list_workflow_runs(limit=MAX_LIST_LIMIT)

        def run_names(response: httpx.Response) -> list[str]:
            return sorted({str(run.workflow_name) for run in runs.parse(response).data if run.workflow_name})

        lookups.append(Call(runs.request, run_names, action=runs.action))
        return lookups


#: The body of every GET: one shared, empty, immutable stream.
_NO_BODY = httpx.ByteStream(b"")


def _shared_headers(pairs: list[tuple[str, str]]) -> httpx.Headers:
    """Headers that many requests share, made once: nothing in either send path changes a request's
    headers (the transports read them), so sharing one object is safe."""
    return httpx.Headers(pairs)
