"""Provider metadata for Airflow's ``apache_airflow_provider`` entry point. A plain dict, cheap imports.

Connection form fields are declared here (``conn-fields``/``ui-field-behaviour``, Airflow >= 3.2),
so the UI never imports the hook. They are generated from the model of a connection's extras
(:mod:`airflow_provider_coverbase.connection`, which imports pydantic and plain values only, no
client and no Airflow); see there why the fields have no schema ``default``.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_coverbase import __version__
from airflow_provider_coverbase.connection import CONN_TYPE, conn_fields, ui_field_behaviour
from airflow_provider_coverbase.defaults import DEFAULT_PULL_LOOKBACK, DEFAULT_PULL_POLL_INTERVAL

_MODULE = "airflow_provider_coverbase"


def _option(kind: str, description: str, default: object, example: str | None = None) -> dict[str, Any]:
    """One ``[coverbase]`` configuration option, as Airflow's provider-info schema describes it."""
    shown = f"{default:.0f}" if isinstance(default, float) and default.is_integer() else str(default)
    return {"description": description, "version_added": None, "type": kind, "example": example, "default": shown}


def get_provider_info() -> dict[str, Any]:
    """Describe the provider: connection type and form, hook, operator, sensor, trigger, link."""
    return {
        "package-name": "airflow-provider-coverbase",
        "name": "Coverbase",
        "description": "Run and watch Coverbase workflows (vendor-risk automation) from Airflow.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Coverbase",
                "external-doc-url": "https://docs.coverbase.com/",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "Coverbase", "python-modules": [f"{_MODULE}.hooks.coverbase"]}],
        "operators": [{"integration-name": "Coverbase", "python-modules": [f"{_MODULE}.operators.coverbase"]}],
        "sensors": [{"integration-name": "Coverbase", "python-modules": [f"{_MODULE}.sensors.coverbase"]}],
        "triggers": [
            {
                "integration-name": "Coverbase",
                "python-modules": [f"{_MODULE}.triggers.coverbase", f"{_MODULE}.triggers.events"],
            }
        ],
        "extra-links": [f"{_MODULE}.links.coverbase.CoverbaseWorkflowRunLink"],
        "config": {
            "coverbase": {
                "description": "The pull path: which Coverbase connections' assets are watched by polling "
                "(read by the DAG processor when coverbase_workflow_asset() builds an asset).",
                "options": {
                    "pull_connections": _option(
                        "string",
                        "Connections whose completion and failure assets get a pull watcher (comma-separated). "
                        "Empty: none, webhooks only.",
                        "",
                        example="coverbase_default",
                    ),
                    "pull_poll_interval": _option(
                        "float", "Seconds between polls of a watched connection.", DEFAULT_PULL_POLL_INTERVAL
                    ),
                    "pull_lookback": _option(
                        "float", "Each poll lists the runs created within this many seconds.", DEFAULT_PULL_LOOKBACK
                    ),
                },
            }
        },
        # The webhook receiver plugin is registered ONLY through the ``airflow.plugins`` entry point
        # (pyproject.toml), which Airflow always loads. Not under "plugins" here: Airflow 3.3 reads that
        # key only with lazy_discover_providers=False, and then reports the second registration of the
        # same plugin as a plugin import error.
        # ``coverbase://<conn id>/workflows/<name>/...`` assets (see assets.py): checked on creation.
        "asset-uris": [{"schemes": ["coverbase"], "handler": f"{_MODULE}.assets.sanitize_uri"}],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": f"{_MODULE}.hooks.coverbase.CoverbaseHook",
                "hook-name": "Coverbase",
                "ui-field-behaviour": ui_field_behaviour(),
                "conn-fields": conn_fields(),
            }
        ],
    }
