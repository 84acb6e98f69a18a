"""Provider registration: the dict passes Airflow's own schema and Airflow lists the provider."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_coverbase.get_provider_info import get_provider_info
from airflow_provider_coverbase.hooks.coverbase import CoverbaseHook


def test_provider_info_matches_airflow_schema() -> None:
    from airflow.providers_manager import _create_provider_info_schema_validator

    errors = [error.message for error in _create_provider_info_schema_validator().iter_errors(get_provider_info())]
    assert errors == []


def test_every_listed_module_and_class_imports() -> None:
    info = get_provider_info()
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info.get(section, []):
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for path in info.get("extra-links", []) + [c["hook-class-name"] for c in info["connection-types"]]:
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name)


def test_connection_type_matches_the_hook() -> None:
    (conn,) = get_provider_info()["connection-types"]
    assert conn["connection-type"] == CoverbaseHook.conn_type
    assert conn["ui-field-behaviour"]["relabeling"] == {"host": "Base URL", "password": "API key"}
    # Every form field is an extra the hook accepts.
    from airflow_provider_coverbase.connection import ConnectionExtras

    assert set(conn["conn-fields"]) == set(ConnectionExtras.model_fields)


def test_providers_manager_finds_the_provider() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    assert "airflow-provider-coverbase" in ProvidersManager().providers
    hook_info = ProvidersManagerTaskRuntime().hooks["coverbase"]
    assert hook_info is not None
    assert hook_info.hook_class_name == "airflow_provider_coverbase.hooks.coverbase.CoverbaseHook"


@pytest.mark.e2e
def test_airflow_cli_lists_the_provider(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run(
        [str(airflow), "providers", "get", "airflow-provider-coverbase"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "airflow-provider-coverbase" in result.stdout


def test_webhook_secret_is_redacted_by_the_api_and_rendered_as_a_password() -> None:
    from airflow.api_fastapi.core_api.datamodels.connections import ConnectionResponse

    (conn,) = get_provider_info()["connection-types"]
    assert conn["conn-fields"]["webhook_secret"]["schema"]["format"] == "password"
    secret = "whsec_must_not_leak_0123456789"
    extra = ConnectionResponse.redact_extra(json.dumps({"webhook_secret": secret, "timeout": 30}))
    assert extra is not None
    assert json.loads(extra) == {"webhook_secret": "***", "timeout": 30}


def test_the_form_asks_for_a_webhook_secret_of_at_least_16_characters() -> None:
    # Issue 15, item 8: the form accepted a one-character secret without a word.
    (conn,) = get_provider_info()["connection-types"]
    field = conn["conn-fields"]["webhook_secret"]
    assert field["schema"]["minLength"] == 16
    assert "at least 16 characters" in field["description"]
    assert conn["conn-fields"]["webhook_timestamp_tolerance"]["schema"]["maximum"] == 7 * 86400


def test_the_receiver_plugin_is_registered_by_entry_point() -> None:
    from importlib.metadata import entry_points

    from airflow_provider_coverbase.plugins.webhook_receiver import CoverbaseWebhookPlugin

    (entry,) = [e for e in entry_points(group="airflow.plugins") if e.name == "coverbase"]
    assert entry.load() is CoverbaseWebhookPlugin
    (app,) = CoverbaseWebhookPlugin.fastapi_apps
    assert app["url_prefix"] == "/coverbase"
    assert "plugins" not in get_provider_info()  # see get_provider_info.py: it would register it twice


@pytest.mark.e2e
def test_plugin_loads_without_import_errors_also_with_eager_provider_discovery(tmp_path: Path) -> None:
    code = (
        "from airflow import plugins_manager as pm; plugins, errors = pm._get_plugins(); "
        "print(sorted(p.name for p in plugins if p.name == 'coverbase'), errors)"
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS": "False"}
    # cwd outside the checkout: ``python -c`` puts the cwd on sys.path, and the checkout's
    # *.egg-info of the editable install would list the entry point a second time.
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "['coverbase'] {}"


def test_form_fields_show_the_client_defaults_without_storing_them() -> None:
    """No schema ``default`` (the form would store it); the description names the client's default."""
    from airflow_provider_coverbase.client import ClientConfig
    from airflow_provider_coverbase.hooks.coverbase import settings_from_connection

    (conn,) = get_provider_info()["connection-types"]
    fields = conn["conn-fields"]
    assert all("default" not in field["schema"] for field in fields.values())
    # What an empty form means is what the client does without the setting.
    client = ClientConfig(api_key="ak_test_1")
    settings = settings_from_connection("c", host=None, port=None, password="ak_test_1", extra=None)
    assert fields["timeout"]["description"].endswith(f"Empty: {client.timeout:g}.")
    assert fields["connect_timeout"]["description"].endswith(f"Empty: {client.connect_timeout:g}.")
    assert fields["max_retries"]["description"].endswith(f"Empty: {client.retry.max_attempts - 1}.")
    assert fields["retry_initial_delay"]["description"].endswith(f"Empty: {client.retry.initial_delay:g}.")
    assert fields["retry_max_delay"]["description"].endswith(f"Empty: {client.retry.max_delay:g}.")
    assert fields["dashboard_url"]["description"].endswith(f"Empty: {settings.dashboard_url}.")
    assert fields["dashboard_run_path"]["description"].endswith(f"Empty: {settings.dashboard_run_path}.")
    assert settings.client.retry == client.retry
    assert conn["ui-field-behaviour"]["placeholders"]["host"] == client.base_url


def test_airflow_form_metadata_prefills_nothing() -> None:
    """What Airflow's UI receives (``/ui/connections/hook_meta``): every extra field starts empty."""
    from airflow.providers_manager import ProvidersManager

    widgets = {
        name: widget
        for name, widget in ProvidersManager().connection_form_widgets.items()
        if name.startswith("extra__coverbase__")
    }
    assert len(widgets) == len(get_provider_info()["connection-types"][0]["conn-fields"])
    assert {name: widget.field["value"] for name, widget in widgets.items()} == dict.fromkeys(widgets)


def test_the_pull_path_settings_are_registered_with_their_defaults() -> None:
    from airflow_provider_coverbase.defaults import DEFAULT_PULL_LOOKBACK, DEFAULT_PULL_POLL_INTERVAL

    options = get_provider_info()["config"]["coverbase"]["options"]
    assert {name: option["default"] for name, option in options.items()} == {
        "pull_connections": "",
        "pull_poll_interval": str(int(DEFAULT_PULL_POLL_INTERVAL)),
        "pull_lookback": "2592000",  # shown as seconds, not 2.592e+06
    }
    assert float(options["pull_lookback"]["default"]) == DEFAULT_PULL_LOOKBACK
