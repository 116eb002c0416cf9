"""YAML nodes to typed dataclasses, keeping file, line and column for every field.

PyYAML's ``compose`` gives nodes that remember where they stood; we build the model from those
instead of from plain dicts, so every error (and every later semantic check) can name the file,
line, column and field path a marketer has to fix.

A config file is untrusted input to ``adserve check`` and to the server's hot reload, so what one
file may cost is bounded before and while it is read: its size, its nesting and node count as
written (checked on the parser's event stream, before any node exists), and the nodes and text the
builder visits, alias expansions and unknown keys included (YAML aliases let 20 KB stand for
billions of nodes). A run keeps only its first problems of each severity and counts the rest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import functools
import re
import types
import typing
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import yaml

MAX_FILE_BYTES = 1 << 20
#: Nodes per file, as written and as visited: a node reached through N aliases counts N times.
#: About what a 1 MB file of plain campaigns holds, so aliases cannot make a file cost more.
MAX_NODES = 100_000
MAX_TEXT = 4 * MAX_FILE_BYTES  # characters of scalars visited per file, each alias visit again
MAX_DEPTH = 64  # the model nests 7 deep; deeper YAML only feeds the (recursive) composer
MAX_KEPT = 100  # problems of each severity listed per run; the rest are counted
SHOWN_CHARS = 60  # longest word given a "did you mean" hint
CLIP_CHARS = 400  # longest path or message of a problem (a quoted value may be 1 MB long)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when installed: 7x faster


@dataclass(frozen=True)
class ConfigError:
    file: str
    line: int | None
    column: int | None
    path: str
    message: str
    severity: str = "error"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", _clip(self.path))
        object.__setattr__(self, "message", _clip(self.message))

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        field = f" {self.path}:" if self.path else ""
        return f"{where}: {self.severity}:{field} {self.message}"


def _clip(text: str) -> str:
    """``text``, its middle cut out when it is long: both the quoted start and the hint survive."""
    if len(text) <= CLIP_CHARS:
        return text
    half = CLIP_CHARS // 2
    return f"{text[:half]} [{len(text) - 2 * half} characters cut] {text[-half:]}"


class Problems:
    """The problems of one run: the first ``MAX_KEPT`` of each severity are kept, the rest counted.

    A hostile or badly broken folder can hold millions of problems; nobody reads past the first
    hundred, and the check's output, the server's log and its status page must stay small.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.unread_files: list[str] = []  # not read: the error list was full before them
        self._kept: dict[str, list[ConfigError]] = {"error": [], "warning": []}
        self._first_left_out: dict[str, str] = {}  # severity -> file where the unlisted ones begin

    def add(self, problem: ConfigError, always: bool = False) -> None:
        """Keep ``problem`` while the list has room; ``always`` for what stops a whole file (the
        run reads no further file once the list is full, so this adds one at most)."""
        if always or len(self._kept[problem.severity]) < MAX_KEPT:
            self._kept[problem.severity].append(problem)
            self.counts[problem.severity] += 1
        else:
            self.count(problem.file, problem.severity)

    def count(self, file: str, severity: str = "error") -> None:
        """Count a problem that will not be listed, without the cost of describing it."""
        self.counts[severity] += 1
        self._first_left_out.setdefault(severity, file)

    def extend(self, problems: typing.Iterable[ConfigError]) -> None:
        for problem in problems:
            self.add(problem)

    @property
    def full(self) -> bool:
        """True once further errors are only counted."""
        return len(self._kept["error"]) >= MAX_KEPT

    def listed(self, severity: str) -> list[ConfigError]:
        """The kept problems of ``severity``, closed by '... and N more' when some were left out."""
        kept = list(self._kept[severity])
        notes = []
        if more := self.counts[severity] - len(kept):
            notes.append(f"... and {more} more {severity}s, not listed")
        if severity == "error" and self.unread_files:
            notes.append(f"{len(self.unread_files)} more files not read (fix these errors first)")
        if notes:
            file = self._first_left_out.get(severity) or self.unread_files[0]
            kept.append(ConfigError(file, None, None, "", "; ".join(notes), severity))
        return kept


class Sources:
    """Where each built object and field came from, across all files of one config.

    Marks are held per file, so a file that does not build gives them back at once (``forget``):
    a folder of broken files then holds no more marks than its files that build.
    """

    def __init__(self) -> None:
        self._objects: dict[int, tuple[str, str]] = {}
        self._ids: dict[str, list[int]] = {}
        self._marks: dict[str, dict[str, tuple[int, int]]] = {}

    def remember(self, file: str, path: str, node: yaml.Node, obj: object = None) -> None:
        self._marks.setdefault(file, {})[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if obj is not None:
            self._objects[id(obj)] = (file, path)
            self._ids.setdefault(file, []).append(id(obj))

    def forget(self, file: str) -> None:
        self._marks.pop(file, None)
        for key in self._ids.pop(file, ()):
            self._objects.pop(key, None)

    def error(self, obj: object, field: str, message: str, severity: str = "error") -> ConfigError:
        file, path = self._objects.get(id(obj), ("<config>", ""))
        full = f"{path}.{field}" if path and field else path or field
        marks = self._marks.get(file, {})
        line, column = marks.get(full) or marks.get(path, (None, None))
        return ConfigError(file, line, column, full, message, severity)


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)


class _OverBudget(Exception):
    """The file costs more than a file may; building it stops where the budget ran out."""

    def __init__(self, node: yaml.Node, path: str, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.path = path


class _Builder:
    def __init__(self, file: str, sources: Sources, problems: Problems, check) -> None:
        self.file = file
        self.sources = sources
        self.problems = problems
        self.check = check
        self.nodes = 0  # visited, each alias expansion again: what building this file has cost
        self.text = 0
        self._scalars = yaml.SafeLoader("")

    def fail(self, node: yaml.Node, path: str, message: str) -> object:
        if self.problems.full:
            self.problems.count(self.file)
        else:
            mark = node.start_mark
            self.problems.add(ConfigError(self.file, mark.line + 1, mark.column + 1, path, message))
        return _INVALID

    def visit(self, node: yaml.Node, path: str) -> None:
        """Charge ``node`` to the file's budget: every visit pays, through however many aliases."""
        self.nodes += 1
        if isinstance(node, yaml.ScalarNode):
            self.text += len(node.value)
        if self.nodes > MAX_NODES:
            raise _OverBudget(node, path, f"document expands to more than {MAX_NODES} nodes "
                                          "(alias bomb or runaway file)")
        if self.text > MAX_TEXT:
            raise _OverBudget(node, path, f"document's values expand to more than {MAX_TEXT} "
                                          "characters (a long value repeated through aliases)")

    def build(self, tp: typing.Any, node: yaml.Node, path: str) -> object:
        self.visit(node, path)
        self.sources.remember(self.file, path, node)
        return self._typed(tp, node, path)

    def _typed(self, tp, node, path):
        kind, shape = _shape(tp)
        return getattr(self, kind)(shape, node, path)

    def _optional(self, inner, node, path):
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return None
        return self._typed(inner, node, path)

    def _literal(self, options, node, path):
        if not isinstance(node, yaml.ScalarNode):
            return self.fail(node, path, f"expected one of {', '.join(map(str, options))}")
        if node.value in options:
            return node.value
        return self.fail(node, path, f"'{node.value}' is not one of {', '.join(map(str, options))}"
                                     f"{self._did_you_mean(node.value, [str(o) for o in options])}")

    def _did_you_mean(self, word: object, options: list[str]) -> str:
        """A hint for a near miss; not for long words, nor once further errors are only counted."""
        if self.problems.full or not isinstance(word, str) or len(word) > SHOWN_CHARS:
            return ""
        hint = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
        return f" (did you mean '{hint[0]}'?)" if hint else ""

    def _list(self, item_tp, node, path):
        if not isinstance(node, yaml.SequenceNode):
            return self.fail(node, path, "expected a list")
        items = [self.build(item_tp, child, _join(path, i)) for i, child in enumerate(node.value)]
        return _INVALID if any(v is _INVALID for v in items) else items

    def _dataclass(self, shape, node, path):
        if not isinstance(node, yaml.MappingNode):
            return self.fail(node, path, f"expected a mapping ({shape.cls.__name__})")
        values: dict[str, object] = {}
        ok = True
        for key_node, value_node in node.value:
            self.visit(key_node, path)
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            key_path = _join(path, str(key))
            if key not in shape.hints:
                self.fail(key_node, key_path,
                          f"unknown key '{key}'{self._did_you_mean(key, list(shape.hints))}")
                ok = False
                continue
            if key in values:
                self.fail(key_node, key_path, f"duplicate key '{key}'")
                ok = False
                continue
            value = self.build(shape.hints[key], value_node, key_path)
            if value is _INVALID or (key in shape.bounds
                                     and not self._check(shape.bounds[key], value, value_node, key_path)):
                ok = False
            values[key] = value
        missing = [name for name in shape.required if name not in values]
        for name in missing:
            self.fail(node, _join(path, name), f"missing required field '{name}'")
        if missing or not ok:
            return _INVALID
        obj = shape.cls(**values)
        self.sources.remember(self.file, path, node, obj)
        self.problems.extend(self.check(obj))
        return obj

    def _check(self, bounds, value, node, path) -> bool:
        """Apply a field's bounds; True when the value passes."""
        problem = _bound_problem(bounds, value if isinstance(value, list) else [value])
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


@dataclass(frozen=True)
class _Mapping:
    """What building a dataclass from a mapping needs, worked out once per class."""
    cls: type
    hints: dict[str, object]  # field name -> type; evaluating string annotations is slow
    required: tuple[str, ...]
    bounds: dict[str, dict]  # field name -> its min/max/pattern, for the fields that have any


@functools.cache
def _shape(tp: typing.Any) -> tuple[str, object]:
    """The builder method for ``tp`` and what it needs, once per type rather than once per node."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return "_optional", next(a for a in typing.get_args(tp) if a is not type(None))
    if origin is typing.Literal:
        return "_literal", typing.get_args(tp)
    if origin is list:
        return "_list", typing.get_args(tp)[0]
    if dataclasses.is_dataclass(tp):
        fields = dataclasses.fields(tp)
        bounds = {f.name: {k: v for k, v in f.metadata.items() if k in _BOUND_KEYS} for f in fields}
        return "_dataclass", _Mapping(tp, typing.get_type_hints(tp),
                                      tuple(f.name for f in fields if _required(f)),
                                      {name: b for name, b in bounds.items() if b})
    return "_scalar", tp


_BOUND_KEYS = ("min", "max", "pattern")


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def load_file(cls: type, file: str, data: bytes, sources: Sources, problems: Problems,
              check=lambda obj: []) -> object | None:
    """Parse ``data`` (``file``'s bytes) into ``cls``, or None; its problems go to ``problems``.

    ``check(obj)`` runs on every object that builds, so the semantic problems of a valid creative
    are reported even when a sibling field of its campaign is broken.
    """
    def whole_file(message: str, mark=None, path: str = "") -> None:
        problems.add(ConfigError(file, mark.line + 1 if mark else None,
                                 mark.column + 1 if mark else None, path, message), always=True)

    if len(data) > MAX_FILE_BYTES:
        return whole_file(f"file is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return whole_file(f"cannot read file: {exc}")
    try:
        oversized = _oversized(text)
        node = None if oversized else yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        return whole_file(f"YAML syntax: {exc.problem or exc.context}",
                          exc.problem_mark or exc.context_mark)
    except yaml.YAMLError as exc:
        return whole_file(f"YAML: {exc}")
    if oversized:
        return whole_file(*oversized)
    if node is None:
        return whole_file("file is empty")
    builder = _Builder(file, sources, problems, check)
    try:
        obj = builder.build(cls, node, "")
    except _OverBudget as exc:
        obj = whole_file(str(exc), exc.node.start_mark, exc.path)
    if obj is None or obj is _INVALID:
        sources.forget(file)
        return None
    return obj


def _oversized(text: str) -> tuple[str, yaml.Mark] | None:
    """Why ``text`` may not be composed, judged on the parser's events before any node exists.

    The composer keeps every node it makes and recurses once per level of nesting (libyaml's
    crashes the process a few thousand levels down), so both are bounded first.
    """
    nodes = depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            nodes += 1
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if depth > MAX_DEPTH:
            return f"YAML nests deeper than {MAX_DEPTH} levels", event.start_mark
        if nodes > MAX_NODES:
            return f"file holds more than {MAX_NODES} nodes", event.start_mark
    return None
