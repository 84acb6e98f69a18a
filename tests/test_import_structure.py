"""The layers: the client, the models and the waiting and connection logic import nothing of Airflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "airflow_provider_coverbase"

#: Modules and packages (every module under them) that must import without Airflow.
AIRFLOW_FREE = [
    "airflow_provider_coverbase",
    "airflow_provider_coverbase.client",
    "airflow_provider_coverbase.connection",
    "airflow_provider_coverbase.defaults",
    "airflow_provider_coverbase.exceptions",
    "airflow_provider_coverbase.get_provider_info",
    "airflow_provider_coverbase.models",
    "airflow_provider_coverbase.asset_events",
    "airflow_provider_coverbase.waiting.progress",
    "airflow_provider_coverbase.waiting",
    "airflow_provider_coverbase.waiting.pull_watch",
    "airflow_provider_coverbase.webhooks",
]

#: Imports each module given on the command line with ``airflow`` made unimportable; prints what failed.
PROBE = """
import importlib, importlib.abc, json, sys

class NoAirflow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "airflow" or name.startswith("airflow."):
            raise ImportError(f"{name} is imported")
        return None

sys.meta_path.insert(0, NoAirflow())
failed = {}
for module in sys.argv[1:]:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        failed[module] = str(exc)
loaded = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
ours = sorted(m for m in sys.modules if m.startswith("airflow_provider_coverbase"))
print(json.dumps({"failed": failed, "airflow_modules": loaded, "ours": ours, "httpx": "httpx" in sys.modules}))
"""


def modules_of(name: str) -> list[str]:
    """``name`` and, for a package, every module in it (found on disk, so a new one is checked too)."""
    if name == "airflow_provider_coverbase":
        return [name]
    path = PACKAGE.joinpath(*name.split(".")[1:])
    if not path.is_dir():
        return [name]
    return [name, *sorted(f"{name}.{p.stem}" for p in path.glob("*.py") if p.stem != "__init__")]


def probe(modules: list[str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *modules],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)},
    )
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def test_the_airflow_free_layers_import_nothing_of_airflow() -> None:
    modules = [m for name in AIRFLOW_FREE for m in modules_of(name)]
    assert "airflow_provider_coverbase.waiting.reattach" in modules
    assert "airflow_provider_coverbase.client._connection" in modules
    result = probe(modules)
    assert result["failed"] == {}
    assert result["airflow_modules"] == []


def test_the_provider_info_imports_neither_the_client_nor_httpx() -> None:
    """Airflow reads it in every process that discovers providers: the form comes from the model alone."""
    result = probe(["airflow_provider_coverbase.get_provider_info"])
    assert result["failed"] == {}
    assert not result["httpx"]
    assert [m for m in result["ours"] if m.startswith("airflow_provider_coverbase.client")] == []
    assert "airflow_provider_coverbase.connection" in result["ours"]


@pytest.mark.parametrize(
    "adapter", ["airflow_provider_coverbase.hooks.coverbase", "airflow_provider_coverbase.triggers.coverbase"]
)
def test_the_probe_sees_an_airflow_import(adapter: str) -> None:
    """The adapters do import Airflow: the probe must notice, or the test above proves nothing."""
    result = probe([adapter])
    assert list(result["failed"]) == [adapter]
    assert "airflow" in str(result["failed"])
