"""A deferred trigger's polls go through the proxy ``HTTPS_PROXY`` names, or around it per ``NO_PROXY``.

The trigger runs as in the triggerer (the process's shared client, its default transport); the API
is the emulator behind a TLS front on loopback (a certificate the process trusts), the proxy a real
``CONNECT`` proxy on loopback.
"""

from __future__ import annotations

import json
import ssl
import time

import pytest

from airflow_provider_coverbase.client import CoverbaseClient
from airflow_provider_coverbase.testing import CoverbaseEmulator
from airflow_provider_coverbase.triggers.coverbase import CoverbaseWorkflowRunTrigger, WorkflowRunEvent
from tests.client.scripted import (
    connect_proxy,
    proxy_environment,
    relaying_to,
    scripted,
    tls_fixture,  # noqa: F401  # the `tls` fixture
)


async def run_trigger_behind_tls(
    emulator: CoverbaseEmulator, tls: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch, **proxy_variables: str
) -> tuple[WorkflowRunEvent, int]:
    """Start a run, then wait for it with the trigger over ``https://``; the event and the TLS connections."""
    with CoverbaseClient(emulator.api_key, base_url=emulator.base_url, allow_insecure_http=True) as client:
        run_id = client.run_workflow("adhoc-campaign", {}).workflow_run_id
    host, port = emulator.base_url.removeprefix("http://").rsplit(":", 1)
    async with scripted(relaying_to(host, int(port)), tls=tls) as (api_url, front):
        connection = {"conn_type": "coverbase", "host": api_url, "password": emulator.api_key, "extra": {}}
        monkeypatch.setenv("AIRFLOW_CONN_COVERBASE_DEFAULT", json.dumps(connection))
        proxy_environment(monkeypatch, **proxy_variables)
        trigger = CoverbaseWorkflowRunTrigger(run_id, poll_interval=0.02, deadline=time.time() + 30)
        events = [WorkflowRunEvent.model_validate(event.payload) async for event in trigger.run()]
    assert len(events) == 1
    return events[0], front.connections


async def test_a_deferred_triggers_polls_go_through_https_proxy(
    coverbase_emulator: CoverbaseEmulator, tls: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with connect_proxy() as (proxy_url, proxy):
        event, tls_connections = await run_trigger_behind_tls(
            coverbase_emulator, tls, monkeypatch, HTTPS_PROXY=proxy_url
        )
    assert event.status == "completed"
    assert proxy.heads, "the proxy tunnelled nothing"
    assert all(head.startswith("CONNECT 127.0.0.1:") for head in proxy.heads)
    assert len(proxy.heads) == tls_connections  # every connection to the API came through the proxy


async def test_no_proxy_lets_the_trigger_bypass_the_proxy(
    coverbase_emulator: CoverbaseEmulator, tls: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with connect_proxy() as (proxy_url, proxy):
        event, tls_connections = await run_trigger_behind_tls(
            coverbase_emulator, tls, monkeypatch, HTTPS_PROXY=proxy_url, NO_PROXY="127.0.0.1"
        )
    assert event.status == "completed"
    assert proxy.heads == []
    assert tls_connections >= 1
