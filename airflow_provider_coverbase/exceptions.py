"""Every error this provider raises, in one tree. No Airflow imports here.

::

    CoverbaseError                          base: catch-all for callers
    ├── CoverbaseConfigError                bad settings or arguments, raised before any request
    │   └── InvalidInputError               the workflow input is wrong: catch this one for both cases
    │       └── (InputRejectedError)        ... including the server's ``400 invalid_input`` (see below)
    ├── CoverbaseConnectionError            no HTTP response at all (request never answered)
    │   └── CoverbaseTimeoutError           connect/read/write/pool timeout
    ├── CoverbaseAPIError                   the API answered with an error status
    │   ├── BadRequestError          400
    │   │   └── InputRejectedError          legacy ``invalid_input``; also an ``InvalidInputError``
    │   ├── AuthenticationError      401    invalid, expired or revoked API key
    │   ├── PermissionDeniedError    403    missing credential (V3), scope, IP allowlist
    │   ├── NotFoundError            404    unknown workflow, a run of another org, or a wrong base URL
    │   ├── ConflictError            409
    │   │   ├── WorkflowDisabledError       ``workflow_disabled`` (current API)
    │   │   ├── IdempotencyConflictError    ``idempotency_conflict`` whose body carries no run
    │   │   └── IdempotencyKeyReusedError   a replay returned a run of another workflow
    │   ├── UnprocessableEntityError 422    request validation (``detail`` is a list)
    │   ├── RateLimitError           429    raised only once retries are spent
    │   └── ServerError              5xx    raised only once retries are spent
    │       └── WorkflowDispatchFailedError 502 ``workflow_dispatch_failed``: the run exists; not retried
    ├── CoverbaseResponseValidationError    2xx, but the body is not what the API documents
    └── WorkflowRunError                    the *workflow run* ended badly (not an HTTP problem)
        ├── WorkflowRunFailed
        ├── WorkflowRunCancelled
        └── WorkflowRunTimedOut             our own deadline passed while the run was still going

What the client accepts instead of raising:

- **A 409 on a run-starting call whose body carries a run** is the replayed original run, whatever
  the envelope: ``workflow_run_id`` at the top level (the original body as it was, or a flat
  ``{"code", "message", "workflow_run_id"}``), or under ``workflow_run``, ``original_response``,
  ``run``, ``data`` or ``detail`` (also inside ``detail``/``error``). When that run has no
  ``status``, the client reads it with one GET. A 409 ``idempotency_conflict`` without a run raises
  :class:`IdempotencyConflictError`, which is never retried: the run exists.
- **Error envelopes**: ``detail`` as an object, a list (422) or a string; a flat ``{"code",
  "message"}``; or ``{"error": {"code", "message"}}``.
- **Retry hints**: the ``Retry-After`` header (seconds or an HTTP date), else ``retry_after`` at the
  top level of the body or under ``detail`` or ``error``, as a number or a numeric string.
- **Reused keys**: :class:`IdempotencyKeyReusedError` is raised only where a replay was possible (a
  key the caller chose or derived, a retry of the call, or a 409 replay) and the run's workflow is
  really another one: names are compared ignoring letter case, Unicode normal form (NFKC) and runs of
  whitespace, since the server's own name resolution may change those; definition ids are opaque
  and compared exactly. With a key the client generated, the first attempt cannot be a replay.
- **A 404 without a Coverbase error code** (for example ``{"detail": "Not Found"}`` from a router or
  a proxy) is a :class:`NotFoundError` whose message says the base URL may be wrong and shows the
  URL that was called.

Messages are built from the status, the API's ``code``/``message``, the request path and what the
caller was doing. They never contain the API key: the key travels only in the ``Authorization``
header, and headers are never put into an error.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "CoverbaseAPIError",
    "CoverbaseConfigError",
    "CoverbaseConnectionError",
    "CoverbaseError",
    "CoverbaseResponseValidationError",
    "CoverbaseTimeoutError",
    "IdempotencyConflictError",
    "IdempotencyKeyReusedError",
    "InputRejectedError",
    "InvalidInputError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "UnprocessableEntityError",
    "WorkflowDisabledError",
    "WorkflowDispatchFailedError",
    "WorkflowRunCancelled",
    "WorkflowRunError",
    "WorkflowRunFailed",
    "WorkflowRunTimedOut",
]


class CoverbaseError(Exception):
    """Base class of every error raised by this package."""

    #: Whether sending the same request again may succeed. The retry loop and the operator read it.
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        #: How many HTTP attempts were made before this error was raised (set by the client).
        self.attempts: int = 1

    def __str__(self) -> str:
        if self.attempts > 1:
            return f"{self.message} (after {self.attempts} attempts)"
        return self.message


class CoverbaseConfigError(CoverbaseError, ValueError):
    """Settings or arguments are wrong; nothing was sent. The message says what to fix."""


class InvalidInputError(CoverbaseConfigError):
    """The workflow input is wrong. Catch this one class for "fix the input".

    Raised before any request when the input is not a JSON object or holds a value JSON cannot
    encode (``path`` names where). The server's ``400 invalid_input`` raises
    :class:`InputRejectedError`, which is both a :class:`BadRequestError` and an ``InvalidInputError``:
    only then was the input sent.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        #: Where in the input the problem is, e.g. ``input['vendors'][2]['since']``.
        self.path = path


class CoverbaseConnectionError(CoverbaseError):
    """The request got no HTTP response: DNS, refused connection, reset, protocol error."""

    retryable = True

    def __init__(self, message: str, *, method: str, path: str) -> None:
        super().__init__(message)
        self.method = method
        self.path = path


class CoverbaseTimeoutError(CoverbaseConnectionError):
    """The request timed out (connect, read, write or pool)."""


class CoverbaseAPIError(CoverbaseError):
    """The API answered with an error status.

    ``code`` and ``api_message`` come from the body's ``detail`` (an object, a list or a string,
    depending on the API version); ``request_id`` from the body or the ``x-coverbase-request-id``
    header (current API only).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        method: str,
        path: str,
        code: str | None = None,
        api_message: str | None = None,
        request_id: str | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.method = method
        self.path = path
        self.code = code
        self.api_message = api_message
        self.request_id = request_id
        self.body = body
        #: Seconds the server asked us to wait (``Retry-After`` header or ``retry_after`` field).
        self.retry_after = retry_after

    def __str__(self) -> str:
        text = super().__str__()
        if self.request_id:
            text = f"{text} [request_id={self.request_id}]"
        return text


class BadRequestError(CoverbaseAPIError):
    """400: the request is wrong; the legacy API's ``invalid_input`` is :class:`InputRejectedError`."""


class InputRejectedError(BadRequestError, InvalidInputError):  # type: ignore[misc]  # ``path``: see below
    """400 ``invalid_input`` (legacy API): the server checked the input against the workflow's schema.

    Both a :class:`BadRequestError` (an API answer, with ``status_code``, ``code``, ``api_message``) and
    an :class:`InvalidInputError`, so ``except InvalidInputError`` catches the client's own check and
    the server's alike. As on every API error, ``path`` is the request path here, not a key path in
    the input: the server's message (``api_message``) says where the input is wrong.
    """


class AuthenticationError(CoverbaseAPIError):
    """401: the API key is invalid, expired or revoked."""


class PermissionDeniedError(CoverbaseAPIError):
    """403: no credential (current API), missing scope, or the IP allowlist refused the call."""


class NotFoundError(CoverbaseAPIError):
    """404: unknown workflow or run (a run of another org is reported as not found too).

    A 404 without a Coverbase error code did not come from Coverbase's routes: its message says the
    base URL may be wrong and shows the URL that was called.
    """


class ConflictError(CoverbaseAPIError):
    """409."""


class WorkflowDisabledError(ConflictError):
    """409 ``workflow_disabled``: the workflow exists but is switched off in Coverbase."""


class IdempotencyConflictError(ConflictError):
    """409 ``idempotency_conflict`` whose body did not carry the original run.

    The run exists (the key started it), so this is never retried as if no run existed; the message
    gives the key and says how to find the run or start a new one.
    """


class IdempotencyKeyReusedError(ConflictError):
    """A replay returned a run of *another* workflow: the key was used before (one key covers every name).

    Raised only where a replay was possible; see the module docstring for how names are compared.
    """


class UnprocessableEntityError(CoverbaseAPIError):
    """422: request validation failed; ``detail`` lists the fields."""


class RateLimitError(CoverbaseAPIError):
    """429 ``rate_limited``; raised only when retries are spent or the wait asked for is too long."""

    retryable = True


class ServerError(CoverbaseAPIError):
    """5xx; raised only when retries are spent."""

    retryable = True


class WorkflowDispatchFailedError(ServerError):
    """502 ``workflow_dispatch_failed``: the run was created but not dispatched (current API, V2).

    Never retried: the run already exists, the API has no endpoint that re-dispatches a run id, and
    it is not documented whether the idempotency key replays an error, so sending the POST again
    could start a second run. ``workflow_run_id`` is parsed from the message when it is there.
    """

    retryable = False

    def __init__(self, message: str, *, workflow_run_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.workflow_run_id = workflow_run_id


class CoverbaseResponseValidationError(CoverbaseError):
    """A 2xx response whose body is not what the API documents."""

    def __init__(self, message: str, *, method: str, path: str, status_code: int) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.status_code = status_code


class WorkflowRunError(CoverbaseError):
    """A workflow run ended badly, or did not end in time. Not an HTTP problem."""

    def __init__(self, message: str, *, workflow_run_id: str, status: str) -> None:
        super().__init__(message)
        self.workflow_run_id = workflow_run_id
        self.status = status


class WorkflowRunFailed(WorkflowRunError):
    """The run ended ``failed``."""


class WorkflowRunCancelled(WorkflowRunError):
    """The run ended ``cancelled`` (``canceled`` in the current API)."""


class WorkflowRunTimedOut(WorkflowRunError):
    """Our deadline passed while the run was still going in Coverbase."""
