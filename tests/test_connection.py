"""The one model of a connection's extras, and everything generated from it: the form, the docs' table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from airflow_provider_coverbase.connection import (
    CONN_TYPE,
    STANDARD_FIELDS,
    ConnectionExtras,
    base_url_of,
    conn_fields,
    docs_table,
    ui_field_behaviour,
)
from airflow_provider_coverbase.exceptions import CoverbaseConfigError
from airflow_provider_coverbase.get_provider_info import get_provider_info

CONNECTION_PAGE = Path(__file__).resolve().parents[1] / "docs" / "connection.md"
MARKER = (
    "<!-- Generated from airflow_provider_coverbase.connection (docs_table()); tests/test_connection.py checks it. -->"
)


def docs_page_table() -> str:
    text = CONNECTION_PAGE.read_text()
    assert MARKER in text, "the connection page's table lost its marker line"
    after = text.split(MARKER + "\n", 1)[1]
    return after.split("\n\n", 1)[0] + "\n"


def test_the_docs_table_is_the_model_s() -> None:
    """Regenerate the table with
    ``python -c 'from airflow_provider_coverbase.connection import docs_table; print(docs_table())'``."""
    assert docs_page_table() == docs_table()


def test_the_docs_table_has_a_row_per_field_with_its_default() -> None:
    rows = docs_table().splitlines()[2:]
    assert [row.split(" | ")[1] for row in rows] == [f"`{name}`" for name in STANDARD_FIELDS] + [
        f"extra `{name}`" for name in ConnectionExtras.model_fields
    ]
    by_name = {row.split(" | ")[1]: row for row in rows}
    assert by_name["extra `timeout`"].endswith(" | 30 |")
    assert by_name["extra `dashboard_run_path`"].endswith(" | `/workflows/runs/{workflow_run_id}` |")
    assert by_name["extra `webhook_secret`"].endswith(" | none |")


def test_provider_info_is_generated_from_the_model() -> None:
    (conn,) = get_provider_info()["connection-types"]
    assert conn["connection-type"] == CONN_TYPE
    assert conn["conn-fields"] == conn_fields()
    assert conn["ui-field-behaviour"] == ui_field_behaviour()
    assert list(conn["conn-fields"]) == list(ConnectionExtras.model_fields)
    for name, info in ConnectionExtras.model_fields.items():
        # Descriptions come from the fields' docstrings: each extra has one, on one line (a table cell).
        assert info.title, name
        assert info.description, name
        assert "\n" not in info.description, name
        assert conn["conn-fields"][name]["label"] == info.title
        assert str(conn["conn-fields"][name]["description"]).startswith(str(info.description))


SAMPLES: dict[str, list[Any]] = {
    "number": [-1, -0.5, 0, 0.001, 0.5, 1, 20, 21, 1e6],
    "integer": [-1, 0, 1, 20, 21, 0.5],
    "boolean": [True, False],
}


@pytest.mark.parametrize("name", list(ConnectionExtras.model_fields))
def test_the_form_accepts_what_the_model_accepts(name: str) -> None:
    """Each field's form schema (type and bounds) says yes exactly where the model does."""
    schema = conn_fields()[name]["schema"]
    jsonschema.Draft202012Validator.check_schema(schema)
    kinds = [t for t in schema["type"] if t != "null"]
    jsonschema.validate(None, schema)  # an empty field is allowed: it means the default
    for value in [v for kind in kinds for v in SAMPLES.get(kind, [])]:
        try:
            ConnectionExtras.model_validate({name: value})
            model_ok = True
        except ValidationError:
            model_ok = False
        form_ok = jsonschema.Draft202012Validator(schema).is_valid(value)
        assert form_ok == model_ok, f"{name}={value!r}: form {'accepts' if form_ok else 'refuses'} it, the model not"


def test_exclusive_bounds_are_also_given_as_the_bound_airflow_s_form_enforces() -> None:
    schema = conn_fields()["timeout"]["schema"]
    assert schema["exclusiveMinimum"] == 0
    assert schema["minimum"] == 0
    assert math.isclose(ConnectionExtras(timeout=0.001).timeout, 0.001)


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, None, "https://api.coverbase.app"),
        ("  ", 8900, "https://api.coverbase.app:8900"),
        ("127.0.0.1", 8900, "127.0.0.1:8900"),
        ("http://127.0.0.1:9000", 8900, "http://127.0.0.1:9000"),  # the host's own port wins
        ("https://api.example/", 443, "https://api.example:443"),
    ],
)
def test_port_merging(host: str | None, port: int | None, expected: str) -> None:
    assert base_url_of(host, port, "c") == expected


def test_a_port_and_a_path_need_the_port_in_the_url() -> None:
    with pytest.raises(CoverbaseConfigError, match="connection 'c': put the port inside the host URL"):
        base_url_of("https://proxy.example/coverbase", 8443, "c")
