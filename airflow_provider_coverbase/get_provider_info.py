"""Provider metadata for Airflow's ``apache_airflow_provider`` entry point. A plain dict, cheap imports.

Connection form fields are declared here (``conn-fields``/``ui-field-behaviour``, Airflow >= 3.2),
so the UI never imports the hook. The extra fields have no schema ``default``: Airflow's form would
pre-fill it and then store it in every saved connection, so a default changed in a later release
would never reach them. Each field's description names the client's default instead (read from
:mod:`airflow_provider_coverbase.defaults`, which imports nothing), and an empty field stays out of
the connection.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_coverbase import __version__
from airflow_provider_coverbase.defaults import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DASHBOARD_RUN_PATH,
    DEFAULT_DASHBOARD_URL,
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_INITIAL_DELAY,
    DEFAULT_RETRY_MAX_DELAY,
    DEFAULT_TIMEOUT,
    DEFAULT_WEBHOOK_TIMESTAMP_TOLERANCE,
    MAX_WEBHOOK_TIMESTAMP_TOLERANCE,
    MIN_WEBHOOK_SECRET_LENGTH,
)

_MODULE = "airflow_provider_coverbase"


def _field(label: str, description: str, default: object, **schema: Any) -> dict[str, Any]:
    """One form field: no ``default`` in the schema; the description says what empty means."""
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    return {"label": label, "description": f"{description} Empty: {shown}.", "schema": schema}


def _conn_fields() -> dict[str, Any]:
    """The connection's extra fields, as Airflow's form renders them."""
    number: list[str] = ["number", "null"]
    return {
        "timeout": _field(
            "Read timeout (s)", "Seconds to wait for each API response.", DEFAULT_TIMEOUT, type=number, minimum=1
        ),
        "connect_timeout": _field(
            "Connect timeout (s)",
            "Seconds to wait for the connection to the API.",
            DEFAULT_CONNECT_TIMEOUT,
            type=number,
            minimum=1,
        ),
        "max_retries": _field(
            "Max retries",
            "Retries of one API call on connection errors, timeouts, 429 and 5xx.",
            DEFAULT_MAX_RETRIES,
            type=["integer", "null"],
            minimum=0,
            maximum=20,
        ),
        "retry_initial_delay": _field(
            "First retry delay (s)",
            "Backoff before the first retry; doubles on each retry, with jitter.",
            DEFAULT_RETRY_INITIAL_DELAY,
            type=number,
            minimum=0,
        ),
        "retry_max_delay": _field(
            "Longest retry delay (s)",
            "Upper bound of the exponential backoff between retries.",
            DEFAULT_RETRY_MAX_DELAY,
            type=number,
            minimum=0,
        ),
        "dashboard_url": _field(
            "Dashboard URL",
            "Base URL of the Coverbase dashboard, for the run link.",
            DEFAULT_DASHBOARD_URL,
            type=["string", "null"],
        ),
        "dashboard_run_path": _field(
            "Dashboard run path",
            "Path of a run's page under the dashboard URL.",
            DEFAULT_DASHBOARD_RUN_PATH,
            type=["string", "null"],
        ),
        "max_requests_per_second": _field(
            "Max requests per second",
            "Request budget of this connection per process (all its triggers together); "
            "a 429 pauses every user. 0: no limit.",
            DEFAULT_MAX_REQUESTS_PER_SECOND,
            type=number,
            minimum=0,
        ),
        "allow_insecure_http": _field(
            "Allow plain http",
            "Allow an http:// base URL that is not localhost (test setups only).",
            "off",
            type=["boolean", "null"],
        ),
        # A sensitive name ("secret"): Airflow masks it in logs and redacts it in the API, like the key.
        "webhook_secret": {
            "label": "Webhook signing secret",
            "description": "The secret registered with the Coverbase webhook, at least "
            f"{MIN_WEBHOOK_SECRET_LENGTH} characters; deliveries to /coverbase/webhooks/<conn id> "
            "are refused without it.",
            "schema": {"type": ["string", "null"], "format": "password", "minLength": MIN_WEBHOOK_SECRET_LENGTH},
        },
        "webhook_timestamp_tolerance": _field(
            "Webhook timestamp tolerance (s)",
            "How far a delivery's signed time may be from now, either way (at most 7 days).",
            DEFAULT_WEBHOOK_TIMESTAMP_TOLERANCE,
            type=number,
            minimum=1,
            maximum=MAX_WEBHOOK_TIMESTAMP_TOLERANCE,
        ),
    }


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
        # The webhook receiver plugin is registered ONLY through the ``airflow.plugins`` entry point
        # (pyproject.toml), which Airflow always loads. Not under "plugins" here: Airflow 3.3 reads that
        # key only with lazy_discover_providers=False, and then reports the second registration of the
        # same plugin as a plugin import error.
        # ``coverbase://<conn id>/workflows/<name>/...`` assets (see assets.py): checked on creation.
        "asset-uris": [{"schemes": ["coverbase"], "handler": f"{_MODULE}.assets.sanitize_uri"}],
        "connection-types": [
            {
                "connection-type": "coverbase",
                "hook-class-name": f"{_MODULE}.hooks.coverbase.CoverbaseHook",
                "hook-name": "Coverbase",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port", "extra"],
                    "relabeling": {"host": "Base URL", "password": "API key"},
                    "placeholders": {
                        "host": DEFAULT_BASE_URL,
                        "password": "ak_...",
                    },
                },
                "conn-fields": _conn_fields(),
            }
        ],
    }
