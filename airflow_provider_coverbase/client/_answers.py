"""Reading the API's answers: a JSON body into a model, a 409 replay into its run. No I/O.

A body that does not fit the model is a :class:`CoverbaseResponseValidationError`; an answer about
another run than the one asked for (a stale answer on a reused connection) is a retryable
:class:`CoverbaseConnectionError`; a replay of another workflow's run is an
:class:`IdempotencyKeyReusedError`.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import httpx
import pydantic

from airflow_provider_coverbase.client._call import Call
from airflow_provider_coverbase.exceptions import (
    CoverbaseConnectionError,
    CoverbaseResponseValidationError,
    IdempotencyKeyReusedError,
)
from airflow_provider_coverbase.models import WorkflowRun

__all__ = [
    "ModelParser",
    "as_success",
    "check_same_workflow",
    "json_or_none",
    "run_in_conflict",
    "same_workflow_name",
]

#: Where a 409 body may carry the replayed run (besides the top level), in this order.
_RUN_HOLDERS = ("workflow_run", "original_response", "run", "data", "detail")
#: Error-envelope keys, never part of a replayed run.
_ENVELOPE_KEYS = frozenset({"detail", "error", "code", "message", "request_id", "retry_after"})


class ModelParser:
    """Reads a JSON answer into ``model``: the ``parse`` of a :class:`Call`.

    A small object rather than a closure with a context dict, since a waiting trigger keeps its
    prepared call (hence its parser) for as long as the run lasts. ``workflow_run_id`` is the run a
    GET asked for, which fills a body that does not name it (the legacy contract).
    """

    __slots__ = ("model", "workflow_run_id")

    def __init__(self, model: type[Any], workflow_run_id: str | None = None) -> None:
        self.model = model
        self.workflow_run_id = workflow_run_id

    def __call__(self, response: httpx.Response) -> Any:
        context = {"workflow_run_id": self.workflow_run_id} if self.workflow_run_id is not None else None
        try:
            result = self.model.model_validate_json(response.content, context=context)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise CoverbaseResponseValidationError(
                f"Coverbase answered {response.status_code} to {response.request.method} "
                f"{response.request.url.path} with a body this client cannot read "
                f"({where}: {first['msg']})",
                method=response.request.method,
                path=response.request.url.path,
                status_code=response.status_code,
            ) from None
        asked = self.workflow_run_id
        if asked is not None and getattr(result, "workflow_run_id", asked) != asked:
            # A stale answer left on a reused connection, read as this request's: never take it for this
            # run's state. Retryable: the connection that carried it is not reused (its bytes are out of step).
            raise CoverbaseConnectionError(
                f"Coverbase answered {response.request.method} {response.request.url.path} with run "
                f"{result.workflow_run_id!r} instead of {asked!r} (a stale answer on a reused connection?)",
                method=response.request.method,
                path=response.request.url.path,
            )
        return result


def same_workflow_name(a: str, b: str) -> bool:
    """Whether two workflow names may name the same workflow once the server has resolved them.

    Equal after Unicode NFKC normalisation, case folding and collapsing runs of whitespace (and
    trimming it): ``Quarterly-Privacy-Sweep`` and ``quarterly-privacy-sweep`` are the same workflow,
    ``quarterly-privacy-sweep`` and ``adhoc-campaign`` are not. Separators such as ``-`` and ``_``
    are kept: they can tell two real workflows apart.
    """

    def canonical(name: str) -> str:
        return " ".join(unicodedata.normalize("NFKC", name).casefold().split())

    return canonical(a) == canonical(b)


def check_same_workflow(call: Call[Any], run: WorkflowRun, response: httpx.Response, *, replay_possible: bool) -> None:
    """Raise :class:`IdempotencyKeyReusedError` if a replay returned another workflow's run.

    Only where a replay was possible: with a key the client generated, the first attempt's
    answer is this call's own run, whatever name the server echoes. Names are compared with
    :func:`same_workflow_name` (the server's own name resolution may change letter case, Unicode
    form or spacing); definition ids are opaque and compared exactly.
    """
    if not replay_possible:
        return
    other = None
    named = call.workflow_name is not None and run.workflow_name
    if named and not same_workflow_name(str(run.workflow_name), str(call.workflow_name)):
        other = f"workflow '{run.workflow_name}'"
    if (
        call.workflow_definition_id is not None
        and run.workflow_definition_id
        and run.workflow_definition_id != call.workflow_definition_id
    ):
        other = f"workflow definition '{run.workflow_definition_id}'"
    if other is None:
        return
    wanted = call.workflow_name or call.workflow_definition_id
    raise IdempotencyKeyReusedError(
        f"idempotency key {call.idempotency_key!r} was already used for run {run.workflow_run_id} of "
        f"{other}, so Coverbase replayed that run instead of starting '{wanted}'. "
        "Use a key that is unique per run across all workflows",
        status_code=response.status_code,
        method=call.method,
        path=call.path,
        code="idempotency_key_reused",
    )


def _has_run_id(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("workflow_run_id"), str) and bool(value["workflow_run_id"])


def run_in_conflict(body: Any) -> dict[str, Any] | None:
    """The run a 409 body carries, whatever the envelope, or ``None``.

    Looked for at the top level (the original body as it was, or a flat ``{code, message,
    workflow_run_id}``), then under ``workflow_run``, ``original_response``, ``run``, ``data`` or
    ``detail``, at the top level or inside ``detail``/``error``. Envelope keys are dropped.
    """
    if not isinstance(body, dict):
        return None
    found: Any = body if _has_run_id(body) else None
    holders = (body, body.get("detail"), body.get("error"))
    for holder in holders:
        if found is not None:
            break
        if isinstance(holder, dict):
            found = next((holder[key] for key in _RUN_HOLDERS if _has_run_id(holder.get(key))), None)
    if found is None:
        return None
    return {key: value for key, value in found.items() if key not in _ENVELOPE_KEYS}


def json_or_none(response: httpx.Response) -> Any:
    """The answer's JSON body, or ``None`` if it has none that parses."""
    try:
        return response.json()
    except ValueError:
        return None


def as_success(conflict: httpx.Response, run_fields: dict[str, Any]) -> httpx.Response:
    """A synthetic 200 response carrying a replayed run, so one parser reads both shapes."""
    return httpx.Response(200, json=run_fields, request=conflict.request)
