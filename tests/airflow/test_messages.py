"""What a user reads when something is set up wrong: each message shown in full, and in the docs.

Every test here produces a message the way a user meets it (a DAG's operator, the hook, both
clients against the emulator over loopback) and checks it word for word against the table of
``docs/troubleshooting.md``, after replacing what changes from run to run (the emulator's port, a
request id, OpenSSL's source line) with fixed placeholders. So the documented table is the real
text, and a changed message fails here until the docs say the same.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_coverbase.client import AsyncCoverbaseClient, CoverbaseClient, RetryPolicy
from airflow_provider_coverbase.exceptions import (
    AuthenticationError,
    CoverbaseConfigError,
    CoverbaseConnectionError,
    CoverbaseError,
    NotFoundError,
)
from airflow_provider_coverbase.hooks.coverbase import CoverbaseHook
from airflow_provider_coverbase.operators.coverbase import CoverbaseRunWorkflowOperator
from airflow_provider_coverbase.quarters import FILTERS, QUARTER
from airflow_provider_coverbase.testing import CoverbaseEmulator
from tests.airflow.conftest import FakeTI, conn_value, make_context, operator

TROUBLESHOOTING = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"
ONE_TRY = RetryPolicy(max_attempts=1)


def normalised(text: str) -> str:
    """``text`` with what changes between runs replaced: ports, request ids, OpenSSL's source line.

    The current API's 401 also names its code (``unauthorized``); the table shows the legacy form.
    """
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    text = re.sub(r" \[request_id=[^\]]+\]", "", text)
    text = text.replace("[HTTP 401 unauthorized, ", "[HTTP 401, ")  # the current API adds its code
    return re.sub(r"\(_ssl\.c:\d+\)", "(_ssl.c:N)", text)


def documented(text: str) -> str:
    """Assert the message is in the troubleshooting table (as a code span) and return it."""
    message = normalised(text)
    page = TROUBLESHOOTING.read_text(encoding="utf-8")
    assert f"`{message}`" in page, f"docs/troubleshooting.md does not show this message:\n{message}"
    return message


def with_client(kind: str, base_url: str, api_key: str, call: str, *args: Any) -> CoverbaseError:
    """The error ``call`` raises on the sync or the async client (one attempt, no pacing)."""
    options: dict[str, Any] = {"base_url": base_url, "retry": ONE_TRY, "max_requests_per_second": 0}
    if kind == "sync":
        with CoverbaseClient(api_key, **options) as client, pytest.raises(CoverbaseError) as caught:
            getattr(client, call)(*args)
        return caught.value

    async def run() -> CoverbaseError:
        async with AsyncCoverbaseClient(api_key, **options) as client:
            with pytest.raises(CoverbaseError) as caught:
                await getattr(client, call)(*args)
            return caught.value

    return asyncio.run(run())


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# ---- a workflow name with a typo -----------------------------------------------------------------


def test_a_typo_in_the_workflow_name_offers_the_close_match(emulator: CoverbaseEmulator, kind: str) -> None:
    error = with_client(kind, emulator.base_url, emulator.api_key, "run_workflow", "quartely-privacy-sweep", {})
    assert isinstance(error, NotFoundError)
    assert error.code == "workflow_not_found"
    message = documented(str(error))
    assert message.startswith("workflow 'quartely-privacy-sweep' not found for this API key's org")
    assert "Did you mean 'quarterly-privacy-sweep'?" in message
    assert "GET http://127.0.0.1:PORT/_emulator lists them" in message
    assert emulator.run_count() == 0


def test_a_differently_spelt_name_finds_the_workflow_too(emulator: CoverbaseEmulator, kind: str) -> None:
    error = with_client(kind, emulator.base_url, emulator.api_key, "run_workflow", "Quarterly Privacy Sweep", {})
    assert "Did you mean 'quarterly-privacy-sweep'?" in str(error)


def test_the_operator_fails_with_the_hint_without_retries(emulator: CoverbaseEmulator) -> None:
    with pytest.raises(AirflowFailException) as caught:
        operator(workflow_name="quartely-privacy-sweep").execute(make_context(FakeTI()))
    assert "Did you mean 'quarterly-privacy-sweep'?" in str(caught.value)


# ---- https:// in front of a plain-http server ------------------------------------------------------


def test_https_to_a_plain_http_server_says_so(emulator: CoverbaseEmulator, kind: str) -> None:
    https = emulator.base_url.replace("http://", "https://")
    error = with_client(kind, https, emulator.api_key, "get_workflow_run", "cbwr_0")
    assert isinstance(error, CoverbaseConnectionError)
    assert error.attempts == 1  # not retried: the same answer every time
    assert not error.retryable
    message = documented(str(error))
    assert "the server answered in plain HTTP, not TLS" in message
    assert "use http://127.0.0.1:PORT" in message


def test_https_to_a_plain_http_server_in_the_triggerer(
    emulator: CoverbaseEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared async client of a connection (what triggers use, over ``WireTransport``) says the same."""
    value = json.loads(conn_value(emulator))
    value["host"] = emulator.base_url.replace("http://", "https://")
    monkeypatch.setenv("AIRFLOW_CONN_COVERBASE_DEFAULT", json.dumps(value))

    async def read() -> CoverbaseError:
        hook = CoverbaseHook()
        try:
            with pytest.raises(CoverbaseConnectionError) as caught:
                await hook.aget_workflow_run("cbwr_0")
            return caught.value
        finally:
            await hook.aclose()

    assert "the server answered in plain HTTP, not TLS" in str(asyncio.run(read()))


# ---- a wrong API key --------------------------------------------------------------------------------


def test_a_wrong_key_names_the_connection(emulator: CoverbaseEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    value = json.loads(conn_value(emulator))
    value["password"] = "ak_live_wrong_0123456789abcdef"
    monkeypatch.setenv("AIRFLOW_CONN_COVERBASE_AUDIT", json.dumps(value))
    hook = CoverbaseHook("coverbase_audit")
    with pytest.raises(AuthenticationError) as caught:
        hook.check_auth()
    hook.close()
    message = documented(str(caught.value))
    assert "of Airflow connection 'coverbase_audit'" in message
    assert "ak_live_wrong" not in message

    async def async_error() -> str:
        hook = CoverbaseHook("coverbase_audit")
        try:
            with pytest.raises(AuthenticationError) as caught:
                await hook.acheck_auth()
            return str(caught.value)
        finally:
            await hook.aclose()

    assert normalised(asyncio.run(async_error())) == message


# ---- an input that renders to None ------------------------------------------------------------------


def test_an_input_that_renders_to_none_shows_what_was_rendered(emulator: CoverbaseEmulator) -> None:
    emulator.clear_requests()
    with DAG("messages", schedule=None):
        op = operator(task_id="start_sweep", input="{{ ti.xcom_pull(task_ids='build_input') }}")
    op.render_template_fields({"ti": _NoXComs()})
    with pytest.raises(AirflowFailException) as caught:
        op.execute(make_context(FakeTI(task_id="start_sweep")))
    message = documented(str(caught.value))
    assert "rendered to 'None' from the template \"{{ ti.xcom_pull(task_ids='build_input') }}\"" in message
    assert emulator.requests == []


def test_a_native_input_that_renders_to_none_shows_the_template(emulator: CoverbaseEmulator) -> None:
    emulator.clear_requests()
    with DAG("messages_native", schedule=None, render_template_as_native_obj=True):
        op = operator(task_id="start_sweep", input="{{ ti.xcom_pull(task_ids='build_input') }}")
    op.render_template_fields({"ti": _NoXComs()})
    assert op.input is None
    with pytest.raises(AirflowFailException) as caught:
        op.execute(make_context(FakeTI(task_id="start_sweep")))
    documented(str(caught.value))
    assert emulator.requests == []


def test_none_as_input_still_means_no_input(emulator: CoverbaseEmulator) -> None:
    result = operator(workflow_name="adhoc-campaign", input=None, wait_for_completion=False).execute(
        make_context(FakeTI())
    )
    assert result["workflow_name"] == "adhoc-campaign"


class _NoXComs:
    """A task instance whose ``xcom_pull`` finds nothing, as for an upstream task that pushed none."""

    def xcom_pull(self, **_: Any) -> None:
        return None


# ---- a negative timeout -----------------------------------------------------------------------------


def test_a_negative_timeout_names_the_task() -> None:
    with pytest.raises(ValueError, match="must be positive") as caught:
        CoverbaseRunWorkflowOperator(task_id="run_sweep", workflow_name="x", timeout=timedelta(hours=-1))
    message = documented(str(caught.value))
    assert message.startswith("run_sweep: timeout must be positive, got timedelta(seconds=-3600)")


# ---- QUARTER without its filter ---------------------------------------------------------------------


def test_quarter_without_the_filters_says_what_to_add() -> None:
    with DAG("no_filters", schedule=None):
        op = CoverbaseRunWorkflowOperator(task_id="run_sweep", workflow_name="x", input={"quarter": QUARTER})
    with pytest.raises(AirflowFailException) as caught:
        op.render_template_fields({})
    message = documented(str(caught.value))
    assert "Add user_defined_filters=FILTERS to the DAG" in message

    with DAG("with_filters", schedule=None, user_defined_filters=FILTERS):
        fine = CoverbaseRunWorkflowOperator(task_id="run_sweep", workflow_name="x", input={"quarter": QUARTER})
    from datetime import UTC, datetime

    fine.render_template_fields({"data_interval_start": datetime(2026, 7, 1, tzinfo=UTC)})
    assert fine.input == {"quarter": "2026-Q3"}


def test_another_template_error_is_left_as_jinja_says() -> None:
    import jinja2

    with DAG("other_filter", schedule=None):
        op = CoverbaseRunWorkflowOperator(task_id="run_sweep", workflow_name="x", input={"a": "{{ 1 | nofilter }}"})
    with pytest.raises(jinja2.TemplateAssertionError, match="nofilter"):
        op.render_template_fields({})


# ---- connection settings (checked before any request) ------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"extra": {"timout": 30}}, "timout: unknown extra (did you mean 'timeout'?)"),
        ({"host": "http://coverbase.internal.example"}, "refusing to send the API key over plain http"),
        ({"password": None}, "has no API key"),
    ],
)
def test_connection_settings_messages(monkeypatch: pytest.MonkeyPatch, change: dict[str, Any], expected: str) -> None:
    value: dict[str, Any] = {"conn_type": "coverbase", "host": "https://api.coverbase.app", "password": "ak_live_x"}
    value.update(change)
    monkeypatch.setenv("AIRFLOW_CONN_COVERBASE_DEFAULT", json.dumps(value))
    with pytest.raises(CoverbaseConfigError) as caught:
        CoverbaseHook().get_settings()
    message = documented(str(caught.value))
    assert expected in message
    assert "connection 'coverbase_default'" in message
