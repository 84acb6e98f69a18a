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
"""

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
from airflow_provider_coverbase.testing.webhooks import sign

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
