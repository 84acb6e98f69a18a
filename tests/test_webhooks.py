"""``webhooks.py``: signature vectors, timestamps, both envelopes, unknown types, the size limit."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_provider_coverbase.asset_events import MAX_OUTPUT_BYTES, MAX_OUTPUT_DEPTH, asset_event_extra
from airflow_provider_coverbase.exceptions import CoverbaseError
from airflow_provider_coverbase.webhooks import (
    MAX_BODY_BYTES,
    MAX_ID_LENGTH,
    MAX_TIMESTAMP_TOLERANCE,
    MIN_SECRET_LENGTH,
    CoverbaseWebhookEvent,
    WebhookBodyTooLargeError,
    WebhookError,
    WebhookMalformedError,
    WebhookSignatureError,
    WebhookStaleError,
    parse_event,
    receive,
    sign,
    verify_signature,
)

# A vector computed outside Python: printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET"
UNICODE_SECRET = "whsec_ünïcode_secret_0123"
UNICODE_BODY = (
    '{"event_id":"cbevt_1","event_type":"workflow.completed","occurred_at":1767225600,'
    '"data":{"workflow_name":"Prüfung – 監査","status":"completed"},"workflow_run_id":"cbwfr_1"}'  # noqa: RUF001
).encode()
UNICODE_SIGNATURE = "d91b4249396bc310becae52863c2cc5fbe5839e7b9b3bf64dca95bc220a4f587"
NOW = 1767225600.0
SECRET = "whsec_test_secret_0123456789"


def envelope(**overrides: Any) -> bytes:
    body: dict[str, Any] = {
        "event_id": "cbevt_abc",
        "event_type": "WorkflowRun.Completed",
        "occurred_at": int(NOW),
        "data": {"event_type": "WorkflowRun.Completed", "workflow_run_id": "cbwfr_1"},
    }
    body.update(overrides)
    return json.dumps(body).encode()


def headers_for(body: bytes, secret: str = SECRET, timestamp: float | None = NOW) -> dict[str, str]:
    headers = {"Coverbase-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
    if timestamp is not None:
        headers["Coverbase-Timestamp"] = str(int(timestamp))
    return headers


# ------------------------------------------------------------------------------------- signature


def test_unicode_vector_from_openssl() -> None:
    assert sign(UNICODE_SECRET, UNICODE_BODY) == UNICODE_SIGNATURE
    verify_signature(UNICODE_BODY, UNICODE_SIGNATURE, UNICODE_SECRET)
    event = receive(UNICODE_BODY, {"coverbase-signature": UNICODE_SIGNATURE}, UNICODE_SECRET, now=NOW)
    assert event.workflow_name == "Prüfung – 監査"  # noqa: RUF001


def test_every_single_changed_byte_fails() -> None:
    for index in range(0, len(UNICODE_BODY), 7):
        tampered = bytearray(UNICODE_BODY)
        tampered[index] ^= 0x01
        with pytest.raises(WebhookSignatureError, match="does not match"):
            verify_signature(bytes(tampered), UNICODE_SIGNATURE, UNICODE_SECRET)


def test_re_encoded_json_fails_only_the_raw_bytes_are_signed() -> None:
    reencoded = json.dumps(json.loads(UNICODE_BODY)).encode()  # ensure_ascii escapes, spaces
    with pytest.raises(WebhookSignatureError):
        verify_signature(reencoded, UNICODE_SIGNATURE, UNICODE_SECRET)


@pytest.mark.parametrize(
    "secret",
    ["whsec_ünïcode_secret_0124", "ünïcode_secret_0123", "WHSEC_ünïcode_secret_0123", "whsec_unicode_secret_0123"],
)
def test_wrong_secret_fails(secret: str) -> None:
    with pytest.raises(WebhookSignatureError):
        verify_signature(UNICODE_BODY, UNICODE_SIGNATURE, secret)


@pytest.mark.parametrize("signature", [None, "", "   "])
def test_missing_signature_fails(signature: str | None) -> None:
    with pytest.raises(WebhookSignatureError, match=r"missing|does not match"):
        verify_signature(UNICODE_BODY, signature, UNICODE_SECRET)


def test_missing_header_in_receive() -> None:
    body = envelope()
    with pytest.raises(WebhookSignatureError, match="Coverbase-Signature header is missing") as caught:
        receive(body, {"Coverbase-Timestamp": str(int(NOW))}, SECRET, now=NOW)
    assert caught.value.http_status == 401


@pytest.mark.parametrize(
    "signature",
    ["d91b", "x" * 64, "é" * 64, UNICODE_SIGNATURE[:-1] + "0", "sha1=" + UNICODE_SIGNATURE, UNICODE_SIGNATURE + "00"],
)
def test_garbled_signatures_fail_without_crashing(signature: str) -> None:
    with pytest.raises(WebhookSignatureError):
        verify_signature(UNICODE_BODY, signature, UNICODE_SECRET)


def test_tolerated_header_spellings() -> None:
    for value in (UNICODE_SIGNATURE.upper(), f" {UNICODE_SIGNATURE} ", f"sha256={UNICODE_SIGNATURE}"):
        assert verify_signature(UNICODE_BODY, value, UNICODE_SECRET) is None
        # Tolerated as a spelling only: the same header still fails for any other body.
        with pytest.raises(WebhookSignatureError):
            verify_signature(UNICODE_BODY + b" ", value, UNICODE_SECRET)


def test_no_secret_refuses_everything() -> None:
    body = b"{}"
    with pytest.raises(WebhookSignatureError, match="no webhook secret"):
        verify_signature(body, hmac.new(b"", body, hashlib.sha256).hexdigest(), "")


def test_errors_never_contain_the_secret_or_the_signature() -> None:
    for call in (
        lambda: verify_signature(UNICODE_BODY, "0" * 64, UNICODE_SECRET),
        lambda: verify_signature(UNICODE_BODY, UNICODE_SIGNATURE, UNICODE_SECRET, timestamp="1", now=NOW),
    ):
        with pytest.raises(WebhookError) as caught:
            call()
        assert UNICODE_SECRET not in str(caught.value)
        assert UNICODE_SIGNATURE not in str(caught.value)
        assert isinstance(caught.value, CoverbaseError)


# ------------------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize("offset", [0, 299, -299, 300, -300])
def test_timestamp_within_tolerance(offset: int) -> None:
    sent = str(int(NOW) + offset)
    assert verify_signature(UNICODE_BODY, UNICODE_SIGNATURE, UNICODE_SECRET, timestamp=sent, now=NOW) is None
    if offset:  # the same delivery is stale for a tolerance just below its skew
        with pytest.raises(WebhookStaleError):
            verify_signature(
                UNICODE_BODY, UNICODE_SIGNATURE, UNICODE_SECRET, timestamp=sent, now=NOW, tolerance=abs(offset) - 1
            )


def test_stale_timestamp_fails() -> None:
    with pytest.raises(WebhookStaleError, match="stale delivery: sent 301 s ago") as caught:
        verify_signature(UNICODE_BODY, UNICODE_SIGNATURE, UNICODE_SECRET, timestamp=str(int(NOW) - 301), now=NOW)
    assert caught.value.http_status == 401


def test_future_timestamp_fails() -> None:
    with pytest.raises(WebhookStaleError, match="301 s in the future"):
        verify_signature(UNICODE_BODY, UNICODE_SIGNATURE, UNICODE_SECRET, timestamp=str(int(NOW) + 301), now=NOW)


def test_tolerance_is_configurable() -> None:
    stamp = str(int(NOW) - 3600)
    verify_signature(UNICODE_BODY, UNICODE_SIGNATURE, UNICODE_SECRET, timestamp=stamp, tolerance=3601, now=NOW)
    with pytest.raises(WebhookStaleError):
        verify_signature(UNICODE_BODY, UNICODE_SIGNATURE, UNICODE_SECRET, timestamp=stamp, tolerance=60, now=NOW)


@pytest.mark.parametrize("stamp", ["yesterday", "", "nan", "inf"])
def test_unreadable_timestamp_fails(stamp: str) -> None:
    with pytest.raises(WebhookStaleError, match="not Unix seconds"):
        verify_signature(UNICODE_BODY, UNICODE_SIGNATURE, UNICODE_SECRET, timestamp=stamp, now=NOW)


def test_timestamp_is_checked_only_after_the_signature() -> None:
    with pytest.raises(WebhookSignatureError) as caught:
        verify_signature(UNICODE_BODY, "0" * 64, UNICODE_SECRET, timestamp="1", now=NOW)
    assert not isinstance(caught.value, WebhookStaleError)


def test_header_must_match_the_signed_occurred_at() -> None:
    body = envelope(occurred_at=int(NOW) - 3600)  # an old signed body replayed with a fresh header
    with pytest.raises(WebhookStaleError, match="differs from the signed 'occurred_at'"):
        receive(body, headers_for(body, timestamp=NOW), SECRET, now=NOW)


def legacy_body(**overrides: Any) -> bytes:
    body: dict[str, Any] = {
        "event_id": "cbevt_legacy",
        "event_type": "workflow.completed",
        "occurred_at": int(NOW),
        "data": {"workflow_run_id": "cbwfr_1", "workflow_name": "w", "status": "completed"},
        "workflow_run_id": "cbwfr_1",
    }
    body.update(overrides)
    return json.dumps(body).encode()


@pytest.mark.parametrize("age", [3600, 400 * 86400, -3600])
def test_without_the_header_the_signed_occurred_at_decides(age: int) -> None:
    # Issue 15, item 1: an old signed body replayed without its (unsigned) header was accepted.
    body = legacy_body(occurred_at=int(NOW) - age)
    with pytest.raises(WebhookStaleError, match=r"stale delivery|in the future") as caught:
        receive(body, headers_for(body, timestamp=None), SECRET, now=NOW)
    assert caught.value.http_status == 401
    fresh = legacy_body(occurred_at=int(NOW) - 299)  # legacy and V2 send no header: their body decides
    assert receive(fresh, headers_for(fresh, timestamp=None), SECRET, now=NOW).event_id == "cbevt_legacy"
    if abs(age) < MAX_TIMESTAMP_TOLERANCE:  # the same tolerance as with the header
        assert receive(body, headers_for(body, timestamp=None), SECRET, tolerance=abs(age) + 1, now=NOW)


def test_a_current_api_workflow_event_without_the_header_is_refused() -> None:
    body = envelope()  # WorkflowRun.Completed, occurred_at = now: fresh, but V3 always sends the header
    with pytest.raises(WebhookStaleError, match="always sends Coverbase-Timestamp"):
        receive(body, headers_for(body, timestamp=None), SECRET, now=NOW)
    assert receive(body, headers_for(body), SECRET, now=NOW).event_id == "cbevt_abc"


def test_a_body_without_any_time_is_refused() -> None:
    body = json.dumps({"event_id": "e", "event_type": "webhook.test", "data": {}}).encode()
    with pytest.raises(WebhookStaleError, match="neither a Coverbase-Timestamp header nor a signed 'occurred_at'"):
        receive(body, headers_for(body, timestamp=None), SECRET, now=NOW)


def test_the_tolerance_is_bounded_so_dedupe_records_outlive_every_acceptable_replay() -> None:
    from airflow_provider_coverbase.plugins.webhook_dedupe import RETENTION

    assert RETENTION.total_seconds() > 2 * MAX_TIMESTAMP_TOLERANCE
    body = legacy_body()
    with pytest.raises(ValueError, match="tolerance"):
        receive(body, headers_for(body), SECRET, tolerance=MAX_TIMESTAMP_TOLERANCE + 1, now=NOW)


def test_a_secret_shorter_than_the_minimum_refuses_everything() -> None:
    short = "s" * (MIN_SECRET_LENGTH - 1)
    body = legacy_body()
    with pytest.raises(WebhookSignatureError, match=f"shorter than {MIN_SECRET_LENGTH} characters") as caught:
        receive(body, headers_for(body, secret=short), short, now=NOW)
    assert short not in str(caught.value)


# ------------------------------------------------------------------------------------- envelopes


def test_legacy_envelope_completed() -> None:
    body = {
        "event_id": "cbevt_legacy",
        "event_type": "workflow.completed",
        "occurred_at": 1746576120,
        "data": {
            "workflow_run_id": "cbwfr_a8f2",
            "workflow_name": "quarterly-privacy-sweep",
            "status": "completed",
            "output": {"vendors_reviewed": 14},
        },
        "workflow_run_id": "cbwfr_a8f2",
    }
    event = parse_event(json.dumps(body).encode())
    assert event == CoverbaseWebhookEvent(
        event_id="cbevt_legacy",
        event_type="workflow.completed",
        kind="completed",
        workflow_run_id="cbwfr_a8f2",
        workflow_name="quarterly-privacy-sweep",
        checkpoint=None,
        status="completed",
        output={"vendors_reviewed": 14},
        occurred_at=datetime(2025, 5, 7, 0, 2, tzinfo=UTC),
        data=body["data"],
    )
    assert event.is_workflow_event


def test_legacy_top_level_run_id_alone_is_enough() -> None:
    event = parse_event(
        {"event_id": "e", "event_type": "workflow.failed", "data": {"error": "boom"}, "workflow_run_id": "cbwfr_x"}
    )
    assert (event.kind, event.workflow_run_id, event.status, event.error) == ("failed", "cbwfr_x", "failed", "boom")
    assert event.occurred_at is None


def test_legacy_checkpoint() -> None:
    event = parse_event(
        {
            "event_id": "e",
            "event_type": "workflow.checkpoint",
            "occurred_at": 1,
            "data": {"workflow_name": "w", "checkpoint": "responses_aggregated", "status": "running"},
            "workflow_run_id": "cbwfr_x",
        }
    )
    assert (event.kind, event.checkpoint, event.status) == ("checkpoint", "responses_aggregated", "running")


@pytest.mark.parametrize(
    ("event_type", "kind"), [("WorkflowRun.Completed", "completed"), ("WorkflowRun.Failed", "failed")]
)
def test_current_envelope(event_type: str, kind: str) -> None:
    event = parse_event(envelope(event_type=event_type, data={"event_type": event_type, "workflow_run_id": "cbwfr_9"}))
    assert (event.kind, event.workflow_run_id, event.workflow_name, event.status) == (kind, "cbwfr_9", None, kind)
    assert event.checkpoint is None


@pytest.mark.parametrize(
    "event_type",
    [
        "WorkflowRun.Created",
        "WorkflowRun.Updated",
        "WorkflowRun.Deleted",
        "Vendor.Created",
        "webhook.test",
        "workflowrun.completed",  # the V1+ catalog is case-sensitive
        "Brand.New.Thing",
        "assessment.completed",
    ],
)
def test_unknown_and_other_types_parse_as_other(event_type: str) -> None:
    event = parse_event(envelope(event_type=event_type, data={"anything": [1, 2], "workflow_run_id": 5}))
    assert event.kind == "other"
    assert not event.is_workflow_event
    assert event.workflow_run_id is None
    assert event.data == {"anything": [1, 2], "workflow_run_id": 5}


def test_test_delivery_with_default_payload() -> None:
    event = parse_event(envelope(event_type="webhook.test", data={"test": True}))
    assert event.kind == "other"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"{}", "no 'event_id'"),
        (json.dumps({"event_id": "e"}).encode(), "no 'event_id' or no 'event_type'"),
        (json.dumps({"event_id": 5, "event_type": "x"}).encode(), "'event_id' must be a non-empty string"),
        (json.dumps({"event_id": "e", "event_type": "x", "data": []}).encode(), "'data' must be a JSON object"),
        (json.dumps({"event_id": "e", "event_type": "x", "occurred_at": "today"}).encode(), "Unix seconds"),
        (json.dumps({"event_id": "e", "event_type": "x", "occurred_at": True}).encode(), "Unix seconds"),
        (json.dumps({"event_id": "e", "event_type": "x", "occurred_at": 1e20}).encode(), "out of range"),
        # Issue 15, item 3: an integer beyond float range was an OverflowError (500).
        (b'{"event_id": "e", "event_type": "x", "occurred_at": 1' + b"0" * 400 + b"}", "out of range"),
        (json.dumps({"event_id": "e", "event_type": "WorkflowRun.Failed", "data": {}}).encode(), "workflow_run_id"),
        (
            json.dumps({"event_id": "e", "event_type": "workflow.checkpoint", "workflow_run_id": "r"}).encode(),
            "data.checkpoint",
        ),
        (
            json.dumps(
                {"event_id": "e", "event_type": "workflow.completed", "data": {"workflow_run_id": "r", "status": 3}}
            ).encode(),
            "'data.status' must be a non-empty string",
        ),
    ],
)
def test_malformed_bodies(body: bytes, message: str) -> None:
    with pytest.raises(WebhookMalformedError, match=message) as caught:
        parse_event(body)
    assert caught.value.http_status == 400


def test_null_data_is_empty() -> None:
    assert parse_event(envelope(event_type="x", data=None)).data == {}


def test_model_is_frozen() -> None:
    event = parse_event(envelope())
    with pytest.raises(ValueError, match="frozen"):
        event.event_id = "other"  # type: ignore[misc]


# ------------------------------------------------------------------------------------- size limit


def test_size_limit() -> None:
    padding = "x" * (MAX_BODY_BYTES - len(envelope(pad="")))
    at_limit = envelope(pad=padding)
    assert len(at_limit) == MAX_BODY_BYTES
    assert receive(at_limit, headers_for(at_limit), SECRET, now=NOW).event_id == "cbevt_abc"
    over = envelope(pad=padding + "x")
    with pytest.raises(WebhookBodyTooLargeError, match="262145 bytes is over the 262144-byte limit") as caught:
        receive(over, headers_for(over), SECRET, now=NOW)
    assert caught.value.http_status == 413


def test_size_limit_applies_before_the_signature() -> None:
    with pytest.raises(WebhookBodyTooLargeError):
        receive(b"x" * 11, {}, SECRET, max_bytes=10)


def test_receive_malformed_after_a_valid_signature() -> None:
    body = b'{"event_id": "e"}'
    with pytest.raises(WebhookMalformedError):
        receive(body, headers_for(body, timestamp=None), SECRET, now=NOW)


# ------------------------------------------------------------- what can never be stored: 400, not 500


def _deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        # Issue 15, item 3: a RecursionError (500) before.
        ('{"event_id":"e","event_type":"x","data":' + _deep(990) + "}", "nested too deeply"),
        # Issue 15, item 4: NaN/Infinity and float overflow made PostgreSQL refuse the extra (500).
        ('{"event_id":"e","event_type":"x","data":{"output":NaN}}', "NaN"),
        ('{"event_id":"e","event_type":"x","data":{"output":[-Infinity]}}', "-Infinity"),
        ('{"event_id":"e","event_type":"x","data":{"output":1e400}}', "beyond the range of a float"),
        ('{"event_id":"e","event_type":"x","data":{"note":"a\\u0000b"}}', "NUL"),
        ('{"event_id":"e","event_type":"x","data":{"note":"\\ud800"}}', "not valid Unicode"),
    ],
)
def test_content_no_database_stores_is_refused(raw: str, message: str) -> None:
    with pytest.raises(WebhookMalformedError, match=message) as caught:
        parse_event(raw.encode())
    assert caught.value.http_status == 400


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        # Issue 15, items 4 and 7: ids over 250 characters (PostgreSQL: 500) and CR/LF (503 when used in a URL).
        ("event_id", "cbevt_" + "a" * MAX_ID_LENGTH, "at most 250"),
        ("event_id", "cbevt_1\r\nX-Injected: 1", "only letters, digits"),
        ("run", "cbwr_1\r\nHost: evil", "only letters, digits"),
        ("run", "cbwr_1/../../v1/webhooks", "only letters, digits"),
        ("run", "r" * (MAX_ID_LENGTH + 1), "at most 250"),
    ],
)
def test_ids_are_checked_before_use(where: str, value: str, message: str) -> None:
    run_id = value if where == "run" else "cbwr_1"
    event_id = value if where == "event_id" else "cbevt_1"
    body = envelope(event_id=event_id, data={"event_type": "WorkflowRun.Completed", "workflow_run_id": run_id})
    with pytest.raises(WebhookMalformedError, match=message) as caught:
        receive(body, headers_for(body), SECRET, now=NOW)
    assert caught.value.http_status == 400


def test_ids_of_every_shape_coverbase_uses_pass() -> None:
    shapes = ("cbwr_d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9", "cbwfr_a8f2c19e3d4b5e6f7a8b9c0d1e2f3a4b", "x" * MAX_ID_LENGTH)
    for run_id in shapes:
        body = envelope(event_id="cbevt_test_8b3c1a4d", data={"workflow_run_id": run_id})
        assert parse_event(body).workflow_run_id == run_id


def test_an_overlong_status_is_refused() -> None:
    body = legacy_body(data={"workflow_run_id": "r", "workflow_name": "w", "status": "s" * 251})
    with pytest.raises(WebhookMalformedError, match=r"'data\.status' is 251 characters long"):
        parse_event(body)


# ------------------------------------------------------------------------- what the extra keeps


def _extra(output: Any) -> dict[str, Any]:
    return asset_event_extra(
        event_id="e", event_type="workflow.completed", workflow_run_id="r", workflow_name="w", status="completed",
        output=output,
    )  # fmt: skip


def test_a_deep_output_is_cut_and_the_extra_says_so() -> None:
    # Issue 15, item 2: an output ~255 levels deep (2 KB) was stored and broke GET /api/v2/assets/events.
    deep = json.loads(_deep(255))
    extra = _extra(deep)
    assert (extra["output"], extra["output_truncated"]) == (None, True)
    at_limit = json.loads(_deep(MAX_OUTPUT_DEPTH))
    assert _extra(at_limit) == {**extra, "output": at_limit, "output_truncated": False}
    assert _extra(json.loads(_deep(MAX_OUTPUT_DEPTH + 1)))["output_truncated"] is True


@pytest.mark.parametrize("output", [{"x": "y" * MAX_OUTPUT_BYTES}, {"n": math.nan}, ["\ud800"], {"z": "\x00"}])
def test_outputs_that_cannot_be_read_back_are_cut(output: Any) -> None:
    # The pull path reads outputs from the API, whose JSON decoder allows NaN: cut there too.
    assert (_extra(output)["output"], _extra(output)["output_truncated"]) == (None, True)
