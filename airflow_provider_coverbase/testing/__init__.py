"""A faithful local stand-in for the Coverbase Workflows API, served over real loopback HTTP.

Like moto for AWS: the default target of the demo, of this provider's integration tests and of
users' DAG tests. An independent implementation of the server side: no Airflow imports, no client
imports (``airflow_provider_coverbase.models``/``client``/``exceptions`` are never used here), so
the client and the emulator check each other.

Quick start::

    from airflow_provider_coverbase.testing import CoverbaseEmulator

    with CoverbaseEmulator(dialect="legacy", speed=20) as emu:
        ...  # point a client at emu.base_url with emu.api_key

The pytest plugin (``coverbase_emulator`` fixture) and the ``coverbase-emulator`` command build on it.

The names below are imported on first access (PEP 562), not when this package is imported: the pytest
plugin lives in this package and is loaded by every pytest session where the provider is installed,
so importing the package must not pull in FastAPI, uvicorn or PyYAML.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_coverbase.testing.clock import EmulatorClock
    from airflow_provider_coverbase.testing.config import (
        DEFAULT_ORG1_KEY,
        DEFAULT_ORG2_KEY,
        Checkpoint,
        ConfigError,
        Dialect,
        EmulatorConfig,
        OrgConfig,
        Pause,
        WorkflowDefinition,
        default_workflows,
        load_config,
    )
    from airflow_provider_coverbase.testing.server import CoverbaseEmulator, connection_value
    from airflow_provider_coverbase.testing.webhook_delivery import sign

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "DEFAULT_ORG1_KEY": "config",
    "DEFAULT_ORG2_KEY": "config",
    "Checkpoint": "config",
    "ConfigError": "config",
    "CoverbaseEmulator": "server",
    "Dialect": "config",
    "EmulatorClock": "clock",
    "EmulatorConfig": "config",
    "OrgConfig": "config",
    "Pause": "config",
    "WorkflowDefinition": "config",
    "connection_value": "server",
    "default_workflows": "config",
    "load_config": "config",
    "sign": "webhook_delivery",
}

__all__ = [
    "DEFAULT_ORG1_KEY",
    "DEFAULT_ORG2_KEY",
    "Checkpoint",
    "ConfigError",
    "CoverbaseEmulator",
    "Dialect",
    "EmulatorClock",
    "EmulatorConfig",
    "OrgConfig",
    "Pause",
    "WorkflowDefinition",
    "connection_value",
    "default_workflows",
    "load_config",
    "sign",
]


def __getattr__(name: str) -> Any:
    """Import a public name's submodule on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
