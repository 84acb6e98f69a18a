"""Reading the emulator's configuration: pydantic validation, and errors that say what and where.

The config classes of :mod:`.config` are the schema: ``pydantic.TypeAdapter`` validates a file's
mappings against their field types (unknown keys, wrong types, unknown choices), and their
``__post_init__`` rules then run as part of the validation. This module only turns pydantic's first
error into one plain sentence with a place:

- an unknown key is reported at the key, listing the valid ones:
  ``unknown key 'duration_secs' in a checkpoint of workflow 'nightly' (valid: action_type, ...)``;
- any other problem is reported at the list item (workflow, org, checkpoint) or the top-level key
  that holds it, naming the field: ``workflow 'b': final_status must be one of (...), got 'done'``.

:func:`load_config_file` adds the file name and the line (found with PyYAML's node marks, which
also serve JSON). No Airflow imports, no client imports.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from airflow_provider_coverbase.testing.config import (
    Checkpoint,
    ConfigError,
    ConfigPath,
    EmulatorConfig,
    Flag,
    OrgConfig,
    Pause,
    WorkflowDefinition,
    default_workflows,
)

T = TypeVar("T")

#: The config class a key of the file holds (in a list, or directly for ``pause``).
_PARTS: dict[str, type] = {
    "workflows": WorkflowDefinition,
    "checkpoints": Checkpoint,
    "pause": Pause,
    "orgs": OrgConfig,
}
#: pydantic's error types for a key the class does not have.
_UNKNOWN_KEY = ("unexpected_keyword_argument", "extra_forbidden")
#: How a wrong value of each pydantic error type is described (others: pydantic's own words).
_EXPECTED = {
    "float_type": "must be a number",
    "int_type": "must be a whole number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "mapping_type": "must be a mapping",
    "dataclass_type": "must be a mapping",
}


@dataclass(frozen=True)
class _ConfigFile(EmulatorConfig):
    """The top level of a config file: a configuration, and whether the built-in workflows stay."""

    include_defaults: Flag = True


#: One adapter per class: building one compiles the class's validator.
_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def validated(cls: type[T], raw: Any, *, what: str | None = None) -> T:
    """``raw`` validated as a ``cls``; :class:`ConfigError` (first problem, with its path) otherwise.

    ``what`` names the top level in messages (default: the configuration, or a workflow).
    """
    try:
        adapter = _ADAPTERS.get(cls) or _ADAPTERS.setdefault(cls, TypeAdapter(cls))
        value: T = adapter.validate_python(raw)
        return value
    except ValidationError as exc:
        raise _Reader(cls, raw, what).error(exc.errors()) from None


def config_from_dict(raw: Any) -> EmulatorConfig:
    """An :class:`EmulatorConfig` from its file form (see :meth:`EmulatorConfig.from_dict`)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"the configuration must be a mapping, got {raw!r}")
    data = dict(raw)
    if not data.get("orgs"):
        data.pop("orgs", None)  # absent or empty: the built-in orgs
    # The custom workflows are validated where they stand (errors keep their index), then merged.
    parsed = validated(_ConfigFile, {**data, "workflows": data.get("workflows") or ()})
    names = {w.name for w in parsed.workflows}
    base = [w for w in default_workflows() if w.name not in names] if parsed.include_defaults else []
    values = {f.name: getattr(parsed, f.name) for f in dataclasses.fields(EmulatorConfig)}
    return EmulatorConfig(**{**values, "workflows": (*base, *parsed.workflows)})


def load_config_file(path: str | Path) -> EmulatorConfig:
    """Read an ``EmulatorConfig`` from a ``.yaml``/``.yml`` or ``.json`` file.

    A top-level list is taken as the list of workflows. Any problem (unreadable file, bad syntax, an
    unknown key, a wrong value) raises :class:`ConfigError` whose message is one line naming the
    file, the line and what is wrong, e.g. ``workflows.yaml:9: unknown key 'duration_secs' in a
    checkpoint of workflow 'nightly' (valid: action_type, duration_seconds, name)``.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc})") from None
    try:
        raw: Any = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    prefix: ConfigPath = ()
    if raw is None:
        raw = {}
    elif isinstance(raw, list):
        raw, prefix = {"workflows": raw}, ("workflows",)
    try:
        if not isinstance(raw, Mapping):
            raise ConfigError("expected a mapping or a list of workflows")
        return config_from_dict(raw)
    except ConfigError as exc:
        line = _line_of(text, exc.path[len(prefix) :] if exc.path[: len(prefix)] == prefix else exc.path)
        raise ConfigError(f"{path}:{line}: {exc.message}" if line else f"{path}: {exc.message}", exc.path) from None


class _Reader:
    """Turns pydantic's errors about ``raw`` (validated as ``root``) into one :class:`ConfigError`."""

    def __init__(self, root: type, raw: Any, what: str | None) -> None:
        self.root = root
        self.raw = raw
        self.what = what

    def error(self, errors: list[ErrorDetails]) -> ConfigError:
        # An unknown key first: a misspelt key also makes the key it was meant to be missing.
        errors = sorted(errors, key=lambda e: e["type"] not in _UNKNOWN_KEY)
        first = errors[0]
        loc: ConfigPath = tuple(first["loc"])
        if first["type"] in _UNKNOWN_KEY:
            holder = loc[:-1]
            valid = sorted(f.name for f in dataclasses.fields(self._class_at(holder)))
            message = f"unknown key {loc[-1]!r} in {self._describe(holder)} (valid: {', '.join(valid)})"
            return ConfigError(message, loc)
        cause = (first.get("ctx") or {}).get("error")
        if first["type"] == "value_error" and isinstance(cause, ConfigError):
            return ConfigError(cause.message, loc)  # a rule of the class's __post_init__
        holder = self._holder(loc)
        if first["type"] == "missing":
            names = [_label(tuple(e["loc"])[len(holder) :]) for e in errors if e["type"] == "missing"]
            return ConfigError(f"{self._describe(holder)} needs {' and '.join(names)}", holder)
        if first["type"] == "literal_error":
            problem = f"must be one of {self._choices(holder, loc[len(holder)])}"
        else:
            problem = _EXPECTED.get(first["type"], first["msg"])
        if not loc:  # the top level itself, e.g. a list where a mapping belongs
            return ConfigError(f"{self._describe(())} {problem}, got {first['input']!r}")
        message = f"{_label(loc[len(holder) :])} {problem}, got {first['input']!r}"
        return ConfigError(f"{self._describe(holder)}: {message}" if holder else message, holder or loc)

    def _is_object(self, path: ConfigPath) -> bool:
        """Whether ``path`` is a config object: the top, a list item of a config list, or a pause."""
        if not path:
            return True
        if isinstance(path[-1], int):
            return len(path) >= 2 and path[-2] in _PARTS and path[-2] != "pause"
        return path[-1] == "pause"

    def _holder(self, loc: ConfigPath) -> ConfigPath:
        """The innermost config object strictly above ``loc``."""
        for end in range(len(loc) - 1, -1, -1):
            if self._is_object(loc[:end]):
                return loc[:end]
        return ()

    def _class_at(self, path: ConfigPath) -> type:
        keys = [step for step in path if isinstance(step, str) and step in _PARTS]
        return _PARTS[keys[-1]] if keys else self.root

    def _choices(self, holder: ConfigPath, name: str | int) -> tuple[Any, ...]:
        hint = typing.get_type_hints(self._class_at(holder))[str(name)]
        return typing.get_args(hint)

    def _node(self, path: ConfigPath) -> Any:
        node = self.raw
        for step in path:
            try:
                node = node[step]
            except (KeyError, IndexError, TypeError):
                return None
        return node

    def _describe(self, path: ConfigPath) -> str:
        """How messages name the config object at ``path``."""
        cls = self._class_at(path)
        if not path and self.what:
            return self.what
        if issubclass(cls, EmulatorConfig):
            return "the configuration"
        workflow_path = path[: path.index("checkpoints")] if "checkpoints" in path else path
        if workflow_path and workflow_path[-1] == "pause":
            workflow_path = workflow_path[:-1]
        name = self._node(workflow_path)
        name = name.get("name") if isinstance(name, Mapping) else None
        workflow = f"workflow {name!r}" if isinstance(name, str) and name else "a workflow"
        return {
            WorkflowDefinition: workflow,
            Checkpoint: f"a checkpoint of {workflow}",
            Pause: f"the pause of {workflow}",
            OrgConfig: "an org",
        }.get(cls, cls.__name__)


def _label(steps: ConfigPath) -> str:
    """``("webhook_retry_delays", 1)`` -> ``webhook_retry_delays[1]``."""
    text = ""
    for step in steps:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


def _line_of(text: str, path: ConfigPath) -> int | None:
    """The 1-based line of the deepest node of ``path`` found in the YAML (or JSON) ``text``."""
    try:
        node: Any = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line: int = node.start_mark.line + 1
    for step in path:
        child: Any = None
        if isinstance(node, yaml.MappingNode) and isinstance(step, str):
            for key, value in node.value:
                if key.value == step:
                    child = key if value is None else value
                    line = key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            child = node.value[step]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
