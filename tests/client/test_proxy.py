"""Proxies from the environment, through the shared async client (what triggers use), with a real proxy.

``HTTPS_PROXY`` names a ``CONNECT`` proxy on loopback; the API is a TLS server on loopback whose
certificate the process trusts. ``NO_PROXY`` sends the same requests around it.
"""

from __future__ import annotations

import asyncio
import ssl

import pytest

from airflow_provider_coverbase.client import ClientConfig, RetryPolicy, SharedClients
from tests.client.scripted import (
    Record,
    answer,
    connect_proxy,
    proxy_environment,
    read_request,
    run_body,
    scripted,
    tls_fixture,  # noqa: F401  # the `tls` fixture
)
from tests.fake_api import API_KEY


async def api_script(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: Record) -> None:
    while head := (await read_request(reader, record))[0]:
        run_id = head.split(" ", 2)[1].rsplit("/", 1)[1]
        writer.write(answer(body=run_body(run_id)))
        await writer.drain()


async def poll_through_shared_client(base_url: str, polls: int) -> list[str]:
    registry = SharedClients()  # the default transport factory, as in the triggerer
    config = ClientConfig(api_key=API_KEY, base_url=base_url, retry=RetryPolicy(max_attempts=1))
    client = registry.acquire("coverbase_default", config)
    try:
        return [(await client.get_workflow_run(f"cbwr_{n}")).workflow_run_id for n in range(polls)]
    finally:
        await registry.release(client)


async def test_polls_go_through_the_proxy_named_by_https_proxy(
    tls: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with scripted(api_script, tls=tls) as (api_url, api), connect_proxy() as (proxy_url, proxy):
        proxy_environment(monkeypatch, HTTPS_PROXY=proxy_url)
        assert await poll_through_shared_client(api_url, 3) == ["cbwr_0", "cbwr_1", "cbwr_2"]
    target = api_url.removeprefix("https://")
    assert proxy.heads and all(head.startswith(f"CONNECT {target} HTTP/1.1") for head in proxy.heads)
    assert len(api.heads) == 3  # the three polls reached the API, through the tunnel (TLS end to end)


async def test_no_proxy_sends_around_the_proxy(tls: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch) -> None:
    async with scripted(api_script, tls=tls) as (api_url, api), connect_proxy() as (proxy_url, proxy):
        proxy_environment(monkeypatch, HTTPS_PROXY=proxy_url, NO_PROXY="localhost,127.0.0.1")
        assert await poll_through_shared_client(api_url, 2) == ["cbwr_0", "cbwr_1"]
    assert proxy.heads == []
    assert len(api.heads) == 2


async def test_a_proxy_that_refuses_the_tunnel_is_a_connection_error(
    tls: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_coverbase.exceptions import CoverbaseConnectionError

    async def refusing(number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: Record) -> None:
        await read_request(reader, record)
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with scripted(api_script, tls=tls) as (api_url, api), scripted(refusing) as (proxy_url, _):
        proxy_environment(monkeypatch, HTTPS_PROXY=proxy_url)
        with pytest.raises(CoverbaseConnectionError, match="ProxyError"):
            await poll_through_shared_client(api_url, 1)
    assert api.heads == []
