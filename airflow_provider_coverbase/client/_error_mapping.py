"""Error mapping: which typed error an answer or a transport failure means, with a message a person can act on.

No I/O. A status and the error body's ``code`` pick the class (:mod:`airflow_provider_coverbase.exceptions`);
the message says what the caller was doing, what Coverbase said and what to check.
"""

from __future__ import annotations

import difflib
import re
import ssl
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from airflow_provider_coverbase.client._answers import json_or_none
from airflow_provider_coverbase.client._call import LIST_RUNS_PATH, Call
from airflow_provider_coverbase.client._config import ClientConfig, is_loopback_host, parse_retry_after
from airflow_provider_coverbase.exceptions import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    CoverbaseAPIError,
    CoverbaseConnectionError,
    CoverbaseTimeoutError,
    IdempotencyConflictError,
    InputRejectedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnprocessableEntityError,
    WorkflowDisabledError,
    WorkflowDispatchFailedError,
)

__all__ = [
    "add_workflow_name_hint",
    "is_missing_list_endpoint",
    "read_error_body",
    "status_error",
    "transport_error",
]

_STATUS_ERRORS: dict[int, type[CoverbaseAPIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}
_CODE_ERRORS: dict[str, type[CoverbaseAPIError]] = {
    "workflow_disabled": WorkflowDisabledError,
    "idempotency_conflict": IdempotencyConflictError,
    "workflow_dispatch_failed": WorkflowDispatchFailedError,
    "invalid_input": InputRejectedError,
}
_RUN_ID_IN_TEXT = re.compile(r"\b(cbw[a-z]*r_[0-9A-Za-z]+)\b")


def is_missing_list_endpoint(method: str, path: str, status: int | None, code: str | None) -> bool:
    """True when an answer to ``GET /v1/workflows/runs`` means the server has no such endpoint.

    The legacy contract has no list endpoint: it answers 404 without the ``workflow_not_found``
    code the current API gives for an unknown ``workflow_name`` (or 405, since ``POST`` exists on
    that path there).
    """
    if method != "GET" or path != LIST_RUNS_PATH:
        return False
    return status == 405 or (status == 404 and code != "workflow_not_found")


#: What OpenSSL's error says when a TLS handshake got a plain-HTTP answer.
_PLAIN_HTTP_SIGNS = ("WRONG_VERSION_NUMBER", "wrong version number", "RECORD_LAYER_FAILURE", "packet length too long")


def _plain_http_answer(error: BaseException) -> bool:
    """Whether a TLS handshake failed because the server answered in plain HTTP.

    OpenSSL reports that as ``WRONG_VERSION_NUMBER`` (or, in OpenSSL 3.2+, sometimes
    ``RECORD_LAYER_FAILURE`` / "packet length too long"); the :class:`ssl.SSLError` may sit in the
    exception's cause or context chain, or only in its text (httpx wraps it).
    """
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            break
        text = str(seen)
        if (isinstance(seen, ssl.SSLError) or "SSL" in text) and any(sign in text for sign in _PLAIN_HTTP_SIGNS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _fold_name(name: str) -> str:
    """A workflow name without letter case, Unicode form or separators, to find a close match."""
    return re.sub(r"[\s_\-]+", "", unicodedata.normalize("NFKC", name).casefold())


@dataclass(frozen=True, slots=True)
class ErrorBody:
    code: str | None
    message: str | None
    request_id: str | None
    body: Any
    retry_after: float | None


def read_error_body(response: httpx.Response) -> ErrorBody:
    """Read an error body of any API version: ``detail`` as an object, a list (422) or a string."""
    body = json_or_none(response)
    code: str | None = None
    message: str | None = None
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, dict):
            code = _str_or_none(detail.get("code"))
            message = _str_or_none(detail.get("message") or detail.get("error"))
        elif isinstance(detail, list):
            message = "; ".join(_validation_item(item) for item in detail) or None
            code = "validation_error"
        elif isinstance(detail, str):
            message = detail
        elif isinstance(body.get("error"), dict):
            code = _str_or_none(body["error"].get("code"))
            message = _str_or_none(body["error"].get("message"))
        else:
            code = _str_or_none(body.get("code") or body.get("error"))
            message = _str_or_none(body.get("message") or body.get("error_description"))
    elif body is None and response.content:
        message = response.text[:300].strip() or None
    request_id = (body.get("request_id") if isinstance(body, dict) else None) or response.headers.get(
        "x-coverbase-request-id"
    )
    return ErrorBody(
        code=code,
        message=message,
        request_id=_str_or_none(request_id),
        body=body,
        retry_after=parse_retry_after(response.headers.get("retry-after"), body),
    )


def _validation_item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    loc = item.get("loc")
    where = ".".join(str(part) for part in loc) if isinstance(loc, list | tuple) else ""
    msg = str(item.get("msg", "invalid"))
    return f"{where}: {msg}" if where else msg


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def transport_error(config: ClientConfig, call: Call[Any], error: httpx.TransportError) -> CoverbaseConnectionError:
    kind = type(error).__name__
    if isinstance(error, httpx.TimeoutException):
        return CoverbaseTimeoutError(
            f"Coverbase did not answer in time to {call.action} ({kind} on {call.method} {call.path}, "
            f"timeout {config.timeout:g} s, connect {config.connect_timeout:g} s)",
            method=call.method,
            path=call.path,
        )
    if config.base_url.startswith("https://") and _plain_http_answer(error):
        plain = "http://" + config.base_url.removeprefix("https://")
        # Not the TLS library's own words: they differ by transport (httpx, aiohttp) and add nothing.
        wrong_scheme = CoverbaseConnectionError(
            f"could not reach Coverbase at {config.base_url} to {call.action}: the server answered "
            f"in plain HTTP, not TLS ({kind} on {call.method} {call.path}). The base URL says "
            f"https:// but the server at that address speaks http: if it is the emulator or another "
            f"local test server, use {plain}; otherwise check the host and port. Not retried",
            method=call.method,
            path=call.path,
        )
        wrong_scheme.retryable = False  # the same answer every time: a setting to fix, not a blip
        return wrong_scheme
    return CoverbaseConnectionError(
        f"could not reach Coverbase at {config.base_url} to {call.action} "
        f"({kind} on {call.method} {call.path}: {error})",
        method=call.method,
        path=call.path,
    )


def status_error(config: ClientConfig, call: Call[Any], response: httpx.Response) -> CoverbaseAPIError:
    info = read_error_body(response)
    status = response.status_code
    cls = _CODE_ERRORS.get(info.code or "") or _STATUS_ERRORS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else CoverbaseAPIError
    summary = _summary(config, call, status, info)
    where = f"HTTP {status}{' ' + info.code if info.code else ''}, {call.method} {call.path}"
    kwargs: dict[str, Any] = {
        "status_code": status,
        "method": call.method,
        "path": call.path,
        "code": info.code,
        "api_message": info.message,
        "request_id": info.request_id,
        "body": info.body,
        "retry_after": info.retry_after,
    }
    if cls is WorkflowDispatchFailedError:
        match = _RUN_ID_IN_TEXT.search(info.message or "")
        kwargs["workflow_run_id"] = match.group(1) if match else None
    return cls(f"{summary} [{where}]", **kwargs)


def _summary(config: ClientConfig, call: Call[Any], status: int, info: ErrorBody) -> str:
    said = f": {info.message.rstrip('.')}" if info.message else ""
    code = info.code or ""
    name = call.workflow_name
    if is_missing_list_endpoint(call.method, call.path, status, code):
        return (
            f"Coverbase has no endpoint to {call.action}{said}: GET {LIST_RUNS_PATH} exists only in the "
            "current API (V2 and later), and this server speaks the legacy contract, which has none. "
            f"If it should have one, check the base URL ({config.base_url}; called {call.request.url})"
        )
    if status == 401:
        if config.source:
            return (
                f"Coverbase rejected the API key{said}. Check the API key (password field) of "
                f"{config.source}: it is invalid, expired or revoked, or is a key of another "
                f"environment than {config.base_url}"
            )
        return (
            f"Coverbase rejected the API key{said}. Check the connection's API key: it is invalid, expired or revoked"
        )
    if status == 403:
        if code == "ip_not_allowed":
            return f"Coverbase refused to {call.action}: this machine's IP is not in the org's API allowlist"
        return f"Coverbase refused to {call.action} (permission denied){said}"
    if status == 404 and not code:
        # Not one of Coverbase's own errors: a router or proxy answered, so the URL may be wrong.
        hint = ""
        if call.method == "POST" and name is None:
            hint = (
                " Starting a run by workflow_definition_id exists only in Coverbase's legacy API; "
                "start it by workflow_name instead."
            )
        elif call.action == "list workflow runs":
            hint = " Listing runs exists only in Coverbase's current API (V2+), not in the legacy one."
        return (
            f"Coverbase could not {call.action}: {call.method} {call.request.url} answered 404 without a "
            f"Coverbase error{said}.{hint} Check the base URL ({config.base_url}): it may be wrong; "
            "it should be the API root, e.g. https://api.coverbase.app, without /v1"
        )
    if status == 404 and name is not None and code == "workflow_not_found":
        return f"workflow '{name}' not found for this API key's org{said}"
    if status == 404 and call.method == "POST" and name is None:
        return (
            f"Coverbase could not {call.action}{said}. Starting a run by workflow_definition_id exists "
            "only in Coverbase's legacy API; start it by workflow_name instead"
        )
    if status == 404 and call.workflow_run_id is not None:
        return (
            f"workflow run '{call.workflow_run_id}' not found for this API key's org "
            f"(a run of another org reads as not found too){said}"
        )
    if code == "workflow_disabled":
        return f"workflow '{name}' is disabled in Coverbase; enable it there, then run the task again{said}"
    if code == "invalid_input":
        return f"Coverbase rejected the input to {call.action}{said}. Fix the input to match the workflow"
    if code == "idempotency_conflict":
        return (
            f"a run already exists for idempotency key {call.idempotency_key!r}, but Coverbase did not "
            f"return it{said}. Not retried: the run exists. Find it in Coverbase (the key started it "
            "within the last 24 hours); to start another run, use another key"
        )
    if code == "workflow_dispatch_failed":
        return (
            f"Coverbase created the run but could not dispatch it while trying to {call.action}{said}. "
            "Not retried: no API re-dispatches a run, and a new request could start a second run. "
            "Check the run in Coverbase before running the task again"
        )
    if status == 422:
        return f"Coverbase could not validate the request to {call.action}{said}"
    if status == 429:
        wait = f"; it asked to wait {info.retry_after:g} s" if info.retry_after is not None else ""
        return f"Coverbase is rate limiting this org while trying to {call.action}{wait}{said}"
    if status >= 500:
        return f"Coverbase had a server error ({status}) while trying to {call.action}{said}"
    return f"Coverbase answered {status} to the request to {call.action}{said}"


def add_workflow_name_hint(
    config: ClientConfig, error: NotFoundError, workflow_name: str, known: Iterable[str] | None
) -> None:
    """Extend a ``workflow_not_found`` error with where names are and, if ``known`` has one, the closest.

    ``known`` is what :meth:`ClientCore.workflow_name_lookups` found (``None``: nothing could be read).
    """
    names = sorted(set(known or ()))
    close = difflib.get_close_matches(workflow_name, names, n=1, cutoff=0.6)
    if not close:  # letter case and spacing: "Quarterly Privacy Sweep" for "quarterly-privacy-sweep"
        folded = {_fold_name(name): name for name in names}
        close = [folded[key] for key in difflib.get_close_matches(_fold_name(workflow_name), list(folded), n=1)]
    hint = f"Did you mean '{close[0]}'? " if close else ""
    if is_loopback_host(httpx.URL(config.base_url).host) and names:
        shown = ", ".join(f"'{name}'" for name in names[:12]) + (", ..." if len(names) > 12 else "")
        hint += (
            f"This emulator's workflows: {shown} (GET {config.base_url}/_emulator lists them; add one "
            "with add_workflow() or a --config file)."
        )
    else:
        hint += (
            "Workflow names are on the Coverbase dashboard; use the exact name, which the run URL "
            "path carries as one segment."
        )
    head, bracket, where = error.message.rpartition(" [HTTP ")
    if not bracket:
        head, where = error.message, ""
    error.message = f"{head}. {hint}" + (f" [HTTP {where}" if bracket else "")
    error.args = (error.message,)
