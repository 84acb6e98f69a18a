"""The README's "Testing your own DAGs" example, run exactly as written against the installed wheel.

The wheel is built from a copy of this source tree and installed into a fresh virtual environment;
the example's files (extracted from README.md by their ``<!-- readme-example: PATH -->`` markers) are
written to a temporary folder outside the repository, and ``pytest`` runs there. The environment
reuses the dependencies already installed in this one: a ``.pth`` line adds their folder to
``sys.path`` after the venv's own site-packages, without running that folder's ``.pth`` files (so the
editable install of this checkout stays out of the way). The test checks that the package imported
is the wheel's copy.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"<!-- readme-example: (?P<path>\S+) -->\n```\w*\n(?P<code>.*?)\n```", re.DOTALL)
#: What the build needs; everything else (tests, .venv, caches) stays behind.
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in", "airflow_provider_coverbase")


def readme_example() -> dict[str, str]:
    """``{relative path: file text}`` of every marked code block in README.md."""
    files = {m["path"]: m["code"] + "\n" for m in MARKER.finditer((REPO / "README.md").read_text(encoding="utf-8"))}
    assert files, "README.md has no <!-- readme-example: PATH --> blocks"
    return files


def test_the_readme_example_is_complete() -> None:
    files = readme_example()
    assert set(files) == {"pytest.ini", "dags/nightly_reconcile.py", "tests/test_nightly_reconcile.py"}
    assert "coverbase_dags_folder = dags" in files["pytest.ini"]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The provider's wheel, built once per session from a copy of the source tree (no build isolation:
    the dev extra installs the setuptools the build needs)."""
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.exists():
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), "."],
        cwd=source,
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("airflow_provider_coverbase-*.whl")
    return built


def fresh_venv(root: Path, wheel: Path) -> Path:
    """A new venv with the wheel installed and this environment's other packages visible; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def clean_env() -> dict[str, str]:
    """This process's environment minus what our own test setup set (Airflow home, connections)."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "COVERBASE", "PYTEST_", "PYTHON"))
    }


@pytest.mark.e2e
def test_readme_example_runs_as_written_against_the_installed_wheel(tmp_path: Path, wheel: Path) -> None:
    python = fresh_venv(tmp_path / "venv", wheel)
    project = tmp_path / "project"
    for relative, text in readme_example().items():
        (project / relative).parent.mkdir(parents=True, exist_ok=True)
        (project / relative).write_text(text)
    assert not project.resolve().is_relative_to(REPO)

    where = subprocess.run(
        [str(python), "-c", "import airflow_provider_coverbase.testing.pytest_plugin as m; print(m.__file__)"],
        cwd=project,
        env=clean_env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(tmp_path / "venv"), where  # the wheel's copy, not this checkout

    result = subprocess.run(
        [str(python), "-m", "pytest"],  # plain `pytest`, as the README says
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "2 passed" in result.stdout


def load_check_dist() -> Any:
    spec = importlib.util.spec_from_file_location("check_dist", REPO / "scripts" / "check_dist.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.e2e
def test_the_dist_check_passes_the_wheel_and_flags_a_missing_license(wheel: Path, tmp_path: Path) -> None:
    """``scripts/check_dist.py`` (run by ``make dist-check`` in CI) on this wheel, and on a copy without LICENSE."""
    check_dist = load_check_dist()
    assert check_dist.check_wheel(wheel) == []
    broken = tmp_path / wheel.name
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(broken, "w") as target:
        for item in source.infolist():
            if not item.filename.endswith("/licenses/LICENSE"):
                target.writestr(item, source.read(item))
    assert check_dist.check_wheel(broken) == ["wheel: no LICENSE in the .dist-info/licenses folder"]


def test_the_dist_check_flags_an_sdist_with_some_of_the_tests(tmp_path: Path) -> None:
    """All of the tests with their conftest files, or none: an sdist missing one conftest.py is reported."""
    check_dist = load_check_dist()
    files = ["LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "PKG-INFO"]
    files += sorted(check_dist.source_files("airflow_provider_coverbase") | check_dist.source_files("example_dags"))
    tests = sorted(check_dist.source_files("tests") - {"tests/conftest.py"})
    sdist = tmp_path / "airflow_provider_coverbase-0.1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        for name in files + tests:
            source = REPO / name if (REPO / name).exists() else REPO / "pyproject.toml"
            archive.add(source, arcname=f"airflow_provider_coverbase-0.1.0/{name}")
    assert check_dist.check_sdist(sdist) == ["sdist: tests/conftest.py is missing (the sdist ships tests)"]
    with tarfile.open(sdist, "w:gz") as archive:  # no tests at all is fine too
        for name in files:
            source = REPO / name if (REPO / name).exists() else REPO / "pyproject.toml"
            archive.add(source, arcname=f"airflow_provider_coverbase-0.1.0/{name}")
    assert check_dist.check_sdist(sdist) == []


def test_the_readme_quarterly_dag_imports_and_renders_its_quarter(tmp_path: Path) -> None:
    """The Operator section's DAG is complete: it imports, and its templates render with the provider's filters."""
    from datetime import UTC, datetime

    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.execution_time import macros

    block = re.search(r"<!-- readme-dag: quarterly -->\n```python\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)
    assert block is not None
    (tmp_path / "quarterly.py").write_text(block[1] + "\n")
    bag = DagBag(str(tmp_path))
    assert bag.import_errors == {}
    (dag,) = bag.dags.values()
    task = dag.get_task("run_quarterly_privacy_sweep")
    start, end = datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)
    task.render_template_fields({"data_interval_start": start, "data_interval_end": end, "macros": macros})
    assert task.input == {
        "quarter": "2026-Q3",
        "due_date": "2026-10-31",
        "vendor_filter": {"tags": ["processes_pii"], "tier": 1},
    }
    assert task.idempotency_key == "quarterly-privacy-sweep-2026-Q3"
