"""The client's logic, written once and free of I/O. No Airflow imports here.

Everything that decides something lives here: how each endpoint's request is built, how a response
is parsed, which error a status maps to (with a message a person can act on), and the retry
decision (:meth:`ClientCore.after_failure`). ``CoverbaseClient`` and ``AsyncCoverbaseClient`` only
send the requests built here, feed the outcome back to :meth:`ClientCore.finish`, and wait as told.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import random
import re
import ssl
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypedDict, TypeVar, cast
from urllib.parse import quote

import httpx
import pydantic

from airflow_provider_coverbase import __version__
from airflow_provider_coverbase.client._config import ClientConfig, is_loopback_host, parse_retry_after
from airflow_provider_coverbase.exceptions import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    CoverbaseAPIError,
    CoverbaseConfigError,
    CoverbaseConnectionError,
    CoverbaseError,
    CoverbaseResponseValidationError,
    CoverbaseTimeoutError,
    IdempotencyConflictError,
    IdempotencyKeyReusedError,
    InputRejectedError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnprocessableEntityError,
    WorkflowDisabledError,
    WorkflowDispatchFailedError,
)
from airflow_provider_coverbase.models import WorkflowRun, WorkflowRunList

__all__ = [
    "Call",
    "ClientCore",
    "RunListFilters",
    "check_json_object",
    "encode_path_segment",
    "is_missing_list_endpoint",
    "same_workflow_name",
]

log = logging.getLogger("airflow_provider_coverbase.client")

T = TypeVar("T")

#: Largest ``limit`` the list endpoint accepts (it answers 422 above it).
MAX_LIST_LIMIT = 500
#: The API does not document a limit on idempotency keys; stay well inside common header limits.
MAX_IDEMPOTENCY_KEY_LENGTH = 255

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
#: Where a 409 body may carry the replayed run (besides the top level), in this order.
_RUN_HOLDERS = ("workflow_run", "original_response", "run", "data", "detail")
#: Error-envelope keys, never part of a replayed run.
_ENVELOPE_KEYS = frozenset({"detail", "error", "code", "message", "request_id", "retry_after"})
_RUN_ID_IN_TEXT = re.compile(r"\b(cbw[a-z]*r_[0-9A-Za-z]+)\b")


#: The list endpoint (current API only).
LIST_RUNS_PATH = "/v1/workflows/runs"


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


# --------------------------------------------------------------------------------------------
# Input checks shared with the Airflow operator.


def check_json_object(value: Any, *, name: str = "input") -> dict[str, Any]:
    """Return ``value`` as a dict that JSON encodes exactly, or raise :class:`InvalidInputError`.

    ``None`` is an empty object. The error names the offending key path, e.g.
    ``input['vendor_filter']['since'] is a datetime``, so it can be fixed before anything is sent.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{name} must be a JSON object (a dict), got {type(value).__name__}", path=name)
    _check_json_value(value, name)
    return dict(value)


def _check_json_value(value: Any, path: str) -> None:
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"{path} is {value!r}, which JSON cannot encode", path=path)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(
                    f"{path} has the key {key!r} ({type(key).__name__}); JSON object keys must be strings",
                    path=path,
                )
            _check_json_value(item, f"{path}[{key!r}]")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json_value(item, f"{path}[{index}]")
        return
    hint = " (convert it first, e.g. with .isoformat())" if hasattr(value, "isoformat") else ""
    raise InvalidInputError(f"{path} is a {type(value).__name__}, which is not JSON-serialisable{hint}", path=path)


def encode_path_segment(value: str, *, what: str) -> str:
    """Percent-encode ``value`` as exactly one URL path segment.

    Everything but unreserved characters is encoded, so ``/``, ``?``, ``#``, ``%``, spaces and
    unicode all reach the server as part of the name. ``.`` and ``..`` are encoded too, since a URL
    library would otherwise collapse them as relative path steps.
    """
    if not isinstance(value, str) or not value:
        raise CoverbaseConfigError(f"{what} must be a non-empty string, got {value!r}")
    if value != value.strip():
        raise CoverbaseConfigError(f"{what} {value!r} has leading or trailing spaces")
    encoded = quote(value, safe="")
    if set(value) == {"."}:
        encoded = "%2E" * len(value)
    return encoded


def check_idempotency_key(key: str) -> str:
    """Validate a caller's idempotency key: printable ASCII (it is an HTTP header), 1-255 chars."""
    if not isinstance(key, str) or not key:
        raise CoverbaseConfigError(f"idempotency_key must be a non-empty string, got {key!r}")
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise CoverbaseConfigError(
            f"idempotency_key is {len(key)} characters long; use at most {MAX_IDEMPOTENCY_KEY_LENGTH}"
            " (hash a long identifier)"
        )
    if not key.isascii() or not key.isprintable() or key != key.strip():
        raise CoverbaseConfigError(f"idempotency_key {key!r} must be printable ASCII without leading/trailing spaces")
    return key


def _unix_seconds(value: datetime | int | None, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise CoverbaseConfigError(f"{what} must be timezone-aware (e.g. tzinfo=UTC)")
        return int(value.timestamp())
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise CoverbaseConfigError(f"{what} must be an aware datetime or Unix seconds, got {value!r}")


class RunListFilters(TypedDict, total=False):
    """Filters and paging of ``GET /v1/workflows/runs``; every client and hook method takes these."""

    workflow_name: str
    #: One status or several (``?status=started&status=failed``), spelled as the API expects.
    status: str | Iterable[str]
    #: Inclusive bounds on the run's creation: aware datetimes or Unix seconds.
    created_at_after: datetime | int
    created_at_before: datetime | int
    #: 1 to 500 (the API's default is 100).
    limit: int
    offset: int


# --------------------------------------------------------------------------------------------
# One API call: the request, how to read the answer, and what to say when it fails.


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """A request ready to send (the same object on every retry) and how to read its answer."""

    request: httpx.Request
    parse: Callable[[httpx.Response], T]
    #: What the caller is doing, for messages: "start workflow 'x'".
    action: str
    workflow_name: str | None = None
    workflow_run_id: str | None = None
    idempotency_key: str | None = None
    #: Run-starting calls: a 409 carrying a run is a replay, and the run's workflow is checked.
    starts_run: bool = False
    workflow_definition_id: str | None = None
    #: The caller chose (or derived) the key, so an earlier call may have used it already.
    caller_key: bool = False
    #: The GET that reads a run a 409 replay named without its status (see ``ClientCore.finish``).
    reads_replay: bool = False
    #: ...and that 409 answered the first attempt, so the run is an earlier call's.
    replay_of_earlier_call: bool = False

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def path(self) -> str:
        return self.request.url.raw_path.decode("ascii").split("?", 1)[0]


@dataclass(frozen=True, slots=True)
class _ErrorBody:
    code: str | None
    message: str | None
    request_id: str | None
    body: Any
    retry_after: float | None


class ClientCore:
    """Builds requests and reads responses for both clients. Holds no connection and does no I/O."""

    def __init__(self, config: ClientConfig, *, rng: Callable[[], float] | None = None) -> None:
        self.config = config
        self._rng = rng or random.random
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

    def __repr__(self) -> str:
        return f"ClientCore(base_url={self.config.base_url!r})"

    # ---- request building ----------------------------------------------------------------

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
            self._parse_model(WorkflowRun),
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
            self._parse_model(WorkflowRun, workflow_run_id),
            action=f"read workflow run '{workflow_run_id}'",
            workflow_run_id=workflow_run_id,
        )

    def _read_replayed_run(self, call: Call[Any], workflow_run_id: str, *, earlier: bool) -> Call[WorkflowRun]:
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
            seconds = _unix_seconds(value, name)
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
            self._parse_model(WorkflowRunList),
            action="list workflow runs",
            workflow_name=workflow_name,
        )

    def check_auth(self) -> Call[str]:
        """``GET /v1/utils/authtest``: 200 for any valid key."""

        def parse(response: httpx.Response) -> str:
            body = _json_or_none(response)
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
            body = _json_or_none(response)
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

    def add_workflow_name_hint(self, error: NotFoundError, workflow_name: str, known: Iterable[str] | None) -> None:
        """Extend a ``workflow_not_found`` error with where names are and, if ``known`` has one, the closest.

        ``known`` is what :meth:`workflow_name_lookups` found (``None``: nothing could be read).
        """
        names = sorted(set(known or ()))
        close = difflib.get_close_matches(workflow_name, names, n=1, cutoff=0.6)
        if not close:  # letter case and spacing: "Quarterly Privacy Sweep" for "quarterly-privacy-sweep"
            folded = {_fold_name(name): name for name in names}
            close = [folded[key] for key in difflib.get_close_matches(_fold_name(workflow_name), list(folded), n=1)]
        hint = f"Did you mean '{close[0]}'? " if close else ""
        if is_loopback_host(httpx.URL(self.config.base_url).host) and names:
            shown = ", ".join(f"'{name}'" for name in names[:12]) + (", ..." if len(names) > 12 else "")
            hint += (
                f"This emulator's workflows: {shown} (GET {self.config.base_url}/_emulator lists them; add one "
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

    # ---- response handling ---------------------------------------------------------------

    def finish(self, call: Call[T], outcome: httpx.Response | httpx.TransportError, attempt: int) -> T | Call[T]:
        """Turn one attempt's outcome into the call's result, or raise the error it means.

        Both clients call this after every attempt; the raised error carries ``attempts`` and
        ``retryable``, which the retry policy reads. A 409 replay whose run has no ``status`` returns
        another :class:`Call` instead: the GET that reads that run, which the client sends next.
        """
        try:
            if isinstance(outcome, httpx.TransportError):
                raise self._transport_error(call, outcome)
            if log.isEnabledFor(logging.DEBUG):  # call.path decodes the URL: skip it when nobody reads it
                log.debug("%s %s -> %s", call.method, call.path, outcome.status_code)
            if outcome.is_success:
                result = call.parse(outcome)
                if isinstance(result, WorkflowRun) and (call.starts_run or call.reads_replay):
                    replay_possible = call.reads_replay or call.caller_key or attempt > 1
                    self._check_same_workflow(call, result, outcome, replay_possible=replay_possible)
                    if call.replay_of_earlier_call:
                        result._replayed = True
                return result
            if call.starts_run and outcome.status_code == 409:
                replayed = _run_in_conflict(_json_or_none(outcome))
                if replayed is not None:
                    run_id = str(replayed["workflow_run_id"])
                    key = call.idempotency_key
                    log.info("Coverbase replayed run %s, already started with idempotency key %s", run_id, key)
                    if not isinstance(replayed.get("status"), str):
                        return cast(Call[T], self._read_replayed_run(call, run_id, earlier=attempt == 1))
                    run = call.parse(_as_success(outcome, replayed))
                    if isinstance(run, WorkflowRun):
                        self._check_same_workflow(call, run, outcome, replay_possible=True)
                        run._replayed = attempt == 1
                    return run
            raise self._status_error(call, outcome)
        except CoverbaseError as error:
            error.attempts = attempt
            raise

    def _transport_error(self, call: Call[Any], error: httpx.TransportError) -> CoverbaseConnectionError:
        kind = type(error).__name__
        if isinstance(error, httpx.TimeoutException):
            return CoverbaseTimeoutError(
                f"Coverbase did not answer in time to {call.action} ({kind} on {call.method} {call.path}, "
                f"timeout {self.config.timeout:g} s, connect {self.config.connect_timeout:g} s)",
                method=call.method,
                path=call.path,
            )
        if self.config.base_url.startswith("https://") and _plain_http_answer(error):
            plain = "http://" + self.config.base_url.removeprefix("https://")
            # Not the TLS library's own words: they differ by transport (httpx, aiohttp) and add nothing.
            wrong_scheme = CoverbaseConnectionError(
                f"could not reach Coverbase at {self.config.base_url} to {call.action}: the server answered "
                f"in plain HTTP, not TLS ({kind} on {call.method} {call.path}). The base URL says "
                f"https:// but the server at that address speaks http: if it is the emulator or another "
                f"local test server, use {plain}; otherwise check the host and port. Not retried",
                method=call.method,
                path=call.path,
            )
            wrong_scheme.retryable = False  # the same answer every time: a setting to fix, not a blip
            return wrong_scheme
        return CoverbaseConnectionError(
            f"could not reach Coverbase at {self.config.base_url} to {call.action} "
            f"({kind} on {call.method} {call.path}: {error})",
            method=call.method,
            path=call.path,
        )

    def _status_error(self, call: Call[Any], response: httpx.Response) -> CoverbaseAPIError:
        info = _read_error_body(response)
        status = response.status_code
        cls = _CODE_ERRORS.get(info.code or "") or _STATUS_ERRORS.get(status)
        if cls is None:
            cls = ServerError if status >= 500 else CoverbaseAPIError
        summary = self._summary(call, status, info)
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

    def _summary(self, call: Call[Any], status: int, info: _ErrorBody) -> str:
        said = f": {info.message.rstrip('.')}" if info.message else ""
        code = info.code or ""
        name = call.workflow_name
        if is_missing_list_endpoint(call.method, call.path, status, code):
            return (
                f"Coverbase has no endpoint to {call.action}{said}: GET {LIST_RUNS_PATH} exists only in the "
                "current API (V2 and later), and this server speaks the legacy contract, which has none. "
                f"If it should have one, check the base URL ({self.config.base_url}; called {call.request.url})"
            )
        if status == 401:
            if self.config.source:
                return (
                    f"Coverbase rejected the API key{said}. Check the API key (password field) of "
                    f"{self.config.source}: it is invalid, expired or revoked, or is a key of another "
                    f"environment than {self.config.base_url}"
                )
            return (
                f"Coverbase rejected the API key{said}. Check the connection's API key: it is invalid, "
                "expired or revoked"
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
                f"Coverbase error{said}.{hint} Check the base URL ({self.config.base_url}): it may be wrong; "
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

    def _parse_model(self, model: type[Any], workflow_run_id: str | None = None) -> Callable[[httpx.Response], Any]:
        return _ModelParser(model, workflow_run_id)

    def _check_same_workflow(
        self, call: Call[Any], run: WorkflowRun, response: httpx.Response, *, replay_possible: bool
    ) -> None:
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

    # ---- retries -------------------------------------------------------------------------

    def after_failure(self, error: CoverbaseError, attempt: int) -> tuple[float | None, float]:
        """What to do after attempt number ``attempt`` (1-based) of a call failed with ``error``.

        Returns ``(retry_in, pause_all)``: the seconds to wait before sending the call again, or
        ``None`` to raise ``error`` now; and the seconds every user of the connection should hold
        off (a 429's ``Retry-After``, else its backoff; 0 for any other error), so one rate-limited
        answer slows all of a process's callers instead of each finding out for itself.
        """
        policy = self.config.retry
        pause = 0.0
        if isinstance(error, CoverbaseAPIError) and error.status_code == 429:
            pause = error.retry_after if error.retry_after is not None else policy.backoff(attempt, self._rng())
        if attempt >= policy.max_attempts or not policy.should_retry(error):
            return None, pause
        delay = policy.delay(attempt, error, self._rng())
        log.warning(
            "Retrying in %.1f s (attempt %d of %d failed): %s", delay, attempt, policy.max_attempts, error.message
        )
        return delay, pause


class _ModelParser:
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


#: The body of every GET: one shared, empty, immutable stream.
_NO_BODY = httpx.ByteStream(b"")


def _shared_headers(pairs: list[tuple[str, str]]) -> httpx.Headers:
    """Headers that many requests share, made once: nothing in either send path changes a request's
    headers (the transports read them), so sharing one object is safe."""
    return httpx.Headers(pairs)


def new_key() -> str:
    """A fresh idempotency key for one logical call (reused by every retry of that call)."""
    return f"cbaf-{uuid.uuid4()}"


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


def _has_run_id(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("workflow_run_id"), str) and bool(value["workflow_run_id"])


def _run_in_conflict(body: Any) -> dict[str, Any] | None:
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


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _read_error_body(response: httpx.Response) -> _ErrorBody:
    """Read an error body of any API version: ``detail`` as an object, a list (422) or a string."""
    body = _json_or_none(response)
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
    return _ErrorBody(
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


def _as_success(conflict: httpx.Response, run_fields: dict[str, Any]) -> httpx.Response:
    """A synthetic 200 response carrying a replayed run, so one parser reads both shapes."""
    return httpx.Response(200, json=run_fields, request=conflict.request)
