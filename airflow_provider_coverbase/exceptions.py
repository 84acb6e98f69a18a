"""Every error this provider raises, in one tree. No Airflow imports here.

```
CoverbaseError                          base: catch-all for callers
├── CoverbaseConfigError                bad settings or arguments, raised before any request
│   └── InvalidInputError               workflow input that cannot be sent (not JSON, not an object)
├── CoverbaseConnectionError            no HTTP response at all (request never answered)
│   └── CoverbaseTimeoutError           connect/read/write/pool timeout
├── CoverbaseAPIError                   the API answered with an error status
│   ├── BadRequestError          400    e.g. legacy ``invalid_input``
│   ├── AuthenticationError      401    invalid, expired or revoked API key
│   ├── PermissionDeniedError    403    missing credential (V3), scope, IP allowlist
│   ├── NotFoundError            404    unknown workflow, or a run of another org
│   ├── ConflictError            409
│   │   ├── WorkflowDisabledError       ``workflow_disabled`` (current API)
│   │   ├── IdempotencyConflictError    legacy ``idempotency_conflict`` without the original run
│   │   └── IdempotencyKeyReusedError   the key already started a run of another workflow
│   ├── UnprocessableEntityError 422    request validation (``detail`` is a list)
│   ├── RateLimitError           429    raised only once retries are spent
│   └── ServerError              5xx    raised only once retries are spent
│       └── WorkflowDispatchFailedError 502 ``workflow_dispatch_failed``: the run exists; not retried
├── CoverbaseResponseValidationError    2xx, but the body is not what the API documents
└── WorkflowRunError                    the *workflow run* ended badly (not an HTTP problem)
    ├── WorkflowRunFailed
    ├── WorkflowRunCancelled
    └── WorkflowRunTimedOut             our own deadline passed while the run was still going
```

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
    """Workflow input that cannot be sent: not a JSON object, or a value JSON cannot encode."""

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
    """400: the request is wrong; the legacy API answers ``invalid_input`` here."""


class AuthenticationError(CoverbaseAPIError):
    """401: the API key is invalid, expired or revoked."""


class PermissionDeniedError(CoverbaseAPIError):
    """403: no credential (current API), missing scope, or the IP allowlist refused the call."""


class NotFoundError(CoverbaseAPIError):
    """404: unknown workflow or run (a run of another org is reported as not found too)."""


class ConflictError(CoverbaseAPIError):
    """409."""


class WorkflowDisabledError(ConflictError):
    """409 ``workflow_disabled``: the workflow exists but is switched off in Coverbase."""


class IdempotencyConflictError(ConflictError):
    """409 ``idempotency_conflict`` whose body did not carry the original run."""


class IdempotencyKeyReusedError(ConflictError):
    """The idempotency key already started a run of *another* workflow (one key covers every name)."""


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
