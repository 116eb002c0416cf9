"""YAML nodes to typed dataclasses, keeping file, line and column for every field.

PyYAML's ``compose`` gives nodes that remember where they stood; we build the model from those
instead of from plain dicts, so every error (and every later semantic check) can name the file,
line, column and field path a marketer has to fix.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import functools
import re
import types
import typing
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import yaml

MAX_FILE_BYTES = 1 << 20
MAX_NODES = 100_000  # defeats alias "billion laughs" expansion


@dataclass(frozen=True)
class ConfigError:
    file: str
    line: int | None
    column: int | None
    path: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        field = f" {self.path}:" if self.path else ""
        return f"{where}: {self.severity}:{field} {self.message}"


class Sources:
    """Where each built object and field came from, across all files of one config."""

    def __init__(self) -> None:
        self._objects: dict[int, tuple[str, str]] = {}
        self._marks: dict[tuple[str, str], tuple[int, int]] = {}

    def remember(self, file: str, path: str, node: yaml.Node, obj: object = None) -> None:
        self._marks[(file, path)] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if obj is not None:
            self._objects[id(obj)] = (file, path)

    def error(self, obj: object, field: str, message: str, severity: str = "error") -> ConfigError:
        file, path = self._objects.get(id(obj), ("<config>", ""))
        full = f"{path}.{field}" if path and field else path or field
        line, column = self._marks.get((file, full)) or self._marks.get((file, path), (None, None))
        return ConfigError(file, line, column, full, message, severity)


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)


class _Builder:
    def __init__(self, file: str, sources: Sources, check) -> None:
        self.file = file
        self.sources = sources
        self.check = check
        self.errors: list[ConfigError] = []
        self.visited = 0
        self._scalars = yaml.SafeLoader("")

    def fail(self, node: yaml.Node, path: str, message: str) -> object:
        mark = node.start_mark
        self.errors.append(ConfigError(self.file, mark.line + 1, mark.column + 1, path, message))
        return _INVALID

    def build(self, tp: typing.Any, node: yaml.Node, path: str) -> object:
        self.visited += 1
        if self.visited > MAX_NODES:
            if self.visited == MAX_NODES + 1:
                self.fail(node, path, f"document expands to more than {MAX_NODES} nodes "
                                      "(alias bomb or runaway file)")
            return _INVALID
        self.sources.remember(self.file, path, node)
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            return self._optional(tp, node, path)
        if origin is typing.Literal:
            return self._literal(typing.get_args(tp), node, path)
        if origin is list:
            return self._list(typing.get_args(tp)[0], node, path)
        if dataclasses.is_dataclass(tp):
            return self._dataclass(tp, node, path)
        return self._scalar(tp, node, path)

    def _optional(self, tp, node, path):
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return self.build(inner[0], node, path)

    def _literal(self, options, node, path):
        if not isinstance(node, yaml.ScalarNode):
            return self.fail(node, path, f"expected one of {', '.join(map(str, options))}")
        if node.value in options:
            return node.value
        hint = difflib.get_close_matches(node.value, [str(o) for o in options], n=1)
        extra = f" (did you mean '{hint[0]}'?)" if hint else ""
        return self.fail(node, path, f"'{node.value}' is not one of "
                                     f"{', '.join(map(str, options))}{extra}")

    def _list(self, item_tp, node, path):
        if not isinstance(node, yaml.SequenceNode):
            return self.fail(node, path, "expected a list")
        items = [self.build(item_tp, child, _join(path, i)) for i, child in enumerate(node.value)]
        return _INVALID if any(v is _INVALID for v in items) else items

    def _dataclass(self, cls, node, path):
        if not isinstance(node, yaml.MappingNode):
            return self.fail(node, path, f"expected a mapping ({cls.__name__})")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = _hints(cls)
        values: dict[str, object] = {}
        ok = True
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            key_path = _join(path, str(key))
            if key not in fields:
                hint = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
                extra = f" (did you mean '{hint[0]}'?)" if hint else ""
                self.fail(key_node, key_path, f"unknown key '{key}'{extra}")
                ok = False
                continue
            if key in values:
                self.fail(key_node, key_path, f"duplicate key '{key}'")
                ok = False
                continue
            value = self.build(hints[key], value_node, key_path)
            if value is _INVALID or not self._check(fields[key], value, value_node, key_path):
                ok = False
            values[key] = value
        missing = [n for n, f in fields.items() if n not in values and _required(f)]
        for name in missing:
            self.fail(node, _join(path, name), f"missing required field '{name}'")
        if missing or not ok:
            return _INVALID
        obj = cls(**values)
        self.sources.remember(self.file, path, node, obj)
        self.errors += self.check(obj)
        return obj

    def _check(self, field, value, node, path) -> bool:
        """Apply the field's metadata bounds; True when the value passes."""
        problem = _bound_problem(field.metadata, value if isinstance(value, list) else [value])
        if problem:
            self.fail(node, path, problem)
        return problem is None

    def _scalar(self, tp, node, path):
        if not isinstance(node, yaml.ScalarNode) or node.tag.endswith(":null"):
            return self.fail(node, path, f"expected {_TYPE_NAMES.get(tp, tp.__name__)}")
        if tp is str:
            return node.value  # raw text: 'NO' stays Norway, not False
        if tp is dt.datetime:
            return self._datetime(node, path)
        if tp is Decimal:
            return self._decimal(node, path)
        try:
            value = self._scalars.construct_object(node)
        except (yaml.YAMLError, ValueError) as exc:
            return self.fail(node, path, f"cannot read value: {exc}")
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not tp or (tp is float and value != value):
            return self.fail(node, path, f"expected {_TYPE_NAMES[tp]}, got '{node.value}'")
        return value

    def _decimal(self, node, path):
        """Money, read from the scalar's text: ``0.1`` is exactly one tenth, never a float."""
        if node.tag.endswith((":int", ":float")):
            try:
                value = Decimal(node.value.replace("_", ""))
            except InvalidOperation:
                value = None
            if value is not None and value.is_finite():
                return value
        return self.fail(node, path, f"expected {_TYPE_NAMES[Decimal]}, got '{node.value}'")

    def _datetime(self, node, path):
        try:
            value = dt.datetime.fromisoformat(node.value)
        except ValueError:
            return self.fail(node, path, f"'{node.value}' is not an ISO 8601 date-time")
        if value.tzinfo is None:
            return self.fail(node, path, f"'{node.value}' has no timezone (add Z or +HH:MM)")
        return value


def _bound_problem(meta, values) -> str | None:
    for v in values:
        if isinstance(v, (int, float, Decimal)) and not isinstance(v, bool):
            if "min" in meta and v < meta["min"]:
                return f"must be at least {meta['min']}, got {v}"
            if "max" in meta and v > meta["max"]:
                return f"must be at most {meta['max']}, got {v}"
        if isinstance(v, str) and "pattern" in meta and not re.fullmatch(meta["pattern"], v):
            return f"'{v}' does not match {meta['pattern']}"
    return None


_INVALID = object()  # marks a value that failed to build; its error is already recorded
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", Decimal: "a decimal number",
               bool: "true or false", dt.datetime: "a date-time"}


@functools.cache
def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)  # evaluating string annotations is slow: once per class


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def load_file(cls: type, file: str, text: str, sources: Sources,
              check=lambda obj: []) -> tuple[object | None, list]:
    """Parse ``text`` (the content of ``file``) into ``cls``; return (object or None, problems).

    ``check(obj)`` runs on every object that builds, so the semantic problems of a valid creative
    are reported even when a sibling field of its campaign is broken.
    """
    def whole_file(message: str, line: int | None = None, column: int | None = None):
        return None, [ConfigError(file, line, column, "", message)]

    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        return whole_file(f"file is larger than {MAX_FILE_BYTES} bytes")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return whole_file(f"YAML syntax: {exc.problem or exc.context}",
                          mark.line + 1 if mark else None, mark.column + 1 if mark else None)
    except yaml.YAMLError as exc:
        return whole_file(f"YAML: {exc}")
    except RecursionError:
        return whole_file("YAML nesting is too deep")
    if node is None:
        return whole_file("file is empty")
    builder = _Builder(file, sources, check)
    try:
        obj = builder.build(cls, node, "")
    except RecursionError:
        return whole_file("YAML nesting is too deep")
    return (None if obj is _INVALID else obj), builder.errors
