"""The kinds of trigger measured side by side (ours and the peers), with their connections and kwargs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

BENCH_API_KEY = "ak_bench_0123456789abcdef0123456789abcdef"


CHECK_MODULE = "triggerer_scale_check"


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    classpath: str
    conn_id: str
    always_tls: bool = False

    def connection(self, port: int, tls: bool, ours_extra: dict[str, Any]) -> dict[str, Any]:
        scheme = "https" if tls or self.always_tls else "http"
        if self.name == "ours":
            return {
                "conn_type": "coverbase",
                "host": f"{scheme}://127.0.0.1:{port}",
                "password": BENCH_API_KEY,
                "extra": ours_extra,
            }
        if self.name.startswith("http-"):
            return {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": port,
                "schema": scheme,
                "login": "bench",
                "password": "bench-secret",
            }
        if self.name == "dbt":
            # The dbt hook builds https://{host}/api/...: the host carries the port.
            return {"conn_type": "dbt_cloud", "host": f"127.0.0.1:{port}", "login": "1", "password": "dbt-token"}
        return {"conn_type": "databricks", "host": "127.0.0.1", "port": port, "schema": scheme, "password": "dapi-x"}

    def kwargs(self, index: int, poll: float, ours_kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.name == "ours":
            return {
                "workflow_run_id": f"cbwfr_{index:08d}",
                "coverbase_conn_id": self.conn_id,
                "poll_interval": poll,
                **ours_kwargs,
            }
        if self.name == "http-sensor":
            return {
                "endpoint": f"sensor/{index}",
                "http_conn_id": self.conn_id,
                "method": "GET",
                "poke_interval": poll,
            }
        if self.name == "http-event":
            return {
                "response_check_path": f"{CHECK_MODULE}.ready",
                "http_conn_id": self.conn_id,
                "auth_type": "aiohttp.BasicAuth",  # its default (None) cannot send the connection's login
                "method": "GET",
                "endpoint": f"event/{index}",
                "poll_interval": poll,
            }
        if self.name == "dbt":
            return {
                "conn_id": self.conn_id,
                "run_id": index,
                "end_time": time.time() + 7 * 86400,
                "poll_interval": poll,
                "account_id": 1,
            }
        return {"run_id": index, "databricks_conn_id": self.conn_id, "polling_period_seconds": poll}


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "ours",
            "CoverbaseWorkflowRunTrigger (ours)",
            "airflow_provider_coverbase.triggers.coverbase.CoverbaseWorkflowRunTrigger",
            "coverbase_bench",
        ),
        Kind(
            "http-sensor", "HttpSensorTrigger", "airflow.providers.http.triggers.http.HttpSensorTrigger", "http_bench"
        ),
        Kind("http-event", "HttpEventTrigger", "airflow.providers.http.triggers.http.HttpEventTrigger", "http_bench"),
        Kind(
            "dbt",
            "DbtCloudRunJobTrigger",
            "airflow.providers.dbt.cloud.triggers.dbt.DbtCloudRunJobTrigger",
            "dbt_bench",
            always_tls=True,
        ),
        Kind(
            "databricks",
            "DatabricksExecutionTrigger",
            "airflow.providers.databricks.triggers.databricks.DatabricksExecutionTrigger",
            "databricks_bench",
        ),
    )
}
