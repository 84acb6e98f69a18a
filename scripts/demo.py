"""``make demo``: run the quarterly vendor sweep DAG for real, against the local Coverbase emulator.

Starts the emulator on a free loopback port, makes a throwaway AIRFLOW_HOME, migrates its database,
runs ``airflow dags test coverbase_quarterly_vendor_sweep`` (deferrable: the trigger runs in line),
prints what the Coverbase run reached and its output, stops the emulator, and exits with the DAG
run's result (0 on success). The full Airflow log is kept in ``.demo/airflow-dags-test.log``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DAG_ID = "coverbase_quarterly_vendor_sweep"
LOGICAL_DATE = "2026-10-01"
# Lines of the Airflow log that tell the story of the Coverbase run.
STORY = re.compile(r"Coverbase run|Checkpoint reached|Step (success|failed|skipped)|Polling Coverbase|Retrying in")


def start_emulator() -> tuple[subprocess.Popen[str], str, str]:
    """Start ``coverbase-emulator`` on a free port; return the process, base URL and connection value."""
    from airflow_provider_coverbase.testing.process import start_emulator_process

    try:
        emulator = start_emulator_process(["--speed", "4"], python=str(BIN / "python"), stderr=subprocess.STDOUT)
    except RuntimeError:
        raise SystemExit("the Coverbase emulator did not start") from None
    return emulator.process, emulator.base_url, emulator.connection


def show_run(base_url: str, api_key: str) -> None:
    """Print the sweep's run as the emulator has it, read with the provider's own client.

    The run is found through the emulator's admin API: the legacy contract has no list endpoint.
    """
    import httpx

    from airflow_provider_coverbase.client import CoverbaseClient

    runs = httpx.get(f"{base_url}/_emulator/runs", timeout=10).json()["data"]
    sweeps = [r["workflow_run_id"] for r in runs if r.get("workflow_name") == "quarterly-privacy-sweep"]
    if not sweeps:
        print("No Coverbase run was started.")
        return
    with CoverbaseClient(api_key, base_url=base_url) as client:
        run = client.get_workflow_run(sweeps[-1])
    print()
    print(f"Coverbase run {run.workflow_run_id} ({run.workflow_name}): {run.status.value}")
    for number, name in enumerate(run.checkpoints, start=1):
        print(f"  checkpoint {number}: {name}")
    print(f"  output: {json.dumps(run.output, indent=2)}")


def main() -> int:
    demo_dir = REPO / ".demo"
    demo_dir.mkdir(exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="airflow-home-", dir=demo_dir))
    log_path = demo_dir / "airflow-dags-test.log"
    emulator, base_url, conn = start_emulator()
    api_key = json.loads(conn)["password"]
    print(f"Coverbase emulator: {base_url}")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
        "AIRFLOW_CONN_COVERBASE_DEFAULT": conn,
        "COVERBASE_POLL_INTERVAL": "1",
    }
    try:
        print(f"Airflow home (throwaway): {home}")
        migrate = subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True, check=False
        )
        if migrate.returncode != 0:
            print(migrate.stdout[-3000:], migrate.stderr[-3000:], sep="\n")
            return migrate.returncode
        print(f"Running: airflow dags test {DAG_ID} {LOGICAL_DATE}  (full log: {log_path})")
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [str(BIN / "airflow"), "dags", "test", DAG_ID, LOGICAL_DATE],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                if STORY.search(line):
                    message = re.sub(r"^\S+\s+\[\w+\s*\]\s+", "", line.rstrip())
                    print("  " + re.sub(r"\s+\[[\w.]+\]\s+loc=\S+$", "", message))
            result = process.wait()
        show_run(base_url, api_key)
        print()
        print("DAG run succeeded." if result == 0 else f"DAG run FAILED (exit {result}); see {log_path}")
        return result
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
