"""``make airflow``: ``airflow standalone`` plus the Coverbase emulator, to click around in the UI.

The emulator serves on 127.0.0.1:8900 (``COVERBASE_EMULATOR_PORT``), Airflow on 127.0.0.1:8080
(``AIRFLOW_PORT``), login admin/admin. Settings suit a 2-core machine (parallelism 4). The Airflow
home is ``.demo/airflow-ui-home`` and survives restarts; delete it for a clean slate. Ctrl-C stops both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def main() -> int:
    emulator_port = os.environ.get("COVERBASE_EMULATOR_PORT", "8900")
    airflow_port = os.environ.get("AIRFLOW_PORT", "8080")
    home = REPO / ".demo" / "airflow-ui-home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps({"admin": "admin"}))
    from airflow_provider_coverbase.testing.process import start_emulator_process

    try:
        started = start_emulator_process(
            ["--port", emulator_port, "--speed", "2"], python=str(BIN / "python"), echo=True
        )
    except RuntimeError:
        print("the Coverbase emulator did not start", file=sys.stderr)
        return 1
    emulator, conn = started.process, started.connection
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # standalone spawns `airflow ...`
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": airflow_port,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{airflow_port}/execution/",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW_CONN_COVERBASE_DEFAULT": conn,
        "COVERBASE_POLL_INTERVAL": os.environ.get("COVERBASE_POLL_INTERVAL", "5"),
    }
    print(f"Airflow UI: http://127.0.0.1:{airflow_port} (admin/admin); home {home}")
    airflow = subprocess.Popen([str(BIN / "airflow"), "standalone"], env=env)
    try:
        return airflow.wait()
    except KeyboardInterrupt:
        airflow.send_signal(signal.SIGINT)
        return airflow.wait(timeout=60)
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
