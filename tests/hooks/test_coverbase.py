"""CoverbaseHook: connection parsing, sync and async paths, test_connection, masking."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from airflow_provider_coverbase.exceptions import CoverbaseConfigError
from airflow_provider_coverbase.hooks.coverbase import CoverbaseHook, settings_from_connection
from tests.fake_api import API_KEY, FakeCoverbaseAPI


def conn_json(**fields: Any) -> str:
    return json.dumps({"conn_type": "coverbase", **fields})


@pytest.fixture
def fake() -> FakeCoverbaseAPI:
    return FakeCoverbaseAPI(dialect="current")


@pytest.fixture
def coverbase_conn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_COVERBASE_DEFAULT",
        conn_json(host="https://api.coverbase.test", password=API_KEY, extra={"max_retries": 1}),
    )


def test_defaults() -> None:
    settings = settings_from_connection("c", host=None, port=None, password="ak_test_1", extra=None)
    assert settings.client.base_url == "https://api.coverbase.app"
    assert settings.client.timeout == 30 and settings.client.connect_timeout == 10
    assert settings.client.retry.max_attempts == 4
    assert settings.dashboard_run_url("cbwr_1") == "https://dashboard.coverbase.app/workflows/runs/cbwr_1"


def test_extras_and_port() -> None:
    settings = settings_from_connection(
        "c",
        host="127.0.0.1",
        port=8900,
        password="ak_test_1",
        extra=json.dumps(
            {
                "timeout": "12.5",
                "connect_timeout": 3,
                "max_retries": 0,
                "dashboard_url": "http://127.0.0.1:8900/_emulator/",
                "dashboard_run_path": "runs/{workflow_run_id}",
                "extra__coverbase__allow_insecure_http": False,
            }
        ),
    )
    assert settings.client.base_url == "http://127.0.0.1:8900"
    assert settings.client.timeout == 12.5
    assert settings.client.retry.max_attempts == 1
    assert settings.dashboard_run_url("a/b") == "http://127.0.0.1:8900/_emulator/runs/a%2Fb"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"password": None}, "connection 'c' has no API key"),
        ({"host": "http://coverbase.internal"}, "refusing to send the API key over plain http"),
        ({"extra": '{"timeout": 0}'}, "timeout: Input should be greater than 0"),
        (
            {"extra": '{"timout": 5}'},
            r"timout: unknown extra \(did you mean 'timeout'\?\)\. Valid extras: .*connect_timeout",
        ),
        ({"extra": '{"extra__coverbase__retries": 5}'}, r"retries: unknown extra \(did you mean 'max_retries'\?\)"),
        ({"extra": "{not json"}, "not valid JSON"),
        ({"extra": '{"dashboard_run_path": "/runs"}'}, "must contain '{workflow_run_id}'"),
    ],
)
def test_bad_connections_say_what_to_fix(fields: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = {"host": None, "port": None, "password": "ak_test_1", "extra": None} | fields
    with pytest.raises(CoverbaseConfigError, match=message):
        settings_from_connection("c", **kwargs)


def test_unknown_extra_names_every_valid_extra() -> None:
    from airflow_provider_coverbase.hooks.coverbase import _Extras

    with pytest.raises(CoverbaseConfigError) as caught:
        settings_from_connection("c", host=None, port=None, password="ak_test_1", extra={"colour": "blue"})
    message = caught.value.message
    assert message.startswith("connection 'c' has invalid extras: colour: unknown extra. Valid extras: ")
    assert message.removeprefix("connection 'c' has invalid extras: colour: unknown extra. Valid extras: ").split(
        ", "
    ) == sorted(_Extras.model_fields)


def test_hook_runs_a_workflow_sync(coverbase_conn: None, fake: FakeCoverbaseAPI) -> None:
    hook = CoverbaseHook(transport=httpx.MockTransport(fake))
    run = hook.run_workflow("quarterly-privacy-sweep", {"quarter": "2026-Q4"}, idempotency_key="q4")
    assert hook.get_workflow_run(run.workflow_run_id).workflow_run_id == run.workflow_run_id
    assert hook.list_workflow_runs(workflow_name="quarterly-privacy-sweep").total == 1
    assert hook.get_conn() is hook.get_client()  # one client per hook, reused
    assert str(fake.requests[0].url).startswith("https://api.coverbase.test/v1/")
    hook.close()


async def test_hook_async_path_uses_async_lookup(
    coverbase_conn: None, fake: FakeCoverbaseAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_sync_lookup(conn_id: str) -> None:
        raise AssertionError("the async path must not use the sync connection lookup")

    monkeypatch.setattr(CoverbaseHook, "get_connection", classmethod(lambda cls, conn_id: no_sync_lookup(conn_id)))
    hook = CoverbaseHook(async_transport=httpx.MockTransport(fake))
    run = await hook.arun_workflow("quarterly-privacy-sweep", {"quarter": "2026-Q4"})
    again = await hook.aget_workflow_run(run.workflow_run_id)
    assert again.workflow_run_id == run.workflow_run_id
    assert (await hook.alist_workflow_runs()).total == 1
    assert await hook.acheck_auth() == "Auth successful"
    assert await hook.adashboard_run_url("cbwr_1") == "https://dashboard.coverbase.app/workflows/runs/cbwr_1"
    await hook.aclose()


def test_test_connection(coverbase_conn: None, fake: FakeCoverbaseAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, message = CoverbaseHook(transport=httpx.MockTransport(fake)).test_connection()
    assert ok, message
    assert "Auth successful" in message

    monkeypatch.setenv("AIRFLOW_CONN_COVERBASE_DEFAULT", conn_json(host="api.coverbase.test", password="ak_test_nope"))
    ok, message = CoverbaseHook(transport=httpx.MockTransport(fake)).test_connection()
    assert not ok
    assert "rejected the API key" in message
    assert "ak_test_nope" not in message


def test_key_is_registered_with_the_secret_masker(coverbase_conn: None, fake: FakeCoverbaseAPI) -> None:
    from airflow.sdk.log import redact

    CoverbaseHook(transport=httpx.MockTransport(fake)).get_client()
    assert redact(f"key={API_KEY}") == "key=***"


def test_uri_form_of_the_connection(monkeypatch: pytest.MonkeyPatch, fake: FakeCoverbaseAPI) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_COVERBASE_DEFAULT", f"coverbase://:{API_KEY}@api.coverbase.test?timeout=12&max_retries=1"
    )
    hook = CoverbaseHook(transport=httpx.MockTransport(fake))
    settings = hook.get_settings()
    assert settings.client.base_url == "https://api.coverbase.test"
    assert settings.client.timeout == 12
    assert settings.client.retry.max_attempts == 2
    assert hook.check_auth() == "Auth successful"
    hook.close()


def test_webhook_settings_need_no_api_key_and_hide_the_secret() -> None:
    from airflow_provider_coverbase.hooks.coverbase import webhook_settings_from_connection

    settings = webhook_settings_from_connection("c", {"webhook_secret": "whsec_hidden_0123456789"})
    assert settings.secret == "whsec_hidden_0123456789"
    assert settings.timestamp_tolerance == 300
    assert "whsec_hidden" not in repr(settings)
    assert webhook_settings_from_connection("c", None).secret is None
    assert webhook_settings_from_connection("c", '{"webhook_secret": ""}').secret is None
    assert webhook_settings_from_connection("c", {"webhook_timestamp_tolerance": 60}).timestamp_tolerance == 60


def test_webhook_settings_check_the_extras() -> None:
    from airflow_provider_coverbase.hooks.coverbase import webhook_settings_from_connection

    with pytest.raises(CoverbaseConfigError, match="webhook_timestamp_tolerance"):
        webhook_settings_from_connection("c", {"webhook_timestamp_tolerance": 0})
    with pytest.raises(CoverbaseConfigError, match="webhook_secert"):
        webhook_settings_from_connection("c", {"webhook_secert": "typo"})
