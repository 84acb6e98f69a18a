"""A Coverbase connection's fields turned into client settings, checked once and memoised. No Airflow.

The hook looks the connection up (Airflow's business) and hands its fields here; what they mean is
:mod:`airflow_provider_coverbase.connection`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from airflow_provider_coverbase.client._config import ClientConfig, RetryPolicy
from airflow_provider_coverbase.connection import base_url_of, parse_extras
from airflow_provider_coverbase.exceptions import CoverbaseConfigError

__all__ = ["SETTINGS_MEMO_SIZE", "CoverbaseConnectionSettings", "settings_from_connection"]


@dataclass(frozen=True, slots=True)
class CoverbaseConnectionSettings:
    """What a Coverbase connection means, parsed and checked once."""

    client: ClientConfig
    dashboard_url: str
    dashboard_run_path: str

    def dashboard_run_url(self, workflow_run_id: str) -> str:
        """The page of a run in the Coverbase dashboard."""
        path = self.dashboard_run_path.format(workflow_run_id=quote(workflow_run_id, safe=""))
        return f"{self.dashboard_url.rstrip('/')}/{path.lstrip('/')}"


#: Connections whose parsed settings are remembered (see :func:`settings_from_connection`).
SETTINGS_MEMO_SIZE = 128


def settings_from_connection(
    conn_id: str,
    *,
    host: str | None,
    port: int | None,
    password: str | None,
    extra: str | Mapping[str, Any] | None,
) -> CoverbaseConnectionSettings:
    """Turn a connection's fields into checked settings, or raise :class:`CoverbaseConfigError`.

    Memoised by the fields' content (the last :data:`SETTINGS_MEMO_SIZE` connections; ``extra`` as
    stored, a JSON string): a triggerer that starts thousands of triggers of one connection parses
    and validates it once, and they all share one :class:`CoverbaseConnectionSettings`, hence one
    :class:`ClientConfig` whose fingerprint is computed once. The connection itself is still looked
    up by every user; only the parsing is cached, so a changed field (a rotated key, another extra)
    is another entry, parsed anew, and takes effect for new users at once. A connection that fails
    to parse is not remembered: it raises every time.
    """
    fields: _Fields = (conn_id, host, port, password, extra)
    if extra is None or isinstance(extra, str):
        return _memoised_settings(fields)
    return _parse_settings(fields)


#: A connection's id and fields, in the order of :func:`settings_from_connection`'s parameters.
_Fields = tuple[str, str | None, int | None, str | None, str | Mapping[str, Any] | None]


def _parse_settings(fields: _Fields) -> CoverbaseConnectionSettings:
    conn_id, host, port, password, extra = fields
    if not password:
        raise CoverbaseConfigError(
            f"connection '{conn_id}' has no API key: put the Coverbase 'ak_...' key in its password field"
        )
    extras = parse_extras(extra, conn_id)
    base_url = base_url_of(host, port, conn_id)
    try:
        client = ClientConfig(
            api_key=password,
            base_url=base_url,
            timeout=extras.timeout,
            connect_timeout=extras.connect_timeout,
            retry=RetryPolicy.from_max_retries(
                extras.max_retries, initial_delay=extras.retry_initial_delay, max_delay=extras.retry_max_delay
            ),
            allow_insecure_http=extras.allow_insecure_http,
            max_requests_per_second=extras.max_requests_per_second,
            source=f"Airflow connection '{conn_id}'",
        )
    except CoverbaseConfigError as exc:
        raise CoverbaseConfigError(f"connection '{conn_id}': {exc.message}") from None
    return CoverbaseConnectionSettings(
        client=client,
        dashboard_url=extras.dashboard_url.rstrip("/"),
        dashboard_run_path=extras.dashboard_run_path,
    )


#: :func:`_parse_settings`, remembered by the fields (only with ``extra`` as stored: a mapping is no key).
_memoised_settings = functools.lru_cache(maxsize=SETTINGS_MEMO_SIZE)(_parse_settings)
