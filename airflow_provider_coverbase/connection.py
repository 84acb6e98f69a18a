"""What a Coverbase connection holds, in one model: checked here, shown in Airflow's form, documented.

No Airflow imports, and no client: Airflow reads the connection form (:func:`conn_fields`,
:func:`ui_field_behaviour`) in every process that discovers providers, through
``get_provider_info``, so this module imports only pydantic (which Airflow has loaded by then) and
plain values. The settings the client is built from are
:func:`airflow_provider_coverbase.client._connection.settings_from_connection`.

One model, three readers:

- :class:`ConnectionExtras` checks a connection's ``extra`` (``extra="forbid"``: a typo fails loudly,
  naming the close match and every valid extra).
- :func:`conn_fields` is the connection form's extra fields, generated from the model's fields
  (label: ``title``, help text: ``description`` and what an empty field means, JSON schema: the
  field's type and bounds). The form stores no ``default``: Airflow's form would pre-fill it and
  save it in every connection, so a default changed in a later release would never reach them. A
  bound the model checks with ``gt=0`` is ``exclusiveMinimum: 0`` and ``minimum: 0`` in the form:
  Airflow's form enforces ``minimum``/``maximum`` only, so it refuses a negative timeout, and a
  ``0`` is refused when the connection is used, with a message naming the extra.
- :func:`docs_table` is the README's table of connection fields; a test fails when the README's
  copy differs.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from airflow_provider_coverbase.defaults import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DASHBOARD_RUN_PATH,
    DEFAULT_DASHBOARD_URL,
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_INITIAL_DELAY,
    DEFAULT_RETRY_MAX_DELAY,
    DEFAULT_TIMEOUT,
    DEFAULT_WEBHOOK_TIMESTAMP_TOLERANCE,
    MAX_WEBHOOK_TIMESTAMP_TOLERANCE,
    MIN_WEBHOOK_SECRET_LENGTH,
)
from airflow_provider_coverbase.exceptions import CoverbaseConfigError

__all__ = [
    "CONN_TYPE",
    "HIDDEN_FIELDS",
    "STANDARD_FIELDS",
    "ConnectionExtras",
    "StandardField",
    "WebhookSettings",
    "base_url_of",
    "conn_fields",
    "docs_table",
    "parse_extras",
    "ui_field_behaviour",
    "webhook_settings_from_connection",
]

#: Airflow's connection type of a Coverbase connection.
CONN_TYPE = "coverbase"


class ConnectionExtras(BaseModel):
    """The connection's extra fields. An extra left out takes the client's default (:mod:`~.defaults`)."""

    model_config = ConfigDict(extra="forbid")

    timeout: float = Field(
        DEFAULT_TIMEOUT, gt=0, title="Read timeout (s)", description="Seconds to wait for each API response."
    )
    connect_timeout: float = Field(
        DEFAULT_CONNECT_TIMEOUT,
        gt=0,
        title="Connect timeout (s)",
        description="Seconds to wait for the connection to the API.",
    )
    max_retries: int = Field(
        DEFAULT_MAX_RETRIES,
        ge=0,
        le=20,
        title="Max retries",
        description="Retries of one API call on connection errors, timeouts, 429 and 5xx.",
    )
    retry_initial_delay: float = Field(
        DEFAULT_RETRY_INITIAL_DELAY,
        ge=0,
        title="First retry delay (s)",
        description="Backoff before the first retry; doubles on each retry, with jitter.",
    )
    retry_max_delay: float = Field(
        DEFAULT_RETRY_MAX_DELAY,
        ge=0,
        title="Longest retry delay (s)",
        description="Upper bound of the exponential backoff between retries.",
    )
    dashboard_url: str = Field(
        DEFAULT_DASHBOARD_URL,
        title="Dashboard URL",
        description="Base URL of the Coverbase dashboard, for the run link.",
    )
    dashboard_run_path: str = Field(
        DEFAULT_DASHBOARD_RUN_PATH,
        title="Dashboard run path",
        description="Path of a run's page under the dashboard URL; must contain {workflow_run_id}.",
    )
    max_requests_per_second: float = Field(
        DEFAULT_MAX_REQUESTS_PER_SECOND,
        ge=0,
        title="Max requests per second",
        description="Request budget per process, shared by all this connection's triggers; "
        "a 429 pauses every user. 0: no limit.",
    )
    allow_insecure_http: bool = Field(
        False,
        title="Allow plain http",
        description="Allow an http:// base URL that is not localhost (test setups only).",
    )
    #: A sensitive name ("secret"): Airflow masks it in logs and redacts it in its API, like the key;
    #: ``format: password`` makes the form hide it.
    webhook_secret: str | None = Field(
        None,
        title="Webhook signing secret",
        description=f"The secret registered with the Coverbase webhook, at least {MIN_WEBHOOK_SECRET_LENGTH} "
        "characters; deliveries to /coverbase/webhooks/{conn_id} are refused without it.",
        json_schema_extra={"format": "password", "minLength": MIN_WEBHOOK_SECRET_LENGTH},
    )
    webhook_timestamp_tolerance: float = Field(
        DEFAULT_WEBHOOK_TIMESTAMP_TOLERANCE,
        gt=0,
        le=MAX_WEBHOOK_TIMESTAMP_TOLERANCE,
        title="Webhook timestamp tolerance (s)",
        description="How far a delivery's signed time may be from now, either way (at most 7 days).",
    )

    @field_validator("webhook_secret")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        # The length only, never the value, goes into the message.
        if value and len(value) < MIN_WEBHOOK_SECRET_LENGTH:
            raise ValueError(
                f"must be at least {MIN_WEBHOOK_SECRET_LENGTH} characters (this one has {len(value)}; "
                "Coverbase refuses shorter secrets): use the secret registered with the webhook"
            )
        return value

    @field_validator("dashboard_run_path")
    @classmethod
    def _has_placeholder(cls, value: str) -> str:
        if "{workflow_run_id}" not in value:
            raise ValueError("must contain '{workflow_run_id}', e.g. /workflows/runs/{workflow_run_id}")
        return value


@dataclass(frozen=True, slots=True)
class StandardField:
    """One of Airflow's own connection fields, as this connection type shows and uses it."""

    label: str
    placeholder: str
    description: str
    #: What the docs say an empty field means (Markdown).
    default: str


#: The standard fields the form shows, relabelled; every other standard field is hidden.
STANDARD_FIELDS: dict[str, StandardField] = {
    "host": StandardField(
        "Base URL",
        DEFAULT_BASE_URL,
        "API base URL. No scheme means `https://` (or `http://` for localhost, the emulator). A `port` is appended.",
        f"`{DEFAULT_BASE_URL}`",
    ),
    "password": StandardField(
        "API key",
        "ak_...",
        "The `ak_...` service key. Sent only in the `Authorization: Bearer` header.",
        "required",
    ),
}
HIDDEN_FIELDS = ("schema", "login", "port", "extra")


def _shown(default: object) -> str | None:
    """What an empty extra means, as the form says it; ``None`` when empty means "not set"."""
    if default is None:
        return None
    if isinstance(default, bool):
        return "on" if default else "off"
    return f"{default:g}" if isinstance(default, float) else str(default)


def _form_schema(prop: Mapping[str, Any]) -> dict[str, Any]:
    """A field's JSON schema for the form: its type(s) or null (an empty field), its bounds, no default."""
    branches = prop.get("anyOf", [prop])
    types = [b["type"] for b in branches]
    schema: dict[str, Any] = {"type": [*types, "null"] if "null" not in types else types}
    for branch in (prop, *branches):
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "format", "minLength"):
            if key in branch:
                schema[key] = branch[key]
    # Airflow's form enforces minimum/maximum only: an exclusive bound is also given as the inclusive one.
    for exclusive, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if exclusive in schema:
            schema.setdefault(inclusive, schema[exclusive])
    return schema


def conn_fields() -> dict[str, Any]:
    """The connection form's extra fields (``conn-fields`` of the provider info), from the model."""
    properties = ConnectionExtras.model_json_schema()["properties"]
    fields: dict[str, Any] = {}
    for name, info in ConnectionExtras.model_fields.items():
        shown = _shown(info.default)
        description = f"{info.description} Empty: {shown}." if shown is not None else info.description
        fields[name] = {"label": info.title, "description": description, "schema": _form_schema(properties[name])}
    return fields


def ui_field_behaviour() -> dict[str, Any]:
    """The form's standard fields (``ui-field-behaviour`` of the provider info)."""
    return {
        "hidden-fields": list(HIDDEN_FIELDS),
        "relabeling": {name: f.label for name, f in STANDARD_FIELDS.items()},
        "placeholders": {name: f.placeholder for name, f in STANDARD_FIELDS.items()},
    }


def docs_table() -> str:
    """The README's table of a connection's fields (Markdown), from the same model as the form."""
    rows = ["| Field in the UI | Connection field | Meaning | Default |", "| --- | --- | --- | --- |"]
    for name, standard in STANDARD_FIELDS.items():
        rows.append(f"| {standard.label} | `{name}` | {standard.description} | {standard.default} |")
    for name, info in ConnectionExtras.model_fields.items():
        shown = _shown(info.default)
        default = "none" if shown is None else (f"`{shown}`" if isinstance(info.default, str) else shown)
        rows.append(f"| {info.title} | extra `{name}` | {info.description} | {default} |")
    return "\n".join(rows) + "\n"


def _parse_extra(extra: str | Mapping[str, Any] | None, conn_id: str) -> dict[str, Any]:
    if not extra:
        return {}
    if isinstance(extra, str):
        try:
            loaded = json.loads(extra)
        except json.JSONDecodeError as exc:
            raise CoverbaseConfigError(f"the extra of connection '{conn_id}' is not valid JSON ({exc.msg})") from None
    else:
        loaded = dict(extra)
    if not isinstance(loaded, dict):
        raise CoverbaseConfigError(f"the extra of connection '{conn_id}' must be a JSON object")
    # Older Airflow forms stored custom fields as extra__<conn_type>__<field>.
    prefix = f"extra__{CONN_TYPE}__"
    return {k.removeprefix(prefix): v for k, v in loaded.items() if v is not None and v != ""}


def _explain(exc: ValidationError) -> str:
    """One line per problem; an unknown extra names the close match and the valid extras."""
    valid = sorted(ConnectionExtras.model_fields)
    problems = []
    unknown = False
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "extra"
        if err["type"] == "extra_forbidden":
            unknown = True
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"{name}: unknown extra{hint}")
        else:
            problems.append(f"{name}: {err['msg']}")
    text = "; ".join(problems)
    return f"{text}. Valid extras: {', '.join(valid)}" if unknown else text


def parse_extras(extra: str | Mapping[str, Any] | None, conn_id: str) -> ConnectionExtras:
    """A connection's ``extra`` (JSON as stored, or a mapping), checked; or :class:`CoverbaseConfigError`.

    Empty values are left out (an empty form field means the default), and the ``extra__coverbase__``
    prefix of older Airflow forms is accepted.
    """
    try:
        return ConnectionExtras.model_validate(_parse_extra(extra, conn_id))
    except ValidationError as exc:
        raise CoverbaseConfigError(f"connection '{conn_id}' has invalid extras: {_explain(exc)}") from None


def base_url_of(host: str | None, port: int | None, conn_id: str) -> str:
    """The API base URL of a connection: ``host`` (the default when empty) with ``port`` added.

    The port is added only when the host names none; a host URL with a path must hold the port
    itself (where to put it would be a guess). The scheme is left to the client's checks.
    """
    base_url = (host or "").strip() or DEFAULT_BASE_URL
    if port:
        parts = urlsplit(base_url if "://" in base_url else f"//{base_url}")
        if parts.port is None:
            base_url = base_url.rstrip("/")
            if parts.path not in ("", "/"):
                raise CoverbaseConfigError(
                    f"connection '{conn_id}': put the port inside the host URL when it has a path"
                )
            base_url = f"{base_url}:{port}"
    return base_url


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """What the webhook receiver needs from a connection. The secret is kept out of ``repr``."""

    secret: str | None = field(repr=False)
    timestamp_tolerance: float = DEFAULT_WEBHOOK_TIMESTAMP_TOLERANCE


def webhook_settings_from_connection(conn_id: str, extra: str | Mapping[str, Any] | None) -> WebhookSettings:
    """The webhook secret and timestamp tolerance of a connection (no API key needed for these)."""
    extras = parse_extras(extra, conn_id)
    return WebhookSettings(secret=extras.webhook_secret or None, timestamp_tolerance=extras.webhook_timestamp_tolerance)
