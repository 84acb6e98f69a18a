"""``environment_proxy``: the proxy the environment names for a URL, as both clients pick it."""

from __future__ import annotations

import httpx
import pytest

from airflow_provider_coverbase.client._http import environment_proxy
from tests.client.scripted import proxy_environment


@pytest.mark.parametrize(
    ("variables", "url", "expected"),
    [
        ({}, "https://api.coverbase.app", None),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://api.coverbase.app", "http://proxy:3128"),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://127.0.0.1:8900", None),  # http:// needs HTTP_PROXY
        ({"HTTP_PROXY": "http://proxy:3128"}, "http://127.0.0.1:8900", "http://proxy:3128"),
        ({"ALL_PROXY": "http://proxy:3128"}, "https://api.coverbase.app", "http://proxy:3128"),
        ({"https_proxy": "http://lower:3128"}, "https://api.coverbase.app", "http://lower:3128"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "api.coverbase.app"}, "https://api.coverbase.app", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "coverbase.app"}, "https://api.coverbase.app", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".coverbase.app"}, "https://api.coverbase.app", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, "https://api.coverbase.app", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "127.0.0.1"}, "https://127.0.0.1:8443", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "other.example"}, "https://api.coverbase.app", "http://p:1"),
    ],
)
def test_environment_proxy(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], url: str, expected: str | None
) -> None:
    proxy_environment(monkeypatch, **variables)
    assert environment_proxy(httpx.URL(url)) == expected
