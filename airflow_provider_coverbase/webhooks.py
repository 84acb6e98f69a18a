"""Receive Coverbase webhook deliveries in Python: verify the signature, parse the event. No Airflow imports.

Usable on its own by any Python receiver of Coverbase webhooks (Flask, FastAPI, a Lambda)::

    from airflow_provider_coverbase.webhooks import WebhookError, receive

    try:
        event = receive(raw_body, request.headers, secret="whsec_...")
    except WebhookError as exc:
        return Response(status=exc.http_status)  # 401, 400 or 413; never echo the secret or signature
    if event.kind == "completed":
        ...  # dedupe on event.event_id: deliveries are at least once and unordered

What Coverbase sends (API reference §7):

- ``Coverbase-Signature``: lowercase hex HMAC-SHA256 of the **raw** body, keyed by the secret's UTF-8
  bytes (a ``whsec_`` prefix is part of the key). Checked here with a constant-time comparison,
  before anything parses the body.
- ``Coverbase-Timestamp`` (V3 only): Unix seconds, outside the HMAC but equal to the signed body's
  ``occurred_at``. When present it must be within ``tolerance`` of now (default 5 minutes, both
  directions) and must match ``occurred_at``, so an old signed body cannot be replayed with a fresh
  header. V3 re-stamps both on every retry, so genuine retries pass.
- **Freshness never depends on the header alone**: the header is not signed, so a replay could simply
  leave it out. Without it, the signed ``occurred_at`` must be within the same tolerance, and a body
  with no ``occurred_at`` at all is refused. ``WorkflowRun.*`` events exist only in the current (V3)
  API, which always sends the header, so one of those without it is refused outright. A delivery is
  therefore acceptable only within ``tolerance`` of its signed time, which bounds how long a
  receiver must remember event ids (:data:`MAX_TIMESTAMP_TOLERANCE` caps the tolerance).
- **What can be stored**: ids (``event_id``, ``workflow_run_id``) are 1-250 characters of
  ``A-Z a-z 0-9 _ . : ~ -``, so they are safe in a URL path, a log line and a database column; the
  JSON has no ``NaN``/``Infinity``, no number beyond float range, no text that is not valid Unicode
  (lone surrogates) or holds NUL, and no nesting deeper than the parser allows. A signed body that
  breaks one of these rules can never be stored, so it is a 400 (which Coverbase does not retry).
- Two envelopes: the legacy one (five keys, a top-level ``workflow_run_id``, dot-notation
  ``workflow.checkpoint|completed|failed``, rich ``data`` with ``workflow_name``, ``checkpoint``,
  ``status``, ``output``) and the V1+ one (exactly four keys, PascalCase ``WorkflowRun.Completed|Failed``,
  ``workflow_run_id`` only inside ``data``). Both normalise to :class:`CoverbaseWebhookEvent`.
  Every other event type, including ``webhook.test``, parses with ``kind="other"``; it never fails.

What an Airflow asset event's ``extra`` says about a workflow event, written by the webhook receiver
and the pull watcher alike and read back from either, is :mod:`airflow_provider_coverbase.asset_events`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from airflow_provider_coverbase.defaults import (
    DEFAULT_WEBHOOK_TIMESTAMP_TOLERANCE,
    MAX_WEBHOOK_TIMESTAMP_TOLERANCE,
    MIN_WEBHOOK_SECRET_LENGTH,
)
from airflow_provider_coverbase.exceptions import CoverbaseError

__all__ = [
    "DEFAULT_TIMESTAMP_TOLERANCE",
    "MAX_BODY_BYTES",
    "MAX_ID_LENGTH",
    "MAX_TEXT_LENGTH",
    "MAX_TIMESTAMP_TOLERANCE",
    "MIN_SECRET_LENGTH",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "CoverbaseWebhookEvent",
    "EventKind",
    "WebhookBodyTooLargeError",
    "WebhookError",
    "WebhookMalformedError",
    "WebhookSignatureError",
    "WebhookStaleError",
    "check_body_size",
    "check_freshness",
    "check_id",
    "event_kind",
    "parse_event",
    "receive",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER = "Coverbase-Signature"
TIMESTAMP_HEADER = "Coverbase-Timestamp"
#: Largest body accepted, in bytes (the limit Coverbase itself applies to inbound integration webhooks).
MAX_BODY_BYTES = 256 * 1024
#: Seconds a ``Coverbase-Timestamp`` may differ from now, either way ("five minutes is typical").
DEFAULT_TIMESTAMP_TOLERANCE = DEFAULT_WEBHOOK_TIMESTAMP_TOLERANCE
#: The largest tolerance accepted (7 days): dedupe records must outlive twice the tolerance.
MAX_TIMESTAMP_TOLERANCE = MAX_WEBHOOK_TIMESTAMP_TOLERANCE
#: The shortest secret accepted (Coverbase refuses to register a shorter one).
MIN_SECRET_LENGTH = MIN_WEBHOOK_SECRET_LENGTH
#: Longest ``event_id``/``workflow_run_id`` accepted (the receiver's dedupe columns hold 250).
MAX_ID_LENGTH = 250
#: Longest ``data.status`` accepted: a status is one word.
MAX_TEXT_LENGTH = 250
_ID = re.compile(r"[A-Za-z0-9_.:~-]+", re.ASCII)
#: Event types only the current (V3) API sends, and always with ``Coverbase-Timestamp``.
_TIMESTAMPED_TYPES = frozenset({"WorkflowRun.Completed", "WorkflowRun.Failed"})

EventKind = Literal["checkpoint", "completed", "failed", "other"]

#: Event types that concern workflow runs, in both naming schemes. Matched exactly (the V1+ catalog
#: is case-sensitive). V1+ has no checkpoint event.
_KINDS: dict[str, EventKind] = {
    "workflow.checkpoint": "checkpoint",
    "workflow.completed": "completed",
    "workflow.failed": "failed",
    "WorkflowRun.Completed": "completed",
    "WorkflowRun.Failed": "failed",
}


# ---------------------------------------------------------------------------------------- errors


class WebhookError(CoverbaseError):
    """A delivery that must be refused. ``http_status`` is the answer a receiver should give.

    Messages say what is wrong, never the secret, the signature or the body.
    """

    http_status = 400


class WebhookSignatureError(WebhookError):
    """401: the signature header is missing or does not match the body and the secret."""

    http_status = 401


class WebhookStaleError(WebhookSignatureError):
    """401: ``Coverbase-Timestamp`` is outside the tolerance, unreadable, or differs from ``occurred_at``."""


class WebhookMalformedError(WebhookError):
    """400: signed correctly, but not a Coverbase envelope (not JSON, missing or mistyped keys)."""


class WebhookBodyTooLargeError(WebhookError):
    """413: the body is over the size limit; nothing was verified or parsed."""

    http_status = 413


# --------------------------------------------------------------------------------- verification


def sign(secret: str, body: bytes) -> str:
    """The ``Coverbase-Signature`` Coverbase sends for ``body``: lowercase hex HMAC-SHA256."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def check_body_size(size: int, max_bytes: int = MAX_BODY_BYTES) -> None:
    """Raise :class:`WebhookBodyTooLargeError` when ``size`` bytes is over ``max_bytes``."""
    if size > max_bytes:
        raise WebhookBodyTooLargeError(f"webhook body of {size} bytes is over the {max_bytes}-byte limit")


def verify_signature(
    body: bytes,
    signature: str | None,
    secret: str,
    *,
    timestamp: str | None = None,
    tolerance: float = DEFAULT_TIMESTAMP_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check a delivery's signature (and its timestamp, when one was sent); raise if it is not genuine.

    :param body: The raw request body, exactly as received (not re-encoded JSON).
    :param signature: The ``Coverbase-Signature`` header value, or ``None`` when it is missing.
    :param secret: The signing secret registered with the webhook.
    :param timestamp: The ``Coverbase-Timestamp`` header value, or ``None`` (legacy and V2 send none).
    :param tolerance: Seconds the timestamp may be off, into the past or the future.
    :param now: Current Unix time (tests inject it); defaults to ``time.time()``.
    :raises WebhookSignatureError: missing header, empty secret or one shorter than
        :data:`MIN_SECRET_LENGTH`, or no match.
    :raises WebhookStaleError: a timestamp outside the tolerance, or not a number.
    :raises ValueError: ``tolerance`` is not in (0, :data:`MAX_TIMESTAMP_TOLERANCE`] (a setup error).
    """
    if not secret:
        raise WebhookSignatureError("no webhook secret is configured: every delivery is refused")
    if len(secret) < MIN_SECRET_LENGTH:
        raise WebhookSignatureError(
            f"the webhook secret is shorter than {MIN_SECRET_LENGTH} characters: every delivery is refused"
        )
    _check_tolerance(tolerance)
    if not signature:
        raise WebhookSignatureError(f"the {SIGNATURE_HEADER} header is missing")
    given = signature.strip().lower().removeprefix("sha256=").encode("utf-8", "replace")
    expected = sign(secret, body).encode("ascii")
    if not hmac.compare_digest(expected, given):
        raise WebhookSignatureError(f"the {SIGNATURE_HEADER} header does not match the body")
    if timestamp is not None:
        _check_timestamp(timestamp, tolerance, time.time() if now is None else now)


def _check_tolerance(tolerance: float) -> None:
    if not (0 < tolerance <= MAX_TIMESTAMP_TOLERANCE):
        raise ValueError(f"the timestamp tolerance must be > 0 and <= {MAX_TIMESTAMP_TOLERANCE:.0f} s, got {tolerance}")


def _check_timestamp(timestamp: str, tolerance: float, now: float) -> float:
    try:
        sent = float(timestamp.strip())
    except ValueError:
        raise WebhookStaleError(f"the {TIMESTAMP_HEADER} header is not Unix seconds") from None
    if not math.isfinite(sent):
        raise WebhookStaleError(f"the {TIMESTAMP_HEADER} header is not Unix seconds")
    _check_skew(sent, tolerance, now)
    return sent


def _check_skew(sent: float, tolerance: float, now: float) -> None:
    skew = now - sent
    if skew > tolerance:
        raise WebhookStaleError(f"stale delivery: sent {skew:.0f} s ago, over the {tolerance:.0f} s tolerance")
    if -skew > tolerance:
        raise WebhookStaleError(
            f"delivery timestamped {-skew:.0f} s in the future, over the {tolerance:.0f} s tolerance (check the clocks)"
        )


def check_freshness(
    event: CoverbaseWebhookEvent,
    timestamp: str | None,
    *,
    tolerance: float = DEFAULT_TIMESTAMP_TOLERANCE,
    now: float | None = None,
) -> None:
    """Refuse a delivery whose signed time is not within ``tolerance`` of now.

    ``timestamp`` is the ``Coverbase-Timestamp`` header (already checked against now by
    :func:`verify_signature`); it must equal the signed ``occurred_at``. Without it, the signed
    ``occurred_at`` itself is checked, since leaving the unsigned header out must not switch the
    check off. A ``WorkflowRun.*`` event (sent only by the current API, always with the header)
    without the header is refused, and so is a body with no ``occurred_at`` and no header.

    :raises WebhookStaleError: (401) stale, future, mismatched or timeless.
    """
    _check_tolerance(tolerance)
    sent = event.occurred_at
    if timestamp is not None:
        stamped = _check_timestamp(timestamp, tolerance, time.time() if now is None else now)
        if sent is not None and abs(stamped - sent.timestamp()) >= 1:
            raise WebhookStaleError(f"the {TIMESTAMP_HEADER} header differs from the signed 'occurred_at'")
        return
    if event.event_type in _TIMESTAMPED_TYPES:
        raise WebhookStaleError(
            f"a '{event.event_type}' delivery comes from the current API, which always sends {TIMESTAMP_HEADER}; "
            "this one has none"
        )
    if sent is None:
        raise WebhookStaleError(f"the delivery has neither a {TIMESTAMP_HEADER} header nor a signed 'occurred_at'")
    _check_skew(sent.timestamp(), tolerance, time.time() if now is None else now)


def check_id(value: str, what: str) -> str:
    """Return ``value`` if it is a usable Coverbase id, else raise :class:`WebhookMalformedError` (400).

    1-:data:`MAX_ID_LENGTH` characters of ``A-Z a-z 0-9 _ . : ~ -``: safe as a URL path segment,
    in a log line (no CR/LF) and in the receiver's database columns, on every database.
    """
    if len(value) > MAX_ID_LENGTH:
        raise WebhookMalformedError(f"'{what}' is {len(value)} characters long; ids have at most {MAX_ID_LENGTH}")
    if not _ID.fullmatch(value):
        raise WebhookMalformedError(f"'{what}' may hold only letters, digits and '_.:~-'")
    return value


# -------------------------------------------------------------------------------------- parsing


class CoverbaseWebhookEvent(BaseModel):
    """One delivery, normalised across both envelopes and both naming schemes.

    ``kind`` is ``checkpoint``, ``completed`` or ``failed`` for workflow-run events and ``other`` for
    anything else. ``status`` is the run status the delivery states, or the one its type implies
    (``WorkflowRun.Completed`` carries none). ``data`` is the envelope's ``data`` object as sent.
    """

    model_config = ConfigDict(frozen=True)

    event_id: str
    event_type: str
    kind: EventKind
    workflow_run_id: str | None = None
    workflow_name: str | None = None
    checkpoint: str | None = None
    status: str | None = None
    output: Any = None
    #: Legacy ``workflow.failed`` only: the failure message.
    error: str | None = None
    occurred_at: datetime | None = None
    data: dict[str, Any] = {}

    @property
    def is_workflow_event(self) -> bool:
        """True for checkpoint, completed and failed events: those that name a workflow run."""
        return self.kind != "other"


def _opt_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise WebhookMalformedError(f"'{where}{key}' must be a non-empty string")
    return value


def _non_finite(name: str) -> Any:
    raise WebhookMalformedError(f"the webhook body holds {name}, which JSON does not allow and no database stores")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise WebhookMalformedError(f"the webhook body holds the number {text[:40]}, beyond the range of a float")
    return value


def _loads(body: bytes | str) -> Any:
    """``json.loads`` that refuses what no database can store: non-finite numbers, too-deep nesting."""
    try:
        return json.loads(body, parse_constant=_non_finite, parse_float=_finite_float)
    except RecursionError:
        raise WebhookMalformedError("the webhook body's JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise WebhookMalformedError("the webhook body is not JSON") from None


def _check_text(value: Any) -> None:
    """Refuse text no database stores as sent: NUL characters and lone surrogates (invalid Unicode)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise WebhookMalformedError("the webhook body holds a NUL character (\\u0000)")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise WebhookMalformedError("the webhook body holds text that is not valid Unicode") from None


def parse_event(body: bytes | str | Mapping[str, Any]) -> CoverbaseWebhookEvent:
    """Parse an envelope of either dialect. Call it only on a body whose signature was verified.

    :raises WebhookMalformedError: not a JSON object, no ``event_id``/``event_type``, mistyped fields,
        a workflow event without a ``workflow_run_id`` (or a checkpoint event without its name), or
        content no database can store (see the module docstring): every one of them is final.
    """
    envelope: Any = dict(body) if isinstance(body, Mapping) else _loads(body)
    if not isinstance(envelope, dict):
        raise WebhookMalformedError("the webhook body is not a JSON object")
    _check_text(envelope)
    event_id = _opt_str(envelope, "event_id", "")
    event_type = _opt_str(envelope, "event_type", "")
    if event_id is None or event_type is None:
        raise WebhookMalformedError("the webhook body has no 'event_id' or no 'event_type'")
    check_id(event_id, "event_id")
    data = envelope.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise WebhookMalformedError("'data' must be a JSON object")
    occurred_at = envelope.get("occurred_at")
    when: datetime | None = None
    if occurred_at is not None:
        if isinstance(occurred_at, bool) or not isinstance(occurred_at, int | float):
            raise WebhookMalformedError("'occurred_at' must be Unix seconds")
        try:
            when = datetime.fromtimestamp(occurred_at, UTC)
        except (OverflowError, OSError, ValueError):
            raise WebhookMalformedError("'occurred_at' is out of range") from None
    kind = event_kind(event_type)
    if kind == "other":
        return CoverbaseWebhookEvent(event_id=event_id, event_type=event_type, kind=kind, occurred_at=when, data=data)
    # Legacy: top-level workflow_run_id; V1+: only inside data. Either may be the only one.
    run_id = _opt_str(envelope, "workflow_run_id", "") or _opt_str(data, "workflow_run_id", "data.")
    if run_id is None:
        raise WebhookMalformedError(f"a '{event_type}' event must carry a 'workflow_run_id'")
    check_id(run_id, "workflow_run_id")
    checkpoint = _opt_str(data, "checkpoint", "data.")
    if kind == "checkpoint" and checkpoint is None:
        raise WebhookMalformedError("a 'workflow.checkpoint' event must carry 'data.checkpoint'")
    status = _opt_str(data, "status", "data.")
    if status is not None and len(status) > MAX_TEXT_LENGTH:
        raise WebhookMalformedError(f"'data.status' is {len(status)} characters long; at most {MAX_TEXT_LENGTH}")
    if status is None and kind in ("completed", "failed"):
        status = kind
    error = data.get("error")
    return CoverbaseWebhookEvent(
        event_id=event_id,
        event_type=event_type,
        kind=kind,
        workflow_run_id=run_id,
        workflow_name=_opt_str(data, "workflow_name", "data."),
        checkpoint=checkpoint if kind == "checkpoint" else None,
        status=status,
        output=data.get("output"),
        error=error if isinstance(error, str) else None,
        occurred_at=when,
        data=data,
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, item in headers.items():
        if key.lower() == lowered:
            return item
    return None


def event_kind(event_type: str) -> EventKind:
    """What an event type means, in both naming schemes (``workflow.completed``, ``WorkflowRun.Completed``)."""
    return _KINDS.get(event_type, "other")


def receive(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance: float = DEFAULT_TIMESTAMP_TOLERANCE,
    max_bytes: int = MAX_BODY_BYTES,
    now: float | None = None,
) -> CoverbaseWebhookEvent:
    """Size check, signature and timestamp check, parse, freshness: everything a receiver does before acting.

    ``headers`` is any mapping; names are matched case-insensitively. The delivery's signed time must
    be within ``tolerance`` of now (see :func:`check_freshness`), whether or not the header was sent.

    :raises WebhookError: one of its subclasses; ``exc.http_status`` is the answer to give.
    """
    check_body_size(len(body), max_bytes)
    timestamp = _header(headers, TIMESTAMP_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    verify_signature(body, signature, secret, timestamp=timestamp, tolerance=tolerance, now=now)
    event = parse_event(body)
    check_freshness(event, timestamp, tolerance=tolerance, now=now)
    return event
