"""The pytest plugin loads in every pytest session where the provider is installed: it must stay light.

Checked in fresh interpreters (this session has long imported everything), once by importing the
plugin module and once through pytest's own entry-point loading.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

#: Top-level packages the plugin must not import before a fixture is used.
HEAVY = {"airflow", "anyio", "fastapi", "httpx", "pydantic", "pygments", "rich", "starlette", "uvicorn", "yaml"}

PROBE = """
import json, sys
before = set(sys.modules)
import airflow_provider_coverbase.testing.pytest_plugin
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def fresh_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}


def test_importing_the_plugin_imports_nothing_heavy(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import pytest\n" + PROBE],
        cwd=tmp_path,
        env=fresh_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    added = json.loads(out)
    assert "airflow_provider_coverbase.testing.pytest_plugin" in added
    assert {name.split(".")[0] for name in added} & HEAVY == set()
    # Only our own small modules: the package, the testing package (lazy exports) and the plugin.
    assert all(name.startswith("airflow_provider_coverbase") for name in added), added


def session_modules(tmp_path: Path, *options: str) -> set[str]:
    """The modules loaded when a trivial test of a user's pytest session runs, with these options."""
    probe = tmp_path / "test_probe.py"
    out = tmp_path / "modules.json"
    probe.write_text(
        "import json, sys\n"
        "def test_probe(request):\n"
        f"    open({str(out)!r}, 'w').write(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options, probe.name],
        cwd=tmp_path,
        env=fresh_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return set(json.loads(out.read_text()))


def test_pytest_loads_the_plugin_without_heavy_imports(tmp_path: Path) -> None:
    """A user's pytest session, with and without the plugin: the plugin adds only our own small modules.

    Other installed plugins (anyio's, pytest-asyncio's) import what they import either way.
    """
    with_plugin = session_modules(tmp_path)
    without = session_modules(tmp_path, "-p", "no:coverbase")
    added = with_plugin - without
    assert "airflow_provider_coverbase.testing.pytest_plugin" in added
    assert "airflow_provider_coverbase.testing.pytest_plugin" not in without  # -p no:coverbase works
    assert all(name.startswith("airflow_provider_coverbase") for name in added), sorted(added)
    # anyio and pygments are imported by the anyio plugin and pytest-asyncio here, not by ours.
    assert {name.split(".")[0] for name in with_plugin} & (HEAVY - {"anyio", "pygments"}) == set()


def test_the_plugin_module_says_so_in_its_entry_point() -> None:
    from importlib.metadata import entry_points

    (entry,) = [ep for ep in entry_points(group="pytest11") if ep.name == "coverbase"]
    assert entry.value == "airflow_provider_coverbase.testing.pytest_plugin"
    assert json.dumps(entry.value)  # a plain module path, loadable by pytest


def run_pytest(folder: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in fresh_env().items() if not k.startswith("AIRFLOW")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )


def test_coverbase_airflow_without_the_opt_in_says_how_to_opt_in(tmp_path: Path) -> None:
    (tmp_path / "test_dag.py").write_text("def test_dag(coverbase_airflow):\n    pass\n")
    result = run_pytest(tmp_path)
    assert result.returncode != 0
    assert "set `coverbase_dags_folder = <your DAGs folder>` in your pytest configuration" in result.stdout


def test_a_dags_folder_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\ncoverbase_dags_folder = dags\n")
    result = run_pytest(tmp_path)
    assert result.returncode == 4  # pytest's usage error
    assert f"coverbase_dags_folder: {tmp_path.resolve() / 'dags'} is not a directory" in result.stderr


def test_the_opt_in_sets_a_temporary_airflow_home_before_conftest_imports(tmp_path: Path) -> None:
    """The environment is in place when the project's conftest.py runs, which is where Airflow is often imported."""
    (tmp_path / "dags").mkdir()
    (tmp_path / "pytest.ini").write_text("[pytest]\ncoverbase_dags_folder = dags\n")
    (tmp_path / "conftest.py").write_text(
        "import os\nSEEN = {k: os.environ.get(k) for k in "
        "('AIRFLOW_HOME', 'AIRFLOW__CORE__DAGS_FOLDER', 'AIRFLOW__DATABASE__SQL_ALCHEMY_CONN')}\n"
    )
    (tmp_path / "test_env.py").write_text(
        "import os, pathlib\nfrom conftest import SEEN\n"
        "def test_env():\n"
        "    home = pathlib.Path(SEEN['AIRFLOW_HOME'])\n"
        "    assert home.name.startswith('coverbase-airflow-home-') and home.is_dir()\n"
        f"    assert SEEN['AIRFLOW__CORE__DAGS_FOLDER'] == {str((tmp_path / 'dags').resolve())!r}\n"
        "    assert SEEN['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'] == f'sqlite:///{home}/airflow.db'\n"
        "    assert 'airflow' not in __import__('sys').modules\n"
    )
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
