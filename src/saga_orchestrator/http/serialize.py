"""From the store's records and the saga definitions to the JSON the API answers with.

Timestamps are ISO-8601 strings in UTC (``2024-05-01T12:00:00.123456Z``). Everything here is
pure: dictionaries in, dictionaries out, except :func:`json_response`.
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
from quart import Response, current_app

from saga_orchestrator.coordinator.definition import SagaDefinition
from saga_orchestrator.store.records import RecordedEvent, SagaRecord, StepRecord

__all__ = [
    "event_json",
    "input_schema",
    "iso_time",
    "json_response",
    "saga_json",
    "saga_type_json",
    "step_json",
]


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def iso_time(timestamp: float | None) -> str | None:
    """Seconds since the epoch as an ISO-8601 UTC string; ``None`` stays ``None``."""
    if timestamp is None:
        return None
    try:
        moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):  # beyond year 9999 (a huge saga timeout)
        moment = dt.datetime.max.replace(tzinfo=dt.UTC) if timestamp > 0 else _EPOCH
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def step_json(step: StepRecord) -> dict[str, Any]:
    return {
        "index": step.index,
        "name": step.name,
        "status": step.status,
        "attempts": step.attempts,
        "started_at": iso_time(step.started_at),
        "finished_at": iso_time(step.finished_at),
        "result": step.result,
        "error": step.error,
        "compensation_status": step.compensation_status,
        "compensation_attempts": step.compensation_attempts,
        "compensation_error": step.compensation_error,
    }


def saga_json(record: SagaRecord, *, steps: bool = True) -> dict[str, Any]:
    """A saga as the API shows it; ``steps=False`` leaves the step list out (saga lists)."""
    body: dict[str, Any] = {
        "saga_id": record.saga_id,
        "saga_type": record.saga_type,
        "saga_version": record.saga_version,
        "status": record.status,
        "current_step": record.current_step,
        "input": record.input,
        "result": record.result,
        "error": record.error,
        "idempotency_key": record.idempotency_key,
        "correlation_id": record.correlation_id,
        "deadline_at": iso_time(record.deadline_at),
        "created_at": iso_time(record.created_at),
        "updated_at": iso_time(record.updated_at),
        "version": record.version,
    }
    if steps:
        body["steps"] = [step_json(step) for step in record.steps]
    return body


def event_json(event: RecordedEvent) -> dict[str, Any]:
    """One transition of a saga's stream."""
    return {
        "position": event.position,
        "version": event.version,
        "event_id": event.event_id,
        "type": event.event_type,
        "data": event.data,
        "metadata": event.metadata,
        "recorded_at": iso_time(event.recorded_at),
    }


def saga_type_json(definition: SagaDefinition) -> dict[str, Any]:
    return {
        "name": definition.name,
        "version": definition.version,
        "description": definition.description,
        "steps": [
            {
                "name": step.name,
                "has_compensation": step.compensation is not None,
                "timeout_seconds": step.timeout,
            }
            for step in definition.steps
        ],
        "triggers": list(definition.triggers),
        "input_schema": input_schema(definition.input_type),
    }


# --------------------------------------------------------------------------------------------
# A simple JSON schema of an attrs input class.

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


def input_schema(cls: type[Any]) -> dict[str, Any]:
    """A JSON schema (draft 2020-12 subset) of an attrs class: field names, types, required.

    Types it does not know become ``{}`` (anything).
    """
    return _schema(cls, depth=0)


def _schema(tp: Any, *, depth: int) -> dict[str, Any]:
    if depth > 8:  # a self-referencing input: stop describing
        return {}
    if tp is Any or tp is typing.Any:
        return {}
    if tp in _SCALARS:
        return dict(_SCALARS[tp])
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [member.value for member in tp]}
    if isinstance(tp, type) and attrs.has(tp):
        return _object_schema(tp, depth=depth)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        options = [_schema(arg, depth=depth + 1) for arg in args]
        return {"anyOf": options}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if tp in _ARRAYS or origin in _ARRAYS:
        schema: dict[str, Any] = {"type": "array"}
        if origin in (set, frozenset):
            schema["uniqueItems"] = True
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            schema["prefixItems"] = [_schema(arg, depth=depth + 1) for arg in args]
            schema["minItems"] = schema["maxItems"] = len(args)
        elif args:
            schema["items"] = _schema(args[0], depth=depth + 1)
        return schema
    if tp in _OBJECTS or origin in _OBJECTS:
        schema = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = _schema(args[1], depth=depth + 1)
        return schema
    return {}


def _object_schema(cls: type[Any], *, depth: int) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: fall back to what attrs holds
        hints = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in attrs.fields(cls):
        schema = _schema(hints.get(field.name, field.type), depth=depth + 1)
        if field.default is attrs.NOTHING:
            required.append(field.name)
        elif not isinstance(field.default, attrs.Factory) and _is_json(field.default):  # type: ignore[arg-type]
            schema["default"] = field.default
        properties[field.name] = schema
    return {
        "type": "object",
        "title": cls.__name__,
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


# --------------------------------------------------------------------------------------------


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response with ``body`` (keys in the order given)."""
    response = current_app.response_class(
        json.dumps(body, ensure_ascii=False, allow_nan=False, default=str),
        status=status,
        content_type="application/json",
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
