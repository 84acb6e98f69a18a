"""Test-wide setup. Airflow reads its settings at import, so they are set before anything imports it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="coverbase-airflow-home-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "example_dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.pop("AIRFLOW_CONN_COVERBASE_DEFAULT", None)
# The example DAGs read their poll interval at import; keep DAG tests fast.
os.environ["COVERBASE_POLL_INTERVAL"] = "0.05"
