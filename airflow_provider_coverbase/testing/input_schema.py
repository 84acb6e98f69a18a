"""Workflow input validation (legacy ``400 invalid_input``) with ``jsonschema``.

A definition's ``input_schema`` is checked against its metaschema when the definition is made, and
compiled once. An input that does not conform gets one message: ``jsonschema``'s most relevant
error (``best_match``) followed by the place of the failing field, e.g.
``'quarter' is a required property (at input.quarter)``. For a missing or an unexpected property
the place is that property, not the object holding it.

No Airflow imports, no client imports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import exceptions, validators
from jsonschema.protocols import Validator

#: Without an input schema the input only has to be an object.
_ANY_OBJECT: Mapping[str, Any] = {"type": "object"}


def _validator_class(schema: Mapping[str, Any]) -> type[Validator]:
    """The validator of the schema's ``$schema`` dialect (Draft 2020-12 when it names none)."""
    cls: type[Validator] = validators.validator_for(schema, default=validators.Draft202012Validator)
    return cls


def schema_problem(schema: Mapping[str, Any]) -> str | None:
    """What makes ``schema`` no valid JSON Schema, or ``None``."""
    try:
        _validator_class(schema).check_schema(dict(schema))
    except exceptions.SchemaError as exc:
        where = "".join(f"[{step!r}]" for step in exc.absolute_path)
        return f"{exc.message}" + (f" (at input_schema{where})" if where else "")
    return None


def compile_validator(schema: Mapping[str, Any] | None) -> Validator:
    """A reusable validator for run inputs (``schema`` already checked by :func:`schema_problem`)."""
    schema = _ANY_OBJECT if schema is None else schema
    return _validator_class(schema)(schema)


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"


def _culprit(error: exceptions.ValidationError) -> str | None:
    """The property a ``required`` or ``additionalProperties`` error is about (it sits on the object)."""
    instance = error.instance
    if not isinstance(instance, dict):
        return None
    if error.validator == "required":
        required: list[str] = list(error.validator_value) if isinstance(error.validator_value, list) else []
        return next((name for name in required if name not in instance), None)
    if error.validator == "additionalProperties":
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        known: Iterable[str] = schema.get("properties", {})
        patterns = list(schema.get("patternProperties", {}))
        return next(
            (k for k in instance if k not in known and not any(re.search(p, k) for p in patterns)),
            None,
        )
    return None


def first_problem(validator: Validator, value: Any, path: str = "input") -> str | None:
    """The most relevant reason ``value`` does not conform, with where; ``None`` when it does."""
    error = exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    for step in error.absolute_path:
        path = _join(path, step)
    culprit = _culprit(error)
    if culprit is not None:
        path = _join(path, culprit)
    return f"{error.message} (at {path})"


def validate(value: Any, schema: Mapping[str, Any], path: str = "input") -> str | None:
    """Return a message naming the most relevant failing field, or ``None`` when ``value`` conforms."""
    return first_problem(compile_validator(schema), value, path)
