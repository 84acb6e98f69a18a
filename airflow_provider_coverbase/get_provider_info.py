"""Provider metadata for Airflow's ``apache_airflow_provider`` entry point. A plain dict, no imports.

Connection form fields are declared here (``conn-fields``/``ui-field-behaviour``, Airflow >= 3.2),
so the UI never imports the hook.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_coverbase import __version__

_MODULE = "airflow_provider_coverbase"


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
        "triggers": [{"integration-name": "Coverbase", "python-modules": [f"{_MODULE}.triggers.coverbase"]}],
        "extra-links": [f"{_MODULE}.links.coverbase.CoverbaseWorkflowRunLink"],
        "connection-types": [
            {
                "connection-type": "coverbase",
                "hook-class-name": f"{_MODULE}.hooks.coverbase.CoverbaseHook",
                "hook-name": "Coverbase",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port", "extra"],
                    "relabeling": {"host": "Base URL", "password": "API key"},
                    "placeholders": {
                        "host": "https://api.coverbase.app",
                        "password": "ak_...",
                    },
                },
                "conn-fields": {
                    "timeout": {
                        "label": "Read timeout (s)",
                        "description": "Seconds to wait for each API response.",
                        "schema": {"type": ["number", "null"], "default": 30, "minimum": 1},
                    },
                    "connect_timeout": {
                        "label": "Connect timeout (s)",
                        "description": "Seconds to wait for the connection to the API.",
                        "schema": {"type": ["number", "null"], "default": 10, "minimum": 1},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": "Retries of one API call on connection errors, timeouts, 429 and 5xx.",
                        "schema": {"type": ["integer", "null"], "default": 3, "minimum": 0, "maximum": 20},
                    },
                    "retry_initial_delay": {
                        "label": "First retry delay (s)",
                        "description": "Backoff before the first retry; doubles on each retry, with jitter.",
                        "schema": {"type": ["number", "null"], "default": 0.5, "minimum": 0},
                    },
                    "retry_max_delay": {
                        "label": "Longest retry delay (s)",
                        "description": "Upper bound of the exponential backoff between retries.",
                        "schema": {"type": ["number", "null"], "default": 10, "minimum": 0},
                    },
                    "dashboard_url": {
                        "label": "Dashboard URL",
                        "description": "Base URL of the Coverbase dashboard, for the run link.",
                        "schema": {"type": ["string", "null"], "default": "https://dashboard.coverbase.app"},
                    },
                    "dashboard_run_path": {
                        "label": "Dashboard run path",
                        "description": "Path of a run's page under the dashboard URL.",
                        "schema": {
                            "type": ["string", "null"],
                            "default": "/workflows/runs/{workflow_run_id}",
                        },
                    },
                    "max_requests_per_second": {
                        "label": "Max requests per second",
                        "description": (
                            "Request budget of this connection per process (all its triggers together); "
                            "a 429 pauses every user. 0: no limit."
                        ),
                        "schema": {"type": ["number", "null"], "default": 25, "minimum": 0},
                    },
                    "allow_insecure_http": {
                        "label": "Allow plain http",
                        "description": "Allow an http:// base URL that is not localhost (test setups only).",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                },
            }
        ],
    }
