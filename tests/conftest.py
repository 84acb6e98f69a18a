"""Test-wide setup. Airflow reads its settings at import, so they are set before anything imports it."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="coverbase-airflow-home-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# The DAGs folder holds the example DAGs plus the test-only DAGs of tests/e2e/dags.
DAGS_FOLDER = Path(_AIRFLOW_HOME) / "dags"
DAGS_FOLDER.mkdir()
for _dag_file in [*(REPO / "example_dags").glob("*.py"), *(REPO / "tests" / "e2e" / "dags").glob("*.py")]:
    shutil.copy(_dag_file, DAGS_FOLDER / _dag_file.name)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_FOLDER)
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.pop("AIRFLOW_CONN_COVERBASE_DEFAULT", None)
# The example DAGs read their poll interval at import; keep DAG tests fast.
os.environ["COVERBASE_POLL_INTERVAL"] = "0.05"
