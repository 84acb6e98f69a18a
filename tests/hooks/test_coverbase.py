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
    from airflow_provider_coverbase.connection import ConnectionExtras

    with pytest.raises(CoverbaseConfigError) as caught:
        settings_from_connection("c", host=None, port=None, password="ak_test_1", extra={"colour": "blue"})
    message = caught.value.message
    assert message.startswith("connection 'c' has invalid extras: colour: unknown extra. Valid extras: ")
    assert message.removeprefix("connection 'c' has invalid extras: colour: unknown extra. Valid extras: ").split(
        ", "
    ) == sorted(ConnectionExtras.model_fields)


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


async def test_hook_starts_by_definition_id_sync_and_async(coverbase_conn: None) -> None:
    """Legacy contract: ``run_workflow_definition`` and its async twin post the id, and a key replays."""
    legacy = FakeCoverbaseAPI(dialect="legacy")
    definition = legacy.workflows["quarterly-privacy-sweep"]["id"]
    hook = CoverbaseHook(transport=httpx.MockTransport(legacy), async_transport=httpx.MockTransport(legacy))
    first = hook.run_workflow_definition(definition, {"quarter": "2026-Q4"}, idempotency_key="by-def")
    again = await hook.arun_workflow_definition(definition, {"quarter": "2026-Q4"}, idempotency_key="by-def")
    assert again.workflow_run_id == first.workflow_run_id
    assert again.replayed
    assert len(legacy.runs) == 1
    posts = [r for r in legacy.requests if r.method == "POST"]
    assert [r.url.raw_path for r in posts] == [b"/v1/workflows/runs"] * 2
    assert all(json.loads(r.content)["workflow_definition_id"] == definition for r in posts)
    hook.close()
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


def test_a_short_webhook_secret_is_refused_with_what_to_do(
    fake: FakeCoverbaseAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_coverbase.defaults import MIN_WEBHOOK_SECRET_LENGTH
    from airflow_provider_coverbase.hooks.coverbase import webhook_settings_from_connection

    # Issue 15, item 8: a one-character secret was accepted (and made forging a signature trivial).
    expected = r"webhook_secret: .*must be at least 16 characters \(this one has 1;"
    with pytest.raises(CoverbaseConfigError, match=expected) as caught:
        webhook_settings_from_connection("c", {"webhook_secret": "Z"})
    assert "'Z'" not in str(caught.value)
    secret = "s" * MIN_WEBHOOK_SECRET_LENGTH
    assert webhook_settings_from_connection("c", {"webhook_secret": secret}).secret == secret
    # The connection's Test button runs test_connection: it says the same.
    monkeypatch.setenv(
        "AIRFLOW_CONN_COVERBASE_DEFAULT",
        conn_json(host="https://api.coverbase.test", password=API_KEY, extra={"webhook_secret": "short_secret"}),
    )
    ok, message = CoverbaseHook(transport=httpx.MockTransport(fake)).test_connection()
    assert not ok
    assert "must be at least 16 characters (this one has 12;" in message
    assert "short_secret" not in message


def test_the_webhook_timestamp_tolerance_is_bounded() -> None:
    from airflow_provider_coverbase.hooks.coverbase import webhook_settings_from_connection

    with pytest.raises(CoverbaseConfigError, match="webhook_timestamp_tolerance: Input should be less than or equal"):
        webhook_settings_from_connection("c", {"webhook_timestamp_tolerance": 8 * 86400})
    assert webhook_settings_from_connection("c", {"webhook_timestamp_tolerance": 86400}).timestamp_tolerance == 86400


def test_settings_are_parsed_once_per_connection_content() -> None:
    """Thousands of triggers of one connection share one parsed settings object (and client config);
    a rotated key or a changed extra is parsed anew and gets another fingerprint."""
    extra = json.dumps({"max_retries": 2})
    fields: dict[str, Any] = {"host": "https://api.coverbase.test", "port": None, "extra": extra}
    first = settings_from_connection("memo_conn", password="ak_memo_1", **fields)
    again = settings_from_connection("memo_conn", password="ak_memo_1", **fields)
    assert again is first
    rotated = settings_from_connection("memo_conn", password="ak_memo_2", **fields)
    assert rotated is not first
    assert rotated.client.api_key == "ak_memo_2"
    assert rotated.client.fingerprint() != first.client.fingerprint()
    changed = settings_from_connection("memo_conn", password="ak_memo_1", **{**fields, "extra": '{"max_retries": 0}'})
    assert changed.client.retry.max_attempts == 1 and first.client.retry.max_attempts == 3
    # Another connection id with the same fields has settings of its own (its errors name it).
    assert settings_from_connection("memo_other", password="ak_memo_1", **fields) is not first
    # An extra given as a mapping (not as stored) is parsed every time, with the same result.
    mapped = settings_from_connection("memo_conn", password="ak_memo_1", **{**fields, "extra": {"max_retries": 2}})
    assert mapped == first and mapped is not first


def test_a_bad_connection_is_not_remembered() -> None:
    for _ in range(2):  # raises every time: nothing was cached
        with pytest.raises(CoverbaseConfigError, match="max_retries"):
            settings_from_connection(
                "memo_bad", host=None, port=None, password="ak_memo_1", extra='{"max_retries": -1}'
            )


async def test_a_rotated_key_reaches_new_async_users_without_a_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection is looked up by every new user; only its parsing is memoised."""
    from airflow_provider_coverbase.client import shared_clients

    monkeypatch.setenv(
        "AIRFLOW_CONN_COVERBASE_ROTATE", conn_json(host="https://api.coverbase.test", password="ak_old_1")
    )
    old = CoverbaseHook("coverbase_rotate")
    old_client = await old.get_async_client()
    monkeypatch.setenv(
        "AIRFLOW_CONN_COVERBASE_ROTATE", conn_json(host="https://api.coverbase.test", password="ak_new_2")
    )
    new = CoverbaseHook("coverbase_rotate")
    new_client = await new.get_async_client()
    assert new_client is not old_client
    assert new_client.config.api_key == "ak_new_2" and old_client.config.api_key == "ak_old_1"
    # A user that keeps only the client (a trigger) gets the same shared one and gives it back.
    kept = await CoverbaseHook("coverbase_rotate").get_async_client()
    assert kept is new_client  # same content: the same shared client
    assert shared_clients.users("coverbase_rotate", new_client.config) == 2
    await CoverbaseHook.release_async_client(kept)
    assert shared_clients.users("coverbase_rotate", new_client.config) == 1
    for hook in (old, new):
        await hook.aclose()
    assert shared_clients.users("coverbase_rotate", new_client.config) == 0
