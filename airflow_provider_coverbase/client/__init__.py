"""Client for the Coverbase Workflows API, sync and async, on httpx. No Airflow imports here.

The logic lives once, free of I/O, in :mod:`._core` and the modules it drives (request building,
answer parsing, error mapping, the retry decision);
:class:`CoverbaseClient` and :class:`AsyncCoverbaseClient` are thin drivers over it. ``_async.py`` is
generated from ``_sync.py`` by ``scripts/unasync.py`` and checked by ``make test``.
"""

from airflow_provider_coverbase.client._async import AsyncCoverbaseClient
from airflow_provider_coverbase.client._budget import RequestBudget
from airflow_provider_coverbase.client._config import ClientConfig, RetryPolicy
from airflow_provider_coverbase.client._error_mapping import is_missing_list_endpoint
from airflow_provider_coverbase.client._inputs import RunListFilters, check_json_object
from airflow_provider_coverbase.client._shared_clients import SharedClients, shared_clients
from airflow_provider_coverbase.client._sync import CoverbaseClient
from airflow_provider_coverbase.client._transport import AiohttpTransport
from airflow_provider_coverbase.defaults import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DASHBOARD_RUN_PATH,
    DEFAULT_DASHBOARD_URL,
    DEFAULT_KEEPALIVE_EXPIRY,
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    DEFAULT_TIMEOUT,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_DASHBOARD_RUN_PATH",
    "DEFAULT_DASHBOARD_URL",
    "DEFAULT_KEEPALIVE_EXPIRY",
    "DEFAULT_MAX_REQUESTS_PER_SECOND",
    "DEFAULT_TIMEOUT",
    "AiohttpTransport",
    "AsyncCoverbaseClient",
    "ClientConfig",
    "CoverbaseClient",
    "RequestBudget",
    "RetryPolicy",
    "RunListFilters",
    "SharedClients",
    "check_json_object",
    "is_missing_list_endpoint",
    "shared_clients",
]
