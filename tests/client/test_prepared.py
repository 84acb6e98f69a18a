"""What a prepared request holds: GETs of one client share their headers and extensions, read-only.

A waiting trigger keeps its prepared GET for as long as the run lasts, thousands at once, so the parts
every GET of a client has alike are made once per client. These tests pin that the shared parts are
what httpx itself would have built, that nobody can change them through one request, and that
requests with a body are left as they were.
"""

from __future__ import annotations

import dataclasses
import json

import httpx
import pytest

from airflow_provider_coverbase.client import ClientConfig
from airflow_provider_coverbase.client._core import ClientCore
from airflow_provider_coverbase.models import WorkflowRun
from tests.fake_api import API_KEY


@pytest.fixture
def core() -> ClientCore:
    return ClientCore(ClientConfig(api_key=API_KEY, base_url="http://127.0.0.1:8900", timeout=12, connect_timeout=3))


def test_gets_share_headers_that_match_what_httpx_builds(core: ClientCore) -> None:
    first = core.get_workflow_run("cbwr_1").request
    second = core.get_workflow_run("cbwr_2").request
    assert first.headers is second.headers
    assert first.extensions is second.extensions
    assert str(second.url) == "http://127.0.0.1:8900/v1/workflows/runs/cbwr_2"
    # The same header list (Host first), body and timeout as a plain httpx.Request of the same call.
    plain = httpx.Request(
        "GET",
        "http://127.0.0.1:8900/v1/workflows/runs/cbwr_2",
        headers={"Authorization": f"Bearer {API_KEY}", "Accept": "application/json", "User-Agent": core._user_agent},
    )
    assert second.headers.raw == plain.headers.raw
    assert second.content == b"" == plain.content
    assert second.extensions == {"timeout": {"connect": 3, "read": 12, "write": 12, "pool": 12}}
    # The list endpoint's query stays on its own URL.
    listed = core.list_workflow_runs(limit=5).request
    assert listed.headers is first.headers
    assert listed.url.query == b"limit=5"


def test_requests_with_a_body_keep_their_own_headers(core: ClientCore) -> None:
    post = core.run_workflow("sweep", {"quarter": "2026-Q4"}, "key-1").request
    get = core.get_workflow_run("cbwr_1").request
    assert post.headers is not get.headers
    assert post.headers["Idempotency-Key"] == "key-1"
    assert post.headers["Content-Type"] == "application/json"
    assert post.headers["Content-Length"] == str(len(post.content))
    assert json.loads(post.content) == {"input": {"quarter": "2026-Q4"}}
    assert post.extensions is get.extensions


def test_the_get_parser_fills_the_run_id_of_a_legacy_body(core: ClientCore) -> None:
    call = core.get_workflow_run("cbwr_1")
    body = {"status": "running", "checkpoints_reached": []}
    run = call.parse(httpx.Response(200, json=body, request=call.request))
    assert isinstance(run, WorkflowRun)
    assert run.workflow_run_id == "cbwr_1"


def test_the_fingerprint_is_computed_once_and_follows_every_setting() -> None:
    config = ClientConfig(api_key=API_KEY)
    fingerprint = config.fingerprint()
    assert config.fingerprint() is fingerprint
    assert API_KEY not in fingerprint and API_KEY not in repr(config)
    assert config == ClientConfig(api_key=API_KEY)  # the cached digest is not part of equality
    rotated = dataclasses.replace(config, api_key=API_KEY + "x")
    assert rotated.fingerprint() != fingerprint
    assert dataclasses.replace(config, timeout=5).fingerprint() != fingerprint
    assert dataclasses.replace(config).fingerprint() == fingerprint
