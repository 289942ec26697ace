"""Requests checked against the classes of :mod:`.views`: JSON bodies and query strings.

The checks read the same field types and :class:`~.schema.Constraints` that the OpenAPI
document is made from. Every bad field is reported at once, one ``{"field", "message"}`` each:
a body as a ``ValidationError`` (422), a query as an ``InvalidQuery`` (400).

Hostile bodies get a 4xx too: bytes that are not UTF-8 (or start with a byte-order mark),
JSON that is not valid, nested deeper than :data:`MAX_JSON_DEPTH`, with a number that is not
finite, or with a string no store can keep (:func:`unstorable_text`) is ``InvalidJson`` (400).
Where the schema says integer, a number with a zero fraction (``2.0``) is that integer, as
JSON Schema counts it.
"""

from __future__ import annotations

import enum
import json
import math
import re
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs
from quart import request

from saga_orchestrator.coordinator.definition import json_integer
from saga_orchestrator.errors import ValidationError

from .errors import InvalidJson, InvalidQuery, UnsupportedMediaType
from .schema import Constraints, constraints, strip_none

__all__ = [
    "MAX_JSON_DEPTH",
    "body_fields",
    "check_body",
    "check_query",
    "finish",
    "json_body",
    "parse_int",
    "parse_json",
    "unstorable_text",
]

T = TypeVar("T")

MAX_JSON_DEPTH = 64
"""Most levels of nested arrays and objects in a request body."""

_INT = re.compile(r"[+-]?[0-9]{1,19}")
_UTF8_BOM = b"\xef\xbb\xbf"
_BODY = "the request body is not valid"
_QUERY = "the query is not valid"


# --------------------------------------------------------------------------------------------
# Reading a JSON body.


async def json_body(*, required: bool = True) -> Any:
    """The request's JSON body; ``{}`` when it is empty and not ``required`` (then it needs no
    ``Content-Type``).

    Raises:
        UnsupportedMediaType: the body is not ``application/json``.
        InvalidJson: it is not JSON this service accepts.
    """
    data = await request.get_data(as_text=False)
    if not data.strip() and not required:
        return {}
    if not request.is_json:
        raise UnsupportedMediaType("the request body must be JSON (Content-Type: application/json)")
    return parse_json(data)


def parse_json(data: bytes) -> Any:
    """``data`` (UTF-8, no byte-order mark) as JSON; raises ``InvalidJson`` (never
    ``RecursionError`` or a 500)."""
    if data.startswith(_UTF8_BOM):
        raise InvalidJson(
            "the request body starts with a byte-order mark: send UTF-8 JSON without one"
        )
    if b"\x00" in data:  # never in UTF-8 JSON; UTF-16 and UTF-32 text is full of them
        raise InvalidJson("the request body holds NUL bytes (UTF-16?): send JSON encoded as UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson(
            f"the request body is not UTF-8 (byte {exc.start}): send JSON encoded as UTF-8"
        ) from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidJson(
            f"the request body is nested deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    except ValueError as exc:
        raise InvalidJson(f"the request body is not valid JSON: {exc}") from None
    problem = _unstorable(value)
    if problem is not None:
        raise InvalidJson(f"the request body is not accepted: {problem}")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:20]}... is out of range")
    return number


def _unstorable(value: Any) -> str | None:
    """Why a parsed body cannot be kept as it is, or ``None``. Walks without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                return f"nested deeper than {MAX_JSON_DEPTH} levels"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            problem = unstorable_text(item)
            if problem is not None:
                return f"a string {problem}"
    return None


def unstorable_text(text: str) -> str | None:
    """Why no store can keep ``text`` (PostgreSQL refuses a NUL character in text and in
    ``jsonb``; no store keeps an unpaired surrogate), or ``None``."""
    if "\x00" in text:
        return "holds a NUL character (U+0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "holds an unpaired surrogate (not UTF-8)"
    return None


# --------------------------------------------------------------------------------------------
# Checking against a class.


def _length_message(rules: Constraints) -> str:
    low, high = rules.min_length, rules.max_length
    if low is not None and high is not None:
        return f"expected {low} to {high} characters"
    if high is not None:
        return f"expected at most {high} characters"
    return "must not be empty" if low == 1 else f"expected at least {low} characters"


def _bounds_message(rules: Constraints) -> str:
    low, high = rules.minimum, rules.maximum
    if low is not None and high is not None:
        return f"expected an integer from {low} to {high}"
    if low is not None:
        return f"expected an integer >= {low}"
    return f"expected an integer <= {high}"


def _text_problem(value: str, rules: Constraints) -> str | None:
    if (rules.min_length is not None and len(value) < rules.min_length) or (
        rules.max_length is not None and len(value) > rules.max_length
    ):
        return _length_message(rules)
    if rules.pattern is not None and not re.fullmatch(rules.pattern, value):
        return rules.pattern_message or f"must match {rules.pattern}"
    return None


def _int_problem(value: int, rules: Constraints) -> str | None:
    if (rules.minimum is not None and value < rules.minimum) or (
        rules.maximum is not None and value > rules.maximum
    ):
        return _bounds_message(rules)
    return None


def _value_problem(tp: Any, value: Any, rules: Constraints) -> tuple[Any, str | None]:
    """A JSON ``value`` as a ``tp``, and why it is not one within ``rules`` (``None``: it is)."""
    if tp is str:
        if not isinstance(value, str):
            return value, "expected a string"
        return value, _text_problem(value, rules)
    if tp is int:
        number = json_integer(value)
        if number is None:
            return value, "expected an integer"
        return number, _int_problem(number, rules)
    if typing.get_origin(tp) is dict or tp is dict:
        return value, None if isinstance(value, dict) else "expected an object"
    if tp is bool:
        return value, None if isinstance(value, bool) else "expected true or false"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        names = [member.value for member in tp]
        if isinstance(value, str) and value in names:
            return tp(value), None
        return value, f"expected one of {', '.join(names)}"
    raise TypeError(f"no check for fields of type {tp!r}")  # pragma: no cover  (a new view)


def check_body(cls: type[T], body: Any) -> T:
    """``body`` (parsed JSON) as a ``cls``; raises ``ValidationError`` naming each bad field.

    A missing or ``null`` optional field takes its default; unknown fields are refused.
    """
    values, errors = body_fields(cls, body)
    if errors:
        raise ValidationError(_BODY, errors)
    return cls(**values)


def body_fields(cls: type[Any], body: Any) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The good fields of ``body`` and an error for each bad one, for a route that checks
    more (then :func:`finish`). A body that is not an object raises ``ValidationError``."""
    if not isinstance(body, dict):
        raise ValidationError(_BODY, [{"field": "body", "message": "expected an object"}])
    fields = attrs.fields_dict(cls)
    errors = [
        {"field": str(name), "message": "unknown field"} for name in body if name not in fields
    ]
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, field in fields.items():
        value = body.get(name)
        if value is None:
            if field.default is attrs.NOTHING:
                errors.append({"field": name, "message": "is required"})
            continue
        tp, _ = strip_none(hints[name])
        value, problem = _value_problem(tp, value, constraints(field))
        if problem is None:
            values[name] = value
        else:
            errors.append({"field": name, "message": problem})
    return values, errors


def finish(cls: type[T], values: dict[str, Any], errors: list[dict[str, str]]) -> T:
    """After :func:`body_fields` and a route's own checks: the ``cls``, or ``ValidationError``."""
    if errors:
        raise ValidationError(_BODY, errors)
    return cls(**values)


def check_query(cls: type[T], args: Mapping[str, list[str]]) -> T:
    """Query parameters as a ``cls``; raises ``InvalidQuery`` (400) naming each bad one.

    ``args`` maps each parameter to its values (``request.args.to_dict(flat=False)``); each may
    be given once; unknown ones are refused.
    """
    fields = attrs.fields_dict(cls)
    hints = typing.get_type_hints(cls)
    errors: list[dict[str, str]] = []
    values: dict[str, Any] = {}
    for name, given in args.items():
        if name not in fields:
            errors.append(
                {"field": name, "message": f"unknown parameter; known: {', '.join(fields)}"}
            )
        elif len(given) != 1:
            errors.append({"field": name, "message": "given more than once"})
        else:
            tp, _ = strip_none(hints[name])
            value, problem = _query_value(tp, given[0], constraints(fields[name]))
            if problem is None:
                values[name] = value
            else:
                errors.append({"field": name, "message": problem})
    if errors:
        raise InvalidQuery(_QUERY, errors)
    return cls(**values)


def _query_value(tp: Any, text: str, rules: Constraints) -> tuple[Any, str | None]:
    if tp is int:
        number = parse_int(text)
        if number is None:
            return None, _bounds_message(rules)
        return number, _int_problem(number, rules)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        names = [member.value for member in tp]
        if text in names:
            return tp(text), None
        return None, f"expected one of {', '.join(names)}"
    if tp is bool:
        if text in ("true", "false"):
            return text == "true", None
        return None, "expected true or false"
    if tp is str:
        return text, _text_problem(text, rules)
    raise TypeError(f"no check for parameters of type {tp!r}")  # pragma: no cover


def parse_int(text: str) -> int | None:
    """A decimal integer of at most 19 digits, else ``None``."""
    text = text.strip()
    return int(text) if _INT.fullmatch(text) else None
