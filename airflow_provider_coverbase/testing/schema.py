"""A small JSON-Schema subset validator for workflow inputs (legacy ``400 invalid_input``).

Supports ``type``, ``required``, ``properties``, ``additionalProperties: false``, ``enum``,
``items``, ``minimum``/``maximum``, ``minLength``/``maxLength``. It reports the first failure with
the path of the failing field, e.g. ``'quarter' is a required property (at input.quarter)``.
Written here rather than using ``jsonschema`` to keep messages stable and the module typed.

No Airflow imports, no client imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_TYPE_CHECKS: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"


def validate(value: Any, schema: Mapping[str, Any], path: str = "input") -> str | None:
    """Return a message naming the first failing field, or ``None`` when ``value`` conforms."""
    expected = schema.get("type")
    if expected is not None:
        types = [expected] if isinstance(expected, str) else list(expected)
        if not any(_TYPE_CHECKS.get(t, lambda v: True)(value) for t in types):
            shown = types[0] if len(types) == 1 else types
            return f"{value!r} is not of type {shown!r} (at {path})"
    if "enum" in schema and value not in schema["enum"]:
        return f"{value!r} is not one of {list(schema['enum'])!r} (at {path})"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{value!r} is less than the minimum of {schema['minimum']!r} (at {path})"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{value!r} is greater than the maximum of {schema['maximum']!r} (at {path})"
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            return f"{value!r} is too short (at {path})"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{value!r} is too long (at {path})"
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                return f"{name!r} is a required property (at {_join(path, name)})"
        props: Mapping[str, Any] = schema.get("properties", {})
        for key, sub in value.items():
            if key in props:
                error = validate(sub, props[key], _join(path, key))
                if error:
                    return error
            elif schema.get("additionalProperties") is False:
                return f"Additional properties are not allowed ({key!r} was unexpected) (at {_join(path, key)})"
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            error = validate(item, schema["items"], _join(path, index))
            if error:
                return error
    return None
