"""The "Coverbase" views in the Airflow UI: a tab on every task instance and a page of all runs.

A separate plugin from the webhook receiver (``plugins/webhooks.py``): it mounts the views' JSON API
and the built React bundle (:mod:`airflow_provider_coverbase.plugins.ui_api`) at
``/coverbase-ui`` and registers two ``react_apps`` (Airflow >= 3.1): ``task_instance`` (the tab)
and ``nav`` (the page, under Browse). Both load the same bundle; the component shows the tab when
the UI passes it a task instance, the page otherwise. The bundle URL is built from ``[api]
base_url``'s path, so the views work behind a path prefix.
"""

from __future__ import annotations

from urllib.parse import urlparse

from airflow.configuration import conf
from airflow.plugins_manager import AirflowPlugin

from airflow_provider_coverbase.plugins.ui_api import URL_PREFIX, create_app

__all__ = ["CoverbaseUIPlugin", "bundle_url"]


def bundle_url() -> str:
    """The bundle's URL path, under ``[api] base_url``'s path."""
    base = conf.get("api", "base_url", fallback="/") or "/"
    path = urlparse(base).path if base.startswith(("http://", "https://")) else base
    return f"{path.rstrip('/')}{URL_PREFIX}/static/main.umd.cjs"


class CoverbaseUIPlugin(AirflowPlugin):
    """Mounts the Coverbase views' API at ``/coverbase-ui`` and adds the tab and the page."""

    name = "coverbase_ui"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Coverbase UI"}]
    react_apps = [
        {
            "name": "Coverbase",
            "bundle_url": bundle_url(),
            "destination": "task_instance",
            "url_route": "coverbase_run",
        },
        {
            "name": "Coverbase",
            "bundle_url": bundle_url(),
            "destination": "nav",
            "url_route": "coverbase",
            "category": "browse",
        },
    ]
