"""How fast the "Coverbase" page's API answers with 10,000 recorded runs: p50/p95 per page, side by side.

A real Airflow API app (``airflow.api_fastapi.app.create_app``, the simple auth manager, a JWT per
request) on a throwaway SQLite metadata database holding ``--runs`` XCom records as tasks push them
(spread over 20 DAGs, 3 workflows; one run in 20 still going on a connection that does not
exist here, so the rows on screen try one live read each and the failure is cached for the TTL, as
in a real page view; the rest finished) and ``--webhook-runs``
runs known only from webhooks. Each page is asked ``--repeats`` times through FastAPI's TestClient
(in process: the figures are the API's own time, with authentication, authorization, the database
and JSON, without a network); wall time per request, p50 and p95.

Two ways, in one process run:

- ``cached`` (what ships): records are parsed once per process and kept by XCom row and timestamp;
  a page reads the XCom keys and timestamps and parses only what changed;
- ``reparse`` (the alternative): the record cache is emptied before each request, so every page
  parses every record again, as an implementation without the cache would.

Pages: the first page, a deep page (offset 5,000), a status filter, a DAG filter and the "no
progress for more than 24 h" filter, 25 rows each. Target: p95 under 300 ms per page.

    .venv/bin/python benchmarks/ui_api.py [--runs 10000] [--repeats 40] [--ways cached,reparse]

CI runs ``make bench-ui`` (``--repeats 10 --ways cached``): it prints the figures and fails only
when a page does not answer; timing is not asserted (a shared CI machine is no stopwatch).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
HOME = tempfile.mkdtemp(prefix="coverbase-ui-bench-")
os.environ.update(
    {
        "AIRFLOW_HOME": HOME,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
)

PAGES = {
    "first page": "",
    "offset 5,000": "&offset=5000",
    "status=failed": "&status=failed",
    "dag_id=dag_07": "&dag_id=dag_07",
    "no progress > 24 h": "&stale_only=true&stale_hours=24",
}


def record(number: int, now: float) -> dict[str, Any]:
    # One run in 20 still going (its last progress a day or more ago: flagged), the rest finished.
    status = "running" if number % 20 == 0 else ("completed", "failed", "cancelled")[number % 3]
    started = now - 60 * number
    return {
        "v": 1,
        "conn_id": f"coverbase_{number % 2}",
        "url": f"https://dash.example/runs/cbwfr_{number:06d}",
        "origin": "created" if number % 5 else "reattached",
        "try_number": 1 + number % 2,
        "idempotency_key": f"airflow:dag:task:{number:032x}",
        "workflow_run_id": f"cbwfr_{number:06d}",
        "workflow_name": ("quarterly-privacy-sweep", "vendor-onboarding", "adhoc-campaign")[number % 3],
        "status": status,
        "api_status": status,
        "started_at": started,
        "completed_at": started + 3000,
        "checkpoints": [
            {"name": name, "at": started + 600 * (i + 1), "source": "first_seen"}
            for i, name in enumerate(("vendors_selected", "questionnaires_dispatched", "responses_aggregated"))
        ],
        "current_step": None,
        "failed_step": None,
        "failure_reason": "Questionnaire template not found." if status == "failed" else None,
        "last_poll_at": started + 3000,
        "next_poll_at": None,
        "poll_interval": 30.0,
        "max_poll_interval": 1800.0,
        "output": {"vendors_processed": number % 50},
        "output_truncated": False,
    }


def fill(runs: int, webhook_runs: int) -> None:
    import sqlalchemy as sa
    from airflow import settings
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.xcom import XComModel
    from airflow.utils import db
    from airflow.utils.session import create_session

    from airflow_provider_coverbase.monitoring import XCOM_KEY
    from airflow_provider_coverbase.plugins import webhook_dedupe

    db.resetdb()
    with create_session() as session:
        session.add(DagBundleModel(name="dags-folder"))
        session.flush()
        for n in range(20):
            session.add(DagModel(dag_id=f"dag_{n:02d}", bundle_name="dags-folder"))
    now = time.time()
    assert settings.engine is not None
    with settings.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # records without task instances
        rows = [
            {
                "dag_run_id": number,
                "task_id": "sweep",
                "map_index": -1,
                "key": XCOM_KEY,
                "dag_id": f"dag_{number % 20:02d}",
                "run_id": f"scheduled__{number}",
                "value": json.dumps(record(number, now)),
                "timestamp": datetime.now(UTC),
            }
            for number in range(runs)
        ]
        connection.execute(sa.insert(XComModel.__table__), rows)
        connection.commit()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
    webhook_dedupe.ensure_table()
    with settings.engine.begin() as connection:
        connection.execute(
            webhook_dedupe.dedupe_table.insert(),
            [
                {
                    "conn_id": "coverbase_0",
                    "event_id": f"cbevt_{n}",
                    "event_type": "workflow.completed",
                    "workflow_run_id": f"cbwfr_dash_{n}",
                    "asset_uri": "coverbase://x",
                    "asset_event_id": None,
                    "received_at": int(now - n),
                }
                for n in range(webhook_runs)
            ],
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--webhook-runs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument(
        "--ways", default="cached,reparse", help="comma-separated: cached (what ships), reparse (the alternative)"
    )
    args = parser.parse_args(argv)

    from airflow import plugins_manager
    from airflow.api_fastapi import app as app_module
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from airflow_provider_coverbase.plugins import ui_records
    from airflow_provider_coverbase.plugins.ui import CoverbaseUIPlugin

    fill(args.runs, args.webhook_runs)
    plugins, _ = plugins_manager._get_plugins()
    plugins.append(CoverbaseUIPlugin())  # as the entry point does in an installed wheel
    plugins_manager.get_fastapi_plugins.cache_clear()
    app = app_module.create_app()
    jwt = app_module.get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="viewer", role="viewer"))
    headers = {"Authorization": f"Bearer {jwt}"}

    results: dict[tuple[str, str], list[float]] = {}
    with TestClient(app) as client:
        first = client.get("/coverbase-ui/api/runs?limit=25", headers=headers)
        assert first.status_code == 200, first.text
        assert first.json()["total"] == args.runs + args.webhook_runs, first.json()["total"]
        for _ in range(args.repeats):
            for way in args.ways.split(","):
                for name, query in PAGES.items():
                    if way == "reparse":
                        ui_records.cache = ui_records.RecordCache()
                    start = time.perf_counter()
                    answer = client.get(f"/coverbase-ui/api/runs?limit=25{query}", headers=headers)
                    elapsed = time.perf_counter() - start
                    assert answer.status_code == 200, (name, answer.text[:200])
                    assert answer.json()["runs"], (name, answer.text[:200])
                    results.setdefault((way, name), []).append(elapsed * 1000)

    print(f"Coverbase page API, {args.runs:,} recorded runs + {args.webhook_runs} webhook-only, 25 rows per page,")
    print(f"{args.repeats} requests per page and way (ms, wall time in process, with auth):")
    ways = args.ways.split(",")
    print(f"{'page':<22}" + "".join(f"{way + ' p50':>14}{way + ' p95':>14}" for way in ways))
    for name in PAGES:
        figures = [(statistics.median(results[(w, name)]), percentile(results[(w, name)], 0.95)) for w in ways]
        print(f"{name:<22}" + "".join(f"{p50:>14.0f}{p95:>14.0f}" for p50, p95 in figures))
    if "cached" in ways:
        worst = max(percentile(results[("cached", name)], 0.95) for name in PAGES)
        print(f"worst cached p95: {worst:.0f} ms (target: under 300 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
