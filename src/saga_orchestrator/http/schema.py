"""JSON Schema (draft 2020-12, as OpenAPI 3.1 uses it) from Python types.

The API's request and response bodies are attrs classes (:mod:`.views`); their fields carry
:class:`Constraints` (``api_field(max_length=255, ...)``) that both the request checks
(:mod:`.validate`) and the schema read, so the document cannot say something the checks do not
do. Saga input classes are described the same way, inline (``input_schema``).

Supported: attrs classes, ``X | None`` and other unions, ``Literal``, enums, ``list``/``tuple``/
``set``, ``dict``/``Mapping``, ``str``/``int``/``float``/``bool``, ``datetime``/``date`` and
``Any``. Anything else becomes ``{}`` (any JSON value). In the OpenAPI document (``refs=True``)
``Any`` is a :data:`JSON_VALUE` and a ``dict`` of ``Any`` a :data:`JSON_OBJECT`: JSON whose
strings (keys too) are :data:`STORABLE_TEXT`, as the request checks want them.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "API_FIELD",
    "JSON_OBJECT",
    "JSON_VALUE",
    "STORABLE_TEXT",
    "Constraints",
    "SchemaBuilder",
    "api_field",
    "constraints",
    "input_schema",
    "strip_none",
]

API_FIELD = "saga_orchestrator.http.api_field"
"""The key of a field's :class:`Constraints` in its attrs metadata."""

MAX_DEPTH = 8
"""A self-referencing input class is described this deep, then as ``{}``."""

STORABLE_TEXT = r"^[^\x00]*$"
"""Text every store can keep: no NUL character (PostgreSQL refuses it in text and ``jsonb``)."""
JSON_VALUE = "JsonValue"
"""The component of any JSON value whose strings are :data:`STORABLE_TEXT`."""
JSON_OBJECT = "JsonObject"
"""The component of a JSON object whose keys and strings are :data:`STORABLE_TEXT`."""


@attrs.frozen(kw_only=True)
class Constraints:
    """What a field allows beyond its type, and what the document says about it."""

    description: str | None = None
    min_length: int | None = None
    """Fewest characters of a string."""
    max_length: int | None = None
    """Most characters of a string."""
    pattern: str | None = None
    """A regular expression the whole string must match (Python and ECMA-262 alike)."""
    pattern_message: str | None = None
    """The field error when ``pattern`` does not match."""
    minimum: int | None = None
    maximum: int | None = None
    format: str | None = None
    """``date-time``, ``uuid``...: said in the document, not checked."""
    omit_if_none: bool = False
    """Responses leave the key out instead of sending ``null`` (the schema has no ``null``)."""


_NO_CONSTRAINTS = Constraints()


def api_field(*, doc: str | None = None, default: Any = attrs.NOTHING, **kwargs: Any) -> Any:
    """An attrs field with :class:`Constraints` (``doc`` is its description)."""
    return attrs.field(
        default=default, metadata={API_FIELD: Constraints(description=doc, **kwargs)}
    )


def constraints(field: attrs.Attribute[Any]) -> Constraints:
    """The :class:`Constraints` of ``field`` (none: an empty one)."""
    return field.metadata.get(API_FIELD, _NO_CONSTRAINTS)


def strip_none(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; any other type -> ``(tp, False)``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) < len(args):
            return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True  # noqa: UP007
    return tp, False


_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number"},
    type(None): {"type": "null"},
    dt.datetime: {"type": "string", "format": "date-time"},
    dt.date: {"type": "string", "format": "date"},
}
_ARRAYS = (list, tuple, set, frozenset, Sequence)
_OBJECTS = (dict, Mapping)
_KEYWORDS = (
    ("min_length", "minLength"),
    ("max_length", "maxLength"),
    ("pattern", "pattern"),
    ("minimum", "minimum"),
    ("maximum", "maximum"),
    ("format", "format"),
    ("description", "description"),
)


class SchemaBuilder:
    """Turns types into JSON schemas.

    With ``refs=True`` each attrs class is described once in :attr:`components` and referred to
    as ``{"$ref": "#/components/schemas/<ClassName>"}`` (the OpenAPI document); without, classes
    are described inline (saga input schemas).
    """

    def __init__(self, *, refs: bool = False, prefix: str = "#/components/schemas/") -> None:
        self.refs = refs
        self.prefix = prefix
        self.components: dict[str, dict[str, Any]] = {}
        self._owners: dict[str, type[Any]] = {}

    def schema(self, tp: Any) -> dict[str, Any]:
        """The JSON schema of ``tp``."""
        return self._schema(tp, depth=0)

    def _schema(self, tp: Any, *, depth: int) -> dict[str, Any]:
        if self.refs and tp is Any:
            return self._json(JSON_VALUE)
        if depth > MAX_DEPTH or tp is Any:
            return {}
        if tp in _SCALARS:
            return dict(_SCALARS[tp])
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            values = [member.value for member in tp]
            schema: dict[str, Any] = {"enum": values}
            if all(isinstance(value, str) for value in values):
                schema = {"type": "string", **schema}
            return schema
        if isinstance(tp, type) and attrs.has(tp):
            return self._class(tp, depth=depth)
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Union or origin is types.UnionType:
            return {"anyOf": [self._schema(arg, depth=depth + 1) for arg in args]}
        if origin is typing.Literal:
            return {"enum": list(args)}
        if tp in _ARRAYS or origin in _ARRAYS:
            return self._array(origin, args, depth=depth)
        if tp in _OBJECTS or origin in _OBJECTS:
            if self.refs and (len(args) != 2 or args[1] is Any):
                return self._json(JSON_OBJECT)
            schema = {"type": "object"}
            if len(args) == 2 and args[1] is not Any:
                schema["additionalProperties"] = self._schema(args[1], depth=depth + 1)
            return schema
        return {}

    def _json(self, name: str) -> dict[str, Any]:
        """A reference to :data:`JSON_VALUE` or :data:`JSON_OBJECT`, both described once."""
        if JSON_VALUE not in self.components:
            text = {"type": "string", "pattern": STORABLE_TEXT}
            self.components[JSON_OBJECT] = {
                "type": "object",
                "description": "A JSON object; no string in it (keys included) holds a NUL.",
                "propertyNames": {"pattern": STORABLE_TEXT},
                "additionalProperties": {"$ref": self.prefix + JSON_VALUE},
            }
            self.components[JSON_VALUE] = {
                "description": "Any JSON value; no string in it holds a NUL character.",
                "anyOf": [
                    text,
                    {"type": ["number", "boolean", "null"]},
                    {"type": "array", "items": {"$ref": self.prefix + JSON_VALUE}},
                    {"$ref": self.prefix + JSON_OBJECT},
                ],
            }
        return {"$ref": self.prefix + name}

    def _array(self, origin: Any, args: tuple[Any, ...], *, depth: int) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "array"}
        if origin in (set, frozenset):
            schema["uniqueItems"] = True
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            schema["prefixItems"] = [self._schema(arg, depth=depth + 1) for arg in args]
            schema["minItems"] = schema["maxItems"] = len(args)
        elif args:
            schema["items"] = self._schema(args[0], depth=depth + 1)
        return schema

    def _class(self, cls: type[Any], *, depth: int) -> dict[str, Any]:
        if not self.refs:
            return self._object(cls, depth=depth)
        name = cls.__name__
        owner = self._owners.setdefault(name, cls)
        if owner is not cls:
            raise ValueError(f"two classes named {name!r}: {owner!r} and {cls!r}")
        if name not in self.components:
            self.components[name] = {}  # a placeholder: a class that refers to itself stops here
            self.components[name] = self._object(cls, depth=0)
        return {"$ref": self.prefix + name}

    def properties(self, cls: type[Any], *, depth: int = 0) -> tuple[dict[str, Any], list[str]]:
        """The schema of each field of the attrs class ``cls``, and the required fields."""
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # unresolvable annotations: fall back to what attrs holds
            hints = {}
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in attrs.fields(cls):
            rules = constraints(field)
            tp = hints.get(field.name, field.type)
            if rules.omit_if_none:
                tp, _ = strip_none(tp)
            schema = self._schema(tp, depth=depth + 1)
            for attribute, keyword in _KEYWORDS:
                value = getattr(rules, attribute)
                if value is not None:
                    schema[keyword] = value
            if field.default is attrs.NOTHING:
                required.append(field.name)
            elif (
                not rules.omit_if_none
                and not isinstance(field.default, attrs.Factory)  # type: ignore[arg-type]
                and _is_json(field.default)
            ):
                schema["default"] = field.default
            properties[field.name] = schema
        return properties, required

    def _object(self, cls: type[Any], *, depth: int) -> dict[str, Any]:
        properties, required = self.properties(cls, depth=depth)
        schema: dict[str, Any] = {"type": "object", "title": cls.__name__}
        doc = _first_paragraph(cls.__doc__)
        if self.refs and doc:
            schema["description"] = doc
        schema.update(properties=properties, required=required, additionalProperties=False)
        return schema


def input_schema(cls: type[Any]) -> dict[str, Any]:
    """A JSON schema of an attrs class, inline: field names, types, required, defaults.

    Types it does not know become ``{}`` (anything).
    """
    return SchemaBuilder().schema(cls)


def _first_paragraph(doc: str | None) -> str | None:
    if not doc:
        return None
    return " ".join(doc.strip().split("\n\n")[0].split())


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
