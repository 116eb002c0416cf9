"""JSON Schema for the config files, generated from the dataclasses in ``model``.

Editors that speak the yaml-language-server protocol read it through the ``$schema`` comment at
the top of each demo file, so marketers get completion and red squiggles while they type.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from decimal import Decimal

from .model import IAB_SIZES, ConfigFile

_SCALARS = {str: {"type": "string"}, int: {"type": "integer"}, float: {"type": "number"},
            Decimal: {"type": "number"},
            bool: {"type": "boolean"}, dt.datetime: {"type": "string", "format": "date-time"}}


def json_schema() -> dict:
    definitions: dict[str, dict] = {}
    root = _schema(ConfigFile, definitions)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "adserve config file", "$defs": definitions, **root}


def _schema(tp, definitions: dict) -> dict:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_schema(a, definitions) for a in typing.get_args(tp)]}
    if tp is type(None):
        return {"type": "null"}
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin is list:
        return {"type": "array", "items": _schema(typing.get_args(tp)[0], definitions)}
    if dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in definitions:
            definitions[name] = {}  # placeholder against recursion
            definitions[name] = _object(tp, definitions)
        return {"$ref": f"#/$defs/{name}"}
    return dict(_SCALARS[tp])


def _object(cls, definitions: dict) -> dict:
    hints = typing.get_type_hints(cls)
    properties = {}
    required = []
    for f in dataclasses.fields(cls):
        prop = _schema(hints[f.name], definitions)
        bounds = _constraints(f)
        if "description" in bounds:
            prop["description"] = bounds.pop("description")
        (prop["items"] if prop.get("type") == "array" else prop).update(bounds)
        if f.name == "size" or f.name == "sizes":
            sizes = {"enum": list(IAB_SIZES)}
            prop.update(sizes if f.name == "size" else {"items": sizes})
        properties[f.name] = prop
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    out = {"type": "object", "additionalProperties": False, "properties": properties}
    if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
        out["description"] = cls.__doc__.strip()
    return out | ({"required": required} if required else {})


def _constraints(f: dataclasses.Field) -> dict:
    meta = f.metadata
    out = {"description": meta["doc"]} if "doc" in meta else {}
    names = {"min": "minimum", "max": "maximum", "pattern": "pattern"}
    for key, name in names.items():
        if key in meta:
            out[name] = meta[key]
    return out
