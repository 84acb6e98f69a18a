"""The connection list's "Test" button, against a real ``airflow api-server`` and the emulator.

Airflow 3.3.2's UI posts the stored connection back to ``POST /api/v2/connections/test`` with
``"port": Number(connection.port)`` (``0`` for a connection without a port) and the masked password
``"***"``. Without the provider's plugin the API answers 400 ("The host or port to test differs from
the stored connection"); with it, the request reaches ``CoverbaseHook.test_connection``. The request
bodies here are built the way the UI builds them (``ui_test_body``), from what the API lists.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_coverbase.plugins.connection_test import ConnectionTestPortMiddleware, drop_unaddressed_port
from airflow_provider_coverbase.testing import CoverbaseEmulator
from tests.ports import free_port

pytestmark = pytest.mark.integration

AIRFLOW = Path(sys.executable).with_name("airflow")


class ApiServer:
    """A real ``airflow api-server`` on a free loopback port, logged in as admin."""

    def __init__(self, base_url: str, token: str) -> None:
        self.client = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def create(self, **connection: Any) -> None:
        response = self.client.post("/api/v2/connections", json=connection)
        assert response.status_code == 201, response.text

    def listed(self, connection_id: str) -> dict[str, Any]:
        response = self.client.get("/api/v2/connections", params={"connection_id_pattern": connection_id})
        assert response.status_code == 200, response.text
        (conn,) = [c for c in response.json()["connections"] if c["connection_id"] == connection_id]
        return dict(conn)

    def test(self, body: dict[str, Any]) -> httpx.Response:
        return self.client.post("/api/v2/connections/test", json=body)


def skip_without_destination_check() -> None:
    """Airflow 3.2 has no "host or port differs" check (nor its port-0 bug): nothing to keep there."""
    from airflow.api_fastapi.core_api.routes.public import connections

    if not hasattr(connections, "_same_endpoint"):
        pytest.skip("this Airflow does not compare the tested host/port with the stored ones")


def ui_test_body(conn: dict[str, Any]) -> dict[str, Any]:
    """The body the connection list's Test button posts (Airflow 3.3.2 UI, ``ConnectionsTable``)."""
    return {
        "conn_type": conn["conn_type"],
        "connection_id": conn["connection_id"],
        "description": conn.get("description") or "",
        "extra": conn.get("extra") or "{}",
        "host": conn.get("host") or "",
        "login": conn.get("login") or "",
        "password": conn.get("password") or "",
        "port": int(conn["port"] or 0),  # Number(null) is 0 in JavaScript
        "schema": conn.get("schema") or "",
    }


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    home = tmp_path_factory.mktemp("airflow-api-home")
    (home / "dags").mkdir()
    (home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps({"admin": "admin"}))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
    }
    migrate = subprocess.run(
        [str(AIRFLOW), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    log = (home / "api-server.log").open("w")
    server = subprocess.Popen(
        [str(AIRFLOW), "api-server", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (home / "api-server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base_url}/api/v2/version", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "airflow api-server did not start in 120 s"
            time.sleep(0.5)
        token = httpx.post(f"{base_url}/auth/token", json={"username": "admin", "password": "admin"}, timeout=30)
        assert token.status_code in (200, 201), token.text
        yield ApiServer(base_url, token.json()["access_token"])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture(scope="module")
def emulator() -> Iterator[CoverbaseEmulator]:
    with CoverbaseEmulator() as emu:
        yield emu


@pytest.mark.e2e
def test_test_button_reaches_test_connection(api_server: ApiServer, emulator: CoverbaseEmulator) -> None:
    # Saved the way the connection form saves it: the port field is hidden, so no port.
    api_server.create(
        connection_id="coverbase_ui", conn_type="coverbase", host=emulator.base_url, password=emulator.api_key
    )
    listed = api_server.listed("coverbase_ui")
    assert listed["port"] is None
    body = ui_test_body(listed)
    assert body["port"] == 0
    assert body["password"] != emulator.api_key  # the UI only has the masked value

    response = api_server.test(body)

    assert response.status_code == 200, response.text
    assert response.json() == {"status": True, "message": f"Connected to {emulator.base_url}: Auth successful"}


@pytest.mark.e2e
def test_test_button_reports_a_rejected_key(api_server: ApiServer, emulator: CoverbaseEmulator) -> None:
    api_server.create(
        connection_id="coverbase_bad_key", conn_type="coverbase", host=emulator.base_url, password="ak_test_wrong"
    )
    response = api_server.test(ui_test_body(api_server.listed("coverbase_bad_key")))

    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] is False
    assert "rejected the API key" in result["message"]
    assert "ak_test_wrong" not in result["message"]


@pytest.mark.e2e
def test_test_button_refuses_a_short_webhook_secret(api_server: ApiServer, emulator: CoverbaseEmulator) -> None:
    # Issue 15, item 8: a one-character webhook_secret was accepted.
    api_server.create(
        connection_id="coverbase_short_secret",
        conn_type="coverbase",
        host=emulator.base_url,
        password=emulator.api_key,
        extra=json.dumps({"webhook_secret": "abc"}),
    )
    response = api_server.test(ui_test_body(api_server.listed("coverbase_short_secret")))

    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] is False
    assert "must be at least 16 characters (this one has 3;" in result["message"]
    assert "abc" not in result["message"].replace("coverbase", "")


@pytest.mark.e2e
def test_a_different_host_still_needs_its_own_credentials(api_server: ApiServer, emulator: CoverbaseEmulator) -> None:
    """The plugin removes only ``port: 0``; Airflow's check of the destination stays."""
    skip_without_destination_check()
    api_server.create(
        connection_id="coverbase_moved", conn_type="coverbase", host=emulator.base_url, password=emulator.api_key
    )
    body = ui_test_body(api_server.listed("coverbase_moved")) | {"host": "http://127.0.0.2:9"}

    response = api_server.test(body)

    assert response.status_code == 400
    assert "differs from the stored connection" in response.text


@pytest.mark.e2e
def test_other_connection_types_are_left_alone(api_server: ApiServer) -> None:
    skip_without_destination_check()
    api_server.create(connection_id="generic_no_port", conn_type="generic", host="example.invalid", password="pw")

    response = api_server.test(ui_test_body(api_server.listed("generic_no_port")))

    assert response.status_code == 400  # Airflow 3.3.2's own behaviour, unchanged by our plugin
    assert "differs from the stored connection" in response.text


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"conn_type": "coverbase", "connection_id": "c", "port": 0}, {"conn_type": "coverbase", "connection_id": "c"}),
        ({"conn_type": "coverbase", "connection_id": "c", "port": 8900}, None),
        ({"conn_type": "coverbase", "connection_id": "c"}, None),
        ({"conn_type": "coverbase", "connection_id": "c", "port": False}, None),
        ({"conn_type": "http", "connection_id": "c", "port": 0}, None),
        ([{"conn_type": "coverbase", "port": 0}], None),
    ],
)
def test_drop_unaddressed_port(body: Any, expected: dict[str, Any] | None) -> None:
    fixed = drop_unaddressed_port(json.dumps(body).encode())
    assert (None if fixed is None else json.loads(fixed)) == expected


def test_drop_unaddressed_port_leaves_invalid_json_alone() -> None:
    assert drop_unaddressed_port(b"{not json") is None


async def test_middleware_replays_a_chunked_body_with_a_new_length() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["headers"] = dict(scope["headers"])
        seen["body"] = (await receive())["body"]

    chunks = [b'{"conn_type": "coverbase", ', b'"connection_id": "c", "port": 0}']
    messages = iter({"type": "http.request", "body": c, "more_body": i == 0} for i, c in enumerate(chunks))

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: Any) -> None:
        raise AssertionError("the app answers, not the middleware")

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v2/connections/test",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"61")],
    }
    await ConnectionTestPortMiddleware(app)(scope, receive, send)

    assert json.loads(seen["body"]) == {"conn_type": "coverbase", "connection_id": "c"}
    assert seen["headers"][b"content-length"] == str(len(seen["body"])).encode()
