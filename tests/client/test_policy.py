"""The retry decision and settings checks, as pure functions (no server, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from airflow_provider_coverbase.client import ClientConfig, CoverbaseClient, RetryPolicy
from airflow_provider_coverbase.client._config import parse_retry_after
from airflow_provider_coverbase.exceptions import (
    CoverbaseAPIError,
    CoverbaseConfigError,
    CoverbaseConnectionError,
    CoverbaseTimeoutError,
    InvalidInputError,
    RateLimitError,
    ServerError,
    WorkflowDispatchFailedError,
)


def api_error(status: int, retry_after: float | None = None) -> CoverbaseAPIError:
    """The class the client's error factory picks for a status."""
    cls = ServerError if status >= 500 else RateLimitError if status == 429 else CoverbaseAPIError
    return cls("x", status_code=status, method="GET", path="/", retry_after=retry_after)


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (CoverbaseConnectionError("x", method="GET", path="/"), True),
        (CoverbaseTimeoutError("x", method="GET", path="/"), True),
        *[(api_error(status), True) for status in (429, 500, 502, 503, 504)],
        *[(api_error(status), False) for status in (400, 401, 403, 404, 409, 422, 501, 418)],
        (api_error(429, retry_after=60), True),
        (api_error(429, retry_after=61), False),
        (InvalidInputError("x"), False),
        (
            WorkflowDispatchFailedError("x", status_code=502, method="POST", path="/", code="workflow_dispatch_failed"),
            False,
        ),
        (ValueError("x"), False),
    ],
)
def test_should_retry(error: BaseException, retry: bool) -> None:
    assert RetryPolicy(max_retry_after=60).should_retry(error) is retry


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(initial_delay=1.0, max_delay=5.0, jitter=0.5)
    assert [policy.backoff(n, 0.0) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.backoff(2, 0.999) == pytest.approx(1.001)  # at most half of the wait is random
    assert RetryPolicy(initial_delay=1.0, jitter=1.0).backoff(1, 0.5) == 0.5


def test_server_hint_replaces_backoff_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_delay=1.0, max_retry_after=10)
    assert policy.delay(1, api_error(429, retry_after=4), 0.0) == 4
    assert policy.delay(1, api_error(503), 0.0) == 1.0


@pytest.mark.parametrize(
    ("header", "body", "expected"),
    [
        ("5", None, 5.0),
        ("1.5", None, 1.5),
        (None, {"retry_after": 12}, 12.0),
        ("2", {"retry_after": 12}, 2.0),
        ("soon", None, None),
        ("-3", {"retry_after": "x"}, None),
        (None, {"retry_after": True}, None),
        # The legacy page does not say where retry_after is: under detail or error, as a string too.
        (None, {"retry_after": "7"}, 7.0),
        (None, {"retry_after": " 2.5 "}, 2.5),
        (None, {"detail": {"code": "rate_limited", "retry_after": 9}}, 9.0),
        (None, {"detail": {"code": "rate_limited", "retry_after": "9"}}, 9.0),
        (None, {"error": {"code": "rate_limited", "retry_after": 4}}, 4.0),
        (None, {"retry_after": "soon", "detail": {"retry_after": 3}}, 3.0),
        (None, {"retry_after": -1}, None),
        (None, {"retry_after": "inf"}, None),
        (None, {"detail": "Too many requests"}, None),
        ("Sun, 06 Nov 1994 08:49:37 GMT", None, 0.0),  # a date in the past: no wait
        (None, None, None),
    ],
)
def test_parse_retry_after(header: str | None, body: Any, expected: float | None) -> None:
    assert parse_retry_after(header, body) == expected


def test_parse_retry_after_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    seconds = parse_retry_after(format_datetime(when, usegmt=True))
    assert seconds is not None and 25 <= seconds <= 30


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"api_key": ""}, "no Coverbase API key"),
        ({"api_key": "ak_test one"}, "spaces or control characters"),
        ({"base_url": "http://api.coverbase.app"}, "refusing to send the API key over plain http"),
        ({"base_url": "ftp://x"}, "must look like https://"),
        ({"base_url": "https://user:pw@api.coverbase.app"}, "must not contain credentials"),
        ({"base_url": "https://api.coverbase.app/?a=1"}, "query or fragment"),
        ({"timeout": 0}, "timeout must be"),
        ({"retry": None}, None),
    ],
)
def test_config_errors(kwargs: dict[str, Any], message: str | None) -> None:
    settings: dict[str, Any] = {"api_key": "ak_test_123456"} | kwargs
    if message is None:
        settings.pop("retry")
        ClientConfig(**settings)
        return
    with pytest.raises(CoverbaseConfigError, match=message):
        ClientConfig(**settings)


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("", "https://api.coverbase.app"),
        ("api.coverbase.app", "https://api.coverbase.app"),
        ("https://api.coverbase.app/", "https://api.coverbase.app"),
        ("127.0.0.1:8900", "http://127.0.0.1:8900"),
        ("http://localhost:8900", "http://localhost:8900"),
        ("http://[::1]:8900", "http://[::1]:8900"),
        ("https://proxy.example.com/coverbase/", "https://proxy.example.com/coverbase"),
    ],
)
def test_base_url_normalisation(base_url: str, expected: str) -> None:
    assert ClientConfig(api_key="ak_test_1", base_url=base_url).base_url == expected


def test_insecure_http_can_be_allowed_explicitly() -> None:
    config = ClientConfig(api_key="ak_test_1", base_url="http://emulator:8900", allow_insecure_http=True)
    assert config.base_url == "http://emulator:8900"


def test_retry_policy_validation() -> None:
    with pytest.raises(CoverbaseConfigError, match="max_retries at least 0"):
        RetryPolicy.from_max_retries(-1)
    with pytest.raises(CoverbaseConfigError, match="jitter"):
        RetryPolicy(jitter=2)


def test_repr_hides_the_key() -> None:
    client = CoverbaseClient("ak_test_secret_value_123")
    assert "ak_test_secret_value_123" not in repr(client) + repr(client.config)
    client.close()


def test_a_single_attempt_config_caps_both_timeouts_and_never_retries() -> None:
    config = ClientConfig(api_key="ak_test", timeout=30, connect_timeout=2, max_requests_per_second=7)
    quick = config.single_attempt(3)
    assert (quick.timeout, quick.connect_timeout, quick.retry.max_attempts) == (3, 2, 1)
    assert (quick.api_key, quick.base_url, quick.max_requests_per_second) == ("ak_test", config.base_url, 7)
    assert quick.fingerprint() != config.fingerprint()
