"""Client settings and the retry policy: plain values, validated once. No I/O, no Airflow."""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_coverbase.defaults import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_INITIAL_DELAY,
    DEFAULT_RETRY_MAX_DELAY,
    DEFAULT_TIMEOUT,
)
from airflow_provider_coverbase.exceptions import (
    CoverbaseAPIError,
    CoverbaseConfigError,
    CoverbaseConnectionError,
)

__all__ = [
    "ClientConfig",
    "RetryPolicy",
    "is_loopback_host",
    "parse_retry_after",
]

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_retry_after(header: str | None, body: Any = None) -> float | None:
    """Seconds to wait, from a ``Retry-After`` header or a ``retry_after`` body field; ``None`` if neither.

    The legacy API's 429 carries ``retry_after`` without saying where, so every plausible place is
    read, first match wins: the header (seconds, or an HTTP date), then ``retry_after`` at the top
    level of the body, under ``detail``, then under ``error``, each as a number or a numeric string.
    A negative, infinite or unreadable value is skipped.
    """
    if header:
        header = header.strip()
        seconds = _seconds_or_none(header)
        if seconds is not None:
            return seconds
        try:
            when = parsedate_to_datetime(header)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    if isinstance(body, dict):
        for holder in (body, body.get("detail"), body.get("error")):
            if isinstance(holder, dict):
                seconds = _seconds_or_none(holder.get("retry_after"))
                if seconds is not None:
                    return seconds
    return None


def _seconds_or_none(value: Any) -> float | None:
    """A finite number of seconds >= 0 from a number or a numeric string, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how long to wait before sending the same request again.

    Retried: no response at all (connection errors, timeouts) and HTTP 429, 500, 502, 503 and 504,
    except a 502 ``workflow_dispatch_failed`` (the run exists; a new POST could start another).
    Never retried: 400, 401, 403, 404, 409, 422 and any other status, since sending the same
    request again cannot change the answer. Waits grow exponentially from ``initial_delay`` up to
    ``max_delay``, with jitter. A server hint (``Retry-After``/``retry_after``) replaces the backoff
    when it is at most ``max_retry_after`` seconds; a longer hint ends the retries at once, because
    waiting that long is the job of Airflow's own retry or poke interval, not of one HTTP call.
    """

    #: Attempts in all, the first one included (``max_retries + 1``).
    max_attempts: int = DEFAULT_MAX_RETRIES + 1
    initial_delay: float = DEFAULT_RETRY_INITIAL_DELAY
    max_delay: float = DEFAULT_RETRY_MAX_DELAY
    #: Fraction of each wait that is randomised (0 = none, 1 = "full jitter").
    jitter: float = 0.5
    max_retry_after: float = 60.0
    retry_statuses: frozenset[int] = _RETRY_STATUSES

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise CoverbaseConfigError(
                f"max_attempts must be at least 1 (max_retries at least 0), got {self.max_attempts}"
            )
        for name in ("initial_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise CoverbaseConfigError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if not 0 <= self.jitter <= 1:
            raise CoverbaseConfigError(f"jitter must be between 0 and 1, got {self.jitter!r}")

    @classmethod
    def from_max_retries(cls, max_retries: int, **kwargs: Any) -> RetryPolicy:
        """The policy for ``max_retries`` retries after the first attempt."""
        return cls(max_attempts=max_retries + 1, **kwargs)

    def should_retry(self, error: BaseException) -> bool:
        """Whether the request that failed with ``error`` is worth sending again."""
        if isinstance(error, CoverbaseConnectionError):
            return error.retryable  # False for an https:// URL answered in plain http
        if isinstance(error, CoverbaseAPIError) and error.status_code in self.retry_statuses:
            if not error.retryable:  # e.g. 502 workflow_dispatch_failed: the run exists already
                return False
            return error.retry_after is None or error.retry_after <= self.max_retry_after
        return False

    def backoff(self, attempt: int, random_fraction: float) -> float:
        """Exponential backoff after failed attempt number ``attempt`` (1-based), with jitter.

        ``random_fraction`` is a number in [0, 1): injected so tests are exact.
        """
        base = min(self.max_delay, self.initial_delay * 2.0 ** (attempt - 1))
        return base * (1.0 - self.jitter * random_fraction)

    def delay(self, attempt: int, error: BaseException, random_fraction: float) -> float:
        """Seconds to wait before the next attempt: the server's hint if it gave one, else backoff."""
        if isinstance(error, CoverbaseAPIError) and error.retry_after is not None:
            return min(error.retry_after, self.max_retry_after)
        return self.backoff(attempt, random_fraction)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Everything a client needs, validated. The API key is kept out of ``repr``."""

    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Allow ``http://`` to a host that is not loopback (e.g. the emulator in a container network).
    allow_insecure_http: bool = False
    user_agent: str = ""
    #: Requests per second this client (or, shared, this connection in one process) may send;
    #: ``0`` is unlimited. See :class:`~airflow_provider_coverbase.client.RequestBudget`.
    max_requests_per_second: float = DEFAULT_MAX_REQUESTS_PER_SECOND
    #: Where these settings come from, for messages that tell what to fix: the hook sets
    #: "Airflow connection 'coverbase_default'". A label only: not part of :meth:`fingerprint`.
    source: str = ""
    #: :meth:`fingerprint`, computed on first use (every user of a shared config asks for it).
    _fingerprint: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.api_key, str) or not self.api_key.strip():
            raise CoverbaseConfigError(
                "no Coverbase API key: set the connection's password (API key) field to an 'ak_...' key"
            )
        if any(ch.isspace() for ch in self.api_key.strip()) or not self.api_key.strip().isprintable():
            raise CoverbaseConfigError(
                "the Coverbase API key contains spaces or control characters; paste the key exactly"
            )
        object.__setattr__(self, "api_key", self.api_key.strip())
        object.__setattr__(self, "base_url", normalise_base_url(self.base_url, self.allow_insecure_http))
        for name in ("timeout", "connect_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise CoverbaseConfigError(f"{name} must be a number of seconds > 0, got {value!r}")
        rate = self.max_requests_per_second
        if not (isinstance(rate, int | float) and math.isfinite(rate) and rate >= 0):
            raise CoverbaseConfigError(f"max_requests_per_second must be a number >= 0 (0: no limit), got {rate!r}")

    def single_attempt(self, within: float) -> ClientConfig:
        """This config for a read that must answer quickly: one attempt, each timeout at most ``within`` s.

        What the API server's plugins use (the webhook receiver's run check, the UI's live rows): a
        request there holds up an HTTP answer, so it is never retried and never waits long.
        """
        return replace(
            self,
            timeout=min(self.timeout, within),
            connect_timeout=min(self.connect_timeout, within),
            retry=RetryPolicy(max_attempts=1),
        )

    def fingerprint(self) -> str:
        """A short digest of every setting, the API key included, that never reveals the key.

        Two configs with the same fingerprint can share HTTP connections and a request budget; a
        rotated key or any changed setting gives another fingerprint. Computed once per config.
        """
        if self._fingerprint:
            return self._fingerprint
        fields = (
            self.api_key,
            self.base_url,
            self.timeout,
            self.connect_timeout,
            repr(self.retry),
            self.allow_insecure_http,
            self.user_agent,
            self.max_requests_per_second,
        )
        fingerprint = hashlib.sha256(repr(fields).encode()).hexdigest()[:16]
        object.__setattr__(self, "_fingerprint", fingerprint)
        return fingerprint


def normalise_base_url(base_url: str, allow_insecure_http: bool = False) -> str:
    """Check and tidy a base URL: https (or http to loopback), no query, no trailing slash.

    A URL without a scheme gets ``https://``, or ``http://`` when the host is loopback (the emulator).
    """
    raw = (base_url or "").strip()
    if not raw:
        return DEFAULT_BASE_URL
    if "://" not in raw:
        host = urlsplit(f"//{raw}").hostname or ""
        raw = f"{'http' if is_loopback_host(host) else 'https'}://{raw}"
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CoverbaseConfigError(f"the Coverbase base URL must look like https://api.coverbase.app, got {base_url!r}")
    if parts.username or parts.password:
        raise CoverbaseConfigError(
            "the Coverbase base URL must not contain credentials; put the API key in the password field"
        )
    if parts.query or parts.fragment:
        raise CoverbaseConfigError(f"the Coverbase base URL must not have a query or fragment: {base_url!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname) and not allow_insecure_http:
        raise CoverbaseConfigError(
            f"refusing to send the API key over plain http to {parts.hostname}: use https "
            "(plain http is allowed only to localhost/127.0.0.1, or with allow_insecure_http)"
        )
    return raw.rstrip("/")
