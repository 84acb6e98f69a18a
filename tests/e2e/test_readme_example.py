"""The README's and the documentation's code, run as written: every DAG and every test they show.

- **Example projects.** The README's "Test it against the emulator" files (``<!-- readme-example:
  PATH -->`` markers) and each example project of the docs (``<!-- docs-example: PROJECT/PATH -->``)
  are written to a temporary folder outside the repository, and ``pytest`` runs there against the
  installed wheel. The wheel is built from a copy of this source tree and installed into a fresh
  virtual environment that reuses the dependencies already installed in this one: a ``.pth`` line
  adds their folder to ``sys.path`` after the venv's own site-packages, without running that
  folder's ``.pth`` files (so the editable install of this checkout stays out of the way). The test
  checks that the package imported is the wheel's copy.
- **DAG files** (``<!-- docs-dag: NAME -->``) are imported with Airflow's ``DagBag``: no import
  error, at least one DAG.
- **Completeness.** Every Python block of the README and the docs that defines a DAG or a test
  carries one of those markers, so none escapes this module.
- **The README itself**: at most 150 lines, every link absolute, each documentation link naming a
  page (and anchor) that the docs have, under the Documentation URL of ``pyproject.toml``.
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
import tomllib
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"<!-- readme-example: (?P<path>\S+) -->\n```\w*\n(?P<code>.*?)\n```", re.DOTALL)
DOCS_MARKER = re.compile(
    r"<!-- docs-example: (?P<project>[\w-]+)/(?P<path>\S+) -->\n```\w*\n(?P<code>.*?)\n```", re.DOTALL
)
DOCS_DAG = re.compile(r"<!-- docs-dag: (?P<name>[\w-]+) -->\n```python\n(?P<code>.*?)\n```", re.DOTALL)
#: Any fenced Python block, with the marker line before it if there is one.
PYTHON_BLOCK = re.compile(r"(?P<marker><!--[^\n]*-->\n)?```python\n(?P<code>.*?)\n```", re.DOTALL)
DOC_PAGES = sorted((REPO / "docs").rglob("*.md"))
#: What the build needs; everything else (tests, .venv, caches) stays behind.
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in", "airflow_provider_coverbase")


def readme_example() -> dict[str, str]:
    """``{relative path: file text}`` of every marked code block in README.md."""
    files = {m["path"]: m["code"] + "\n" for m in MARKER.finditer((REPO / "README.md").read_text(encoding="utf-8"))}
    assert files, "README.md has no <!-- readme-example: PATH --> blocks"
    return files


def docs_projects() -> dict[str, dict[str, str]]:
    """``{project: {relative path: file text}}`` of every ``docs-example`` block of the docs."""
    projects: dict[str, dict[str, str]] = defaultdict(dict)
    for page in DOC_PAGES:
        for m in DOCS_MARKER.finditer(page.read_text(encoding="utf-8")):
            assert m["path"] not in projects[m["project"]], f"{page.name}: {m['project']}/{m['path']} twice"
            projects[m["project"]][m["path"]] = m["code"] + "\n"
    return dict(projects)


def docs_dags() -> dict[str, str]:
    """``{name: DAG file text}`` of every ``docs-dag`` block of the docs."""
    return {m["name"]: m["code"] + "\n" for page in DOC_PAGES for m in DOCS_DAG.finditer(page.read_text())}


def test_the_readme_example_is_complete() -> None:
    files = readme_example()
    assert set(files) == {"pytest.ini", "dags/nightly_reconcile.py", "tests/test_nightly_reconcile.py"}
    assert "coverbase_dags_folder = dags" in files["pytest.ini"]


def test_every_dag_and_test_in_the_readme_and_the_docs_is_run() -> None:
    """A Python block that defines a DAG or a test must be marked, so that a test below runs it."""
    unmarked = []
    for page in [REPO / "README.md", *DOC_PAGES]:
        for m in PYTHON_BLOCK.finditer(page.read_text(encoding="utf-8")):
            if re.search(r"\bDAG\(|@dag\b|^def test_", m["code"], re.MULTILINE) and not (
                m["marker"] and re.match(r"<!-- (readme-example|docs-example|docs-dag): ", m["marker"])
            ):
                unmarked.append(f"{page.relative_to(REPO)}: {m['code'].splitlines()[0]}")
    assert unmarked == []
    assert set(docs_projects()) == {"getting-started", "testing", "webhook-receiver"}
    assert set(docs_dags()) == {"quarterly", "webhooks", "pull-path"}


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


def run_project(files: dict[str, str], tmp_path: Path, wheel: Path) -> subprocess.CompletedProcess[str]:
    """Write ``files`` to a new project folder and run plain ``pytest`` there, against the wheel."""
    python = fresh_venv(tmp_path / "venv", wheel)
    project = tmp_path / "project"
    for relative, text in files.items():
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

    return subprocess.run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider"],  # plain `pytest`, as the docs say
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def expected_passes(files: dict[str, str]) -> str:
    count = sum(len(re.findall(r"^def test_", text, re.MULTILINE)) for text in files.values())
    assert count > 0
    return f"{count} passed"


@pytest.mark.e2e
def test_readme_example_runs_as_written_against_the_installed_wheel(tmp_path: Path, wheel: Path) -> None:
    files = readme_example()
    result = run_project(files, tmp_path, wheel)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert expected_passes(files) in result.stdout


@pytest.mark.e2e
@pytest.mark.parametrize("project", ["getting-started", "testing", "webhook-receiver"])
def test_docs_example_projects_run_as_written_against_the_installed_wheel(
    project: str, tmp_path: Path, wheel: Path
) -> None:
    files = docs_projects()[project]
    result = run_project(files, tmp_path, wheel)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert expected_passes(files) in result.stdout


@pytest.mark.parametrize("name", ["webhooks", "pull-path"])
def test_docs_dag_files_import(name: str, tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / f"{name.replace('-', '_')}.py").write_text(docs_dags()[name])
    bag = DagBag(str(tmp_path))
    assert bag.import_errors == {}
    assert len(bag.dags) == 1


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
    files = ["LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "PKG-INFO", "constraints/airflow-3.2.txt"]
    files += sorted(check_dist.source_files("airflow_provider_coverbase") | check_dist.source_files("example_dags"))
    files += sorted(name for name in check_dist.source_files("docs") if not name.startswith("docs/_build/"))
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
    with tarfile.open(sdist, "w:gz") as archive:  # the constraints file the docs show is required
        for name in files:
            if name != "constraints/airflow-3.2.txt":
                source = REPO / name if (REPO / name).exists() else REPO / "pyproject.toml"
                archive.add(source, arcname=f"airflow_provider_coverbase-0.1.0/{name}")
    assert check_dist.check_sdist(sdist) == [
        "sdist airflow_provider_coverbase-0.1.0: constraints/airflow-3.2.txt is missing"
    ]


def test_the_operator_page_quarterly_dag_imports_and_renders_its_quarter(tmp_path: Path) -> None:
    """The Operator page's DAG is complete: it imports, and its templates render with the provider's filters."""
    from datetime import UTC, datetime

    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.execution_time import macros

    (tmp_path / "quarterly.py").write_text(docs_dags()["quarterly"])
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


# ---- the README on the package index --------------------------------------------------------------


def documentation_url() -> str:
    urls = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]
    return str(urls["Documentation"])


def anchors_of(page: Path) -> set[str]:
    """The HTML ids Sphinx gives ``page``'s headings (docutils' ``make_id``) and its explicit labels."""
    from docutils.nodes import make_id

    text = page.read_text(encoding="utf-8")
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", text, flags=re.DOTALL), re.MULTILINE)
    return {make_id(h.replace("`", "")) for h in headings} | set(re.findall(r"^\(([\w-]+)\)=$", text, re.MULTILINE))


def test_the_readme_is_short_and_its_links_work_on_the_package_index() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    assert "make demo" in text
    assert "make test" in text
    links = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"<(https?://[^>]+)>", text)
    assert links
    base = documentation_url()
    assert base.startswith("https://")
    assert base.endswith("/")
    for link in links:
        assert link.startswith("https://"), f"README.md: {link} is not absolute"
        if not link.startswith(base):
            continue
        page, _, anchor = link.removeprefix(base).partition("#")
        if page.startswith("_images/"):  # Sphinx publishes the images the pages show there
            image = page.removeprefix("_images/")
            assert (REPO / "docs" / "images" / image).is_file(), f"README.md shows {link}: no docs/images/{image}"
            assert any(f"images/{image}" in p.read_text() for p in DOC_PAGES), f"no page shows {image}"
            continue
        source = REPO / "docs" / (page.removesuffix(".html") + ".md" if page else "index.md")
        assert source.is_file(), f"README.md links {link}, but the docs have no {source.relative_to(REPO)}"
        if anchor:
            assert anchor in anchors_of(source), f"README.md links {link}: no such anchor"
