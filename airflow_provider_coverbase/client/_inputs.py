"""Checks of what a caller passes in, before any request is built. No I/O, no Airflow imports.

Run input, path segments, idempotency keys and list filters are checked here, so bad input gets an
error that names what to fix before anything is sent. The operator uses :func:`check_json_object` too.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypedDict
from urllib.parse import quote

from airflow_provider_coverbase.exceptions import CoverbaseConfigError, InvalidInputError

__all__ = [
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MAX_LIST_LIMIT",
    "RunListFilters",
    "check_idempotency_key",
    "check_json_object",
    "encode_path_segment",
    "new_key",
    "unix_seconds",
]

#: Largest ``limit`` the list endpoint accepts (it answers 422 above it).
MAX_LIST_LIMIT = 500
#: The API does not document a limit on idempotency keys; stay well inside common header limits.
MAX_IDEMPOTENCY_KEY_LENGTH = 255


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


def unix_seconds(value: datetime | int | None, what: str) -> int | None:
    """A list filter's time bound as the API takes it: Unix seconds from an aware datetime or an int."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise CoverbaseConfigError(f"{what} must be timezone-aware (e.g. tzinfo=UTC)")
        return int(value.timestamp())
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise CoverbaseConfigError(f"{what} must be an aware datetime or Unix seconds, got {value!r}")


def new_key() -> str:
    """A fresh idempotency key for one logical call (reused by every retry of that call)."""
    return f"cbaf-{uuid.uuid4()}"
