"""Check the built sdist and wheel: metadata, and that each carries what it should (run by ``make dist-check``).

Usage: ``python scripts/check_dist.py dist/``. Prints one line per problem and exits 1 if there is any.

- Wheel: every module of the package (compared with the source tree), ``py.typed``, the license, the
  ``apache_airflow_provider`` and ``pytest11`` entry points, the metadata (license expression, Python
  floor, extras, classifiers, project URLs); no tests.
- Sdist: the license, changelog and README, the package, the Airflow 3.2 constraints file (the docs show
  it; ``make test-airflow-3.2`` installs with it), and either every file of ``tests/`` (every test module
  and every ``conftest.py``) with what the tests read (the example DAGs, the docs' sources) or none of them.
"""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "airflow_provider_coverbase"


def source_files(folder: str) -> set[str]:
    """Files under ``folder`` of the source tree, relative to the repository, without caches."""
    root = REPO / folder
    return {
        path.relative_to(REPO).as_posix()
        for path in root.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and "node_modules" not in path.parts
        and path.suffix != ".pyc"
    }


def check_wheel(path: Path) -> list[str]:
    problems: list[str] = []
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        (dist_info,) = {name.split("/")[0] for name in names if name.split("/")[0].endswith(".dist-info")}
        metadata = Parser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    package = {name for name in names if name.startswith(f"{PACKAGE}/")}
    missing = source_files(PACKAGE) - package
    problems += [f"wheel: {name} is missing" for name in sorted(missing)]
    problems += [f"wheel: unexpected {name}" for name in sorted(names) if name.startswith(("tests/", "example_dags/"))]
    problems += [f"wheel: unexpected {name}" for name in sorted(names) if "/node_modules/" in name]
    if f"{PACKAGE}/plugins/www/dist/main.umd.cjs" not in names:
        problems.append("wheel: the UI bundle plugins/www/dist/main.umd.cjs is missing (pip install must need no Node)")
    if f"{dist_info}/licenses/LICENSE" not in names:
        problems.append("wheel: no LICENSE in the .dist-info/licenses folder")
    for needed in ("[apache_airflow_provider]", "[pytest11]", "coverbase = airflow_provider_coverbase.testing"):
        if needed not in entry_points:
            problems.append(f"wheel: entry_points.txt lacks {needed!r}")
    problems += check_metadata(metadata)
    return problems


def check_metadata(metadata: Message) -> list[str]:
    problems: list[str] = []
    for field, value in {
        "License-Expression": "Apache-2.0",
        "License-File": "LICENSE",
        "Requires-Python": ">=3.11",
    }.items():
        if metadata.get(field) != value:
            problems.append(f"metadata: {field} is {metadata.get(field)!r}, expected {value!r}")
    extras = set(metadata.get_all("Provides-Extra") or [])
    if not {"testing", "dev"} <= extras:
        problems.append(f"metadata: extras are {sorted(extras)}, expected testing and dev")
    testing = {
        re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()
        for requirement in metadata.get_all("Requires-Dist") or []
        if 'extra == "testing"' in requirement
    }
    problems += [
        f"metadata: the testing extra does not declare {name}"
        for name in ("fastapi", "starlette", "uvicorn", "pyyaml", "pytest")
        if name not in testing
    ]
    problems += [f"metadata: the testing extra brings our tool {name}" for name in ("ruff", "mypy") if name in testing]
    classifiers = metadata.get_all("Classifier") or []
    if not any(c.startswith("Development Status ::") for c in classifiers):
        problems.append("metadata: no Development Status classifier")
    if "Programming Language :: Python :: 3.11" not in classifiers:
        problems.append("metadata: no Python 3.11 classifier")
    labels = {url.split(",", 1)[0].strip() for url in metadata.get_all("Project-URL") or []}
    problems += [
        f"metadata: no {label!r} project URL"
        for label in ("Homepage", "Documentation", "Changelog", "Source")
        if label not in labels
    ]
    return problems


def check_sdist(path: Path) -> list[str]:
    problems: list[str] = []
    with tarfile.open(path) as archive:
        top = archive.getnames()[0].split("/")[0]
        names = {
            name.split("/", 1)[1] for name in archive.getnames() if "/" in name and archive.getmember(name).isfile()
        }
    for needed in ("LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "PKG-INFO", "constraints/airflow-3.2.txt"):
        if needed not in names:
            problems.append(f"sdist {top}: {needed} is missing")
    problems += [f"sdist: {name} is missing" for name in sorted(source_files(PACKAGE) - names)]
    tests = {name for name in names if name.startswith("tests/")}
    if tests:  # all of the tests with their conftest files, or none
        expected = source_files("tests")
        problems += [f"sdist: {name} is missing (the sdist ships tests)" for name in sorted(expected - tests)]
        needed_by_tests = source_files("example_dags") | {
            name for name in source_files("docs") if not name.startswith("docs/_build/")
        }
        problems += [f"sdist: {name} is missing (the tests use it)" for name in sorted(needed_by_tests - names)]
    return problems


def main(argv: list[str]) -> int:
    folder = Path(argv[1] if len(argv) > 1 else "dist")
    wheels = sorted(folder.glob("*.whl"))
    sdists = sorted(folder.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        print(f"expected one wheel and one sdist in {folder}, found {[p.name for p in wheels + sdists]}")
        return 1
    problems = check_wheel(wheels[0]) + check_sdist(sdists[0])
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{wheels[0].name} and {sdists[0].name}: metadata and contents OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
