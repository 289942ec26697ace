"""Saga routes. Reads go straight to the store; commands are asked of the coordinator.

=======  ===============================  ==================================================
POST     /sagas/start                     202 new saga, 200 existing (same idempotency key)
GET      /sagas/                          newest first; filters, cursor pagination
GET      /sagas/types/available           the saga types, with a JSON schema of their input
GET      /sagas/<saga_id>                 the saga with its steps
GET      /sagas/<saga_id>/steps           its steps
GET      /sagas/<saga_id>/events          its durable transitions
POST     /sagas/<saga_id>/cancel          202; 409 when it has ended or is parked
POST     /sagas/<saga_id>/retry           202; 409 when it is not parked
=======  ===============================  ==================================================

A saga id that is not a UUID is a 404 like any unknown saga. Errors become responses in
:mod:`.errors`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from collections.abc import Mapping
from typing import Any

from quart import Blueprint, Response, request

from saga_orchestrator.coordinator.messages import CancelSaga, RetrySaga, StartResult, StartSaga
from saga_orchestrator.coordinator.projection import stream_id
from saga_orchestrator.coordinator.state import SagaStatus
from saga_orchestrator.errors import SagaNotFound, ValidationError
from saga_orchestrator.store.records import SagaQuery, decode_cursor

from .app import services
from .correlation import current_correlation_id
from .errors import InvalidJson, InvalidQuery, UnsupportedMediaType
from .serialize import event_json, json_response, saga_json, saga_type_json, step_json

__all__ = ["parse_list_query", "parse_start_body", "sagas"]

sagas = Blueprint("sagas", __name__, url_prefix="/sagas")

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
MAX_EVENTS = 1000
MAX_TEXT = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_STATUSES = tuple(status.value for status in SagaStatus)


# --------------------------------------------------------------------------------------------
# Request parsing.


async def _json_body(*, required: bool = True) -> Any:
    """The request's JSON body; ``None`` when it is empty and not ``required``."""
    data = await request.get_data(as_text=False)
    if not data.strip() and not required:
        return None
    if not request.is_json:
        raise UnsupportedMediaType("the request body must be JSON (Content-Type: application/json)")
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJson(f"the request body is not valid JSON: {exc}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _optional_text(body: Mapping[str, Any], field: str, errors: list[dict[str, str]]) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        errors.append({"field": field, "message": "expected a string or null"})
    elif not 1 <= len(value) <= MAX_TEXT:
        errors.append({"field": field, "message": f"expected 1 to {MAX_TEXT} characters"})
    elif _CONTROL.search(value):
        errors.append({"field": field, "message": "must not contain control characters"})
    else:
        return value
    return None


_START_FIELDS = ("saga_type", "data", "idempotency_key", "correlation_id")


def parse_start_body(body: Any) -> StartSaga:
    """Check a ``POST /sagas/start`` body strictly; raises ``ValidationError`` naming each field.

    The saga's ``data`` is checked against its type's input by the coordinator.
    """
    if not isinstance(body, dict):
        raise ValidationError(
            "the request body is not valid", [{"field": "body", "message": "expected an object"}]
        )
    errors: list[dict[str, str]] = [
        {"field": str(name), "message": "unknown field"}
        for name in body
        if name not in _START_FIELDS
    ]
    saga_type = body.get("saga_type")
    if "saga_type" not in body:
        errors.append({"field": "saga_type", "message": "is required"})
    elif not isinstance(saga_type, str):
        errors.append({"field": "saga_type", "message": "expected a string"})
    elif not 1 <= len(saga_type) <= MAX_TEXT:
        errors.append({"field": "saga_type", "message": f"expected 1 to {MAX_TEXT} characters"})
    if "data" not in body:
        errors.append({"field": "data", "message": "is required"})
    elif not isinstance(body["data"], dict):
        errors.append({"field": "data", "message": "expected an object"})
    idempotency_key = _optional_text(body, "idempotency_key", errors)
    correlation_id = _optional_text(body, "correlation_id", errors)
    if errors:
        raise ValidationError("the request body is not valid", errors)
    return StartSaga(
        saga_type=saga_type,
        data=body["data"],
        idempotency_key=idempotency_key,
        correlation_id=correlation_id or current_correlation_id(),
    )


def _parse_time(text: str) -> float:
    """ISO-8601 (a time without offset is UTC) or seconds since the epoch."""
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise ValueError("not a finite number")
        return number
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


_LIST_PARAMS = ("status", "saga_type", "created_after", "created_before", "cursor", "limit")


def parse_list_query(args: Mapping[str, list[str]]) -> SagaQuery:
    """Check the query of ``GET /sagas/``; raises ``InvalidQuery`` (400) naming each parameter.

    ``args`` maps each parameter to its values (``request.args.to_dict(flat=False)``).
    """
    errors: list[dict[str, str]] = []
    values: dict[str, str] = {}
    for name, given in args.items():
        if name not in _LIST_PARAMS:
            errors.append(
                {"field": name, "message": f"unknown parameter; known: {', '.join(_LIST_PARAMS)}"}
            )
        elif len(given) != 1:
            errors.append({"field": name, "message": "given more than once"})
        else:
            values[name] = given[0]
    query: dict[str, Any] = {}
    if "status" in values:
        if values["status"] in _STATUSES:
            query["status"] = values["status"]
        else:
            errors.append({"field": "status", "message": f"expected one of {', '.join(_STATUSES)}"})
    if "saga_type" in values:
        if values["saga_type"]:
            query["saga_type"] = values["saga_type"]
        else:
            errors.append({"field": "saga_type", "message": "must not be empty"})
    for name in ("created_after", "created_before"):
        if name in values:
            try:
                query[name] = _parse_time(values[name])
            except (ValueError, OverflowError, OSError):
                errors.append(
                    {"field": name, "message": "expected an ISO-8601 time or epoch seconds"}
                )
    if "cursor" in values:
        try:
            decode_cursor(values["cursor"])
        except ValueError:
            errors.append({"field": "cursor", "message": "not a cursor this service gave out"})
        else:
            query["cursor"] = values["cursor"]
    query["limit"] = DEFAULT_LIMIT
    if "limit" in values:
        limit = _parse_int(values["limit"])
        if limit is None or not 1 <= limit <= MAX_LIMIT:
            errors.append(
                {"field": "limit", "message": f"expected an integer from 1 to {MAX_LIMIT}"}
            )
        else:
            query["limit"] = limit
    if errors:
        raise InvalidQuery("the query is not valid", errors)
    return SagaQuery(**query)


def _parse_int(text: str) -> int | None:
    text = text.strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,9}", text):
        return None
    return int(text)


def _saga_id(raw: str) -> str:
    """The canonical form of a saga id; an id that is not a UUID names no saga (404)."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise SagaNotFound(raw) from None


# --------------------------------------------------------------------------------------------
# Routes.


@sagas.post("/start")
async def start_saga() -> Response:
    svc = services()
    message = parse_start_body(await _json_body())
    result: StartResult = await svc.coordinator.ask(message, timeout=svc.command_timeout)
    body = saga_json(result.saga)
    body["created"] = result.created
    headers = {"Location": f"/sagas/{result.saga.saga_id}"}
    return json_response(body, 202 if result.created else 200, headers)


@sagas.get("/")
async def list_sagas() -> Response:
    query = parse_list_query(request.args.to_dict(flat=False))
    page = await services().store.list_sagas(query)
    return json_response(
        {
            "items": [saga_json(record, steps=False) for record in page.items],
            "next_cursor": page.next_cursor,
        }
    )


@sagas.get("/types/available")
async def saga_types() -> Response:
    catalog = services().catalog
    return json_response({"items": [saga_type_json(d) for d in sorted(catalog, key=_name)]})


def _name(definition: Any) -> str:
    return definition.name


@sagas.get("/<saga_id>")
async def get_saga(saga_id: str) -> Response:
    saga_id = _saga_id(saga_id)
    record = await services().store.get_saga(saga_id)
    if record is None:
        raise SagaNotFound(saga_id)
    return json_response(saga_json(record))


@sagas.get("/<saga_id>/steps")
async def get_steps(saga_id: str) -> Response:
    saga_id = _saga_id(saga_id)
    record = await services().store.get_saga(saga_id)
    if record is None:
        raise SagaNotFound(saga_id)
    return json_response(
        {
            "saga_id": record.saga_id,
            "status": record.status,
            "items": [step_json(step) for step in record.steps],
        }
    )


@sagas.get("/<saga_id>/events")
async def get_events(saga_id: str) -> Response:
    saga_id = _saga_id(saga_id)
    errors: list[dict[str, str]] = []
    from_version = _parse_int(request.args.get("from_version", "1"))
    if from_version is None or from_version < 1:
        errors.append({"field": "from_version", "message": "expected an integer >= 1"})
    limit = _parse_int(request.args.get("limit", str(MAX_EVENTS)))
    if limit is None or not 1 <= limit <= MAX_EVENTS:
        errors.append({"field": "limit", "message": f"expected an integer from 1 to {MAX_EVENTS}"})
    if errors:
        raise InvalidQuery("the query is not valid", errors)
    assert from_version is not None and limit is not None
    store = services().store
    events = await store.read_stream(stream_id(saga_id), from_version=from_version, limit=limit)
    if not events and await store.get_saga(saga_id) is None:
        raise SagaNotFound(saga_id)
    next_version = events[-1].version + 1 if len(events) == limit else None
    return json_response(
        {
            "saga_id": saga_id,
            "items": [event_json(event) for event in events],
            "next_from_version": next_version,
        }
    )


@sagas.post("/<saga_id>/cancel")
async def cancel_saga(saga_id: str) -> Response:
    saga_id = _saga_id(saga_id)
    body = await _json_body(required=False)
    reason = "cancelled by request"
    if body is not None:
        if not isinstance(body, dict):
            raise ValidationError(
                "the request body is not valid",
                [{"field": "body", "message": "expected an object"}],
            )
        errors = [{"field": str(k), "message": "unknown field"} for k in body if k != "reason"]
        given = _optional_text(body, "reason", errors)
        if errors:
            raise ValidationError("the request body is not valid", errors)
        reason = given or reason
    svc = services()
    status = await svc.coordinator.ask(
        CancelSaga(saga_id=saga_id, reason=reason), timeout=svc.command_timeout
    )
    return json_response({"saga_id": saga_id, "status": status}, 202)


@sagas.post("/<saga_id>/retry")
async def retry_saga(saga_id: str) -> Response:
    saga_id = _saga_id(saga_id)
    svc = services()
    status = await svc.coordinator.ask(RetrySaga(saga_id=saga_id), timeout=svc.command_timeout)
    return json_response({"saga_id": saga_id, "status": status}, 202)
