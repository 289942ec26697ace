"""THE one place where errors become HTTP responses.

Every error body has one shape::

    {"error": {"code": "<snake_case>", "message": "...",
               "details": [{"field": "...", "message": "..."}]}}

:data:`ERROR_TABLE` maps an error class to its status and code; an error takes the entry of the
nearest class in its MRO. Client errors (4xx) show their own message; server errors (5xx) show a
fixed, generic message and are logged: no internal text and never a traceback goes to a client.
Quart's own errors (404 of an unknown route, 405, 413 and the like) come out in the same shape.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from quart import Quart, Response
from werkzeug.exceptions import HTTPException

from saga_orchestrator.actors import ActorError, ActorStopped, AskTimeout, MailboxFull, NoReply
from saga_orchestrator.errors import (
    BusError,
    BusUnavailable,
    ConcurrencyError,
    ConflictError,
    DuplicateIdempotencyKey,
    NotFoundError,
    OverloadedError,
    SagaDefinitionMissing,
    SagaNotFound,
    SagaOrchestratorError,
    SagaOwnedElsewhere,
    SagaStateConflict,
    StoreError,
    StoreRejected,
    StoreUnavailable,
    UnknownSagaType,
    UnknownSagaVersion,
    ValidationError,
)

from .serialize import json_response
from .views import to_json
from .views.errors import ErrorBody, ErrorDetail, FieldError

__all__ = [
    "ERROR_TABLE",
    "FRAMEWORK_ERRORS",
    "IDEMPOTENCY_KEY",
    "AmbiguousFraming",
    "ApiKeyRejected",
    "CsrfRejected",
    "ErrorRule",
    "HeaderTooLarge",
    "InvalidJson",
    "InvalidPath",
    "InvalidQuery",
    "LiveStreamsFull",
    "ReadOnlyKey",
    "ServiceStopping",
    "StartInterrupted",
    "UnsupportedMediaType",
    "error_body",
    "error_response",
    "install_error_handlers",
    "rule_for",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Errors of the HTTP layer itself.


class InvalidQuery(ValidationError):
    """A query parameter has a bad value (400, not 422: the URL is wrong, not the body)."""


class InvalidPath(ValidationError):
    """A path parameter has a value no route can take (400, like a bad query parameter)."""


class InvalidJson(SagaOrchestratorError):
    """The request body is not valid JSON."""


class UnsupportedMediaType(SagaOrchestratorError):
    """The request body is not ``application/json``."""


class ServiceStopping(SagaOrchestratorError):
    """The service is stopping: the request was refused before it reached the coordinator."""


class StartInterrupted(SagaOrchestratorError):
    """The service began to stop while a start waited for the coordinator: its outcome is not
    known yet (the saga may have been created)."""


class ApiKeyRejected(SagaOrchestratorError):
    """The API key (``X-API-Key`` or ``Authorization: Bearer``) is missing or wrong."""


class ReadOnlyKey(SagaOrchestratorError):
    """A read-only API key was used for a write or an operator action (any method but
    ``GET``, ``HEAD`` and ``OPTIONS``)."""


class CsrfRejected(SagaOrchestratorError):
    """A dashboard form came without the CSRF token of the session that posts it."""


class LiveStreamsFull(SagaOrchestratorError):
    """The dashboard serves ``UI_LIVE_CONNECTIONS`` live-update streams already."""

    retry_after = 5.0


class HeaderTooLarge(SagaOrchestratorError):
    """The request head (request line and headers) is larger than ``HTTP_MAX_HEADER_BYTES``."""


class AmbiguousFraming(SagaOrchestratorError):
    """The request has both ``Content-Length`` and ``Transfer-Encoding``: where its body ends
    depends on which one a server believes (request smuggling)."""


# --------------------------------------------------------------------------------------------
# The table.


@attrs.frozen
class ErrorRule:
    status: int
    code: str
    """The ``error.code`` of the body."""
    message: str | None = None
    """Shown instead of the error's own text (server errors: never leak internals)."""
    retry_after: bool = False
    """Send ``Retry-After`` (the error's ``retry_after`` seconds, else 1)."""
    log_level: int | None = None
    """Log the error at this level (``ERROR`` logs the traceback too); ``None``: not logged."""
    close: bool = False
    """Close the connection after the answer (``Connection: close``): what follows the
    request on the connection cannot be trusted to be a request."""


_BUSY = "the service is busy; retry later"
_INTERNAL = "internal server error"
_STOPPING = "the service is stopping or restarting; retry later"

ERROR_TABLE: dict[type[BaseException], ErrorRule] = {
    # 4xx: the caller can fix it; its own message is shown.
    InvalidQuery: ErrorRule(400, "invalid_query"),
    InvalidPath: ErrorRule(400, "invalid_path"),
    InvalidJson: ErrorRule(400, "invalid_json"),
    AmbiguousFraming: ErrorRule(400, "ambiguous_framing", close=True),
    ApiKeyRejected: ErrorRule(401, "unauthorized"),
    ReadOnlyKey: ErrorRule(403, "forbidden"),
    CsrfRejected: ErrorRule(403, "csrf_rejected"),
    SagaNotFound: ErrorRule(404, "saga_not_found"),
    NotFoundError: ErrorRule(404, "not_found"),
    ConcurrencyError: ErrorRule(409, "concurrency_conflict"),
    SagaStateConflict: ErrorRule(409, "saga_state_conflict"),
    DuplicateIdempotencyKey: ErrorRule(409, "duplicate_idempotency_key"),
    ConflictError: ErrorRule(409, "conflict"),
    UnsupportedMediaType: ErrorRule(415, "unsupported_media_type"),
    HeaderTooLarge: ErrorRule(431, "request_header_too_large", close=True),
    ValidationError: ErrorRule(422, "validation_error"),
    # A NotFoundError, but in a request body an unknown type is a validation problem.
    UnknownSagaType: ErrorRule(422, "unknown_saga_type"),
    UnknownSagaVersion: ErrorRule(422, "unknown_saga_version"),
    SagaDefinitionMissing: ErrorRule(409, "definition_not_loaded"),
    # 5xx: a fixed message; the details go to the log.
    OverloadedError: ErrorRule(503, "overloaded", retry_after=True),
    SagaOwnedElsewhere: ErrorRule(
        503,
        "owner_unavailable",
        "another instance drives this saga and did not answer; retry later",
        retry_after=True,
        log_level=logging.WARNING,
    ),
    MailboxFull: ErrorRule(503, "overloaded", _BUSY, retry_after=True),
    AskTimeout: ErrorRule(503, "timeout", _BUSY, retry_after=True, log_level=logging.WARNING),
    ActorStopped: ErrorRule(
        503,
        "unavailable",
        _STOPPING,
        retry_after=True,
        log_level=logging.WARNING,
    ),
    NoReply: ErrorRule(503, "unavailable", _BUSY, retry_after=True, log_level=logging.WARNING),
    ServiceStopping: ErrorRule(503, "unavailable", _STOPPING, retry_after=True),
    LiveStreamsFull: ErrorRule(
        503,
        "too_many_streams",
        "the dashboard serves as many live streams as it may (UI_LIVE_CONNECTIONS); retry later",
        retry_after=True,
    ),
    StartInterrupted: ErrorRule(503, "unavailable", _STOPPING, retry_after=True),
    StoreUnavailable: ErrorRule(
        503,
        "store_unavailable",
        "the store is unavailable; retry later",
        retry_after=True,
        log_level=logging.WARNING,
    ),
    StoreRejected: ErrorRule(
        422,
        "rejected_by_store",
        "the store refused a value of the request (for example a NUL character); change it",
        log_level=logging.WARNING,
    ),
    StoreError: ErrorRule(500, "store_error", "the store failed", log_level=logging.ERROR),
    BusUnavailable: ErrorRule(
        503,
        "bus_unavailable",
        "the event bus is unavailable; retry later",
        retry_after=True,
        log_level=logging.WARNING,
    ),
    BusError: ErrorRule(500, "bus_error", "the event bus failed", log_level=logging.ERROR),
    ActorError: ErrorRule(500, "internal_error", _INTERNAL, log_level=logging.ERROR),
    BaseException: ErrorRule(500, "internal_error", _INTERNAL, log_level=logging.ERROR),
}
"""Error class -> status and code; the nearest class in an error's MRO wins."""

_NOT_STARTED = (OverloadedError, MailboxFull, ServiceStopping)
"""Errors a start gets before anything is created: refused at admission or before asking."""
IDEMPOTENCY_KEY = "Idempotency-Key"
"""The header that carries a start's idempotency key in its answer."""


def rule_for(error: BaseException) -> ErrorRule:
    for cls in type(error).__mro__:
        rule = ERROR_TABLE.get(cls)
        if rule is not None:
            return rule
    return ERROR_TABLE[BaseException]  # pragma: no cover  (BaseException is in every MRO)


# --------------------------------------------------------------------------------------------
# Bodies and responses.


FRAMEWORK_ERRORS: tuple[tuple[int, str], ...] = (
    (400, "bad_request"),
    (404, "not_found"),
    (405, "method_not_allowed"),
    (413, "request_entity_too_large"),
)
"""Status and code of the errors Quart raises itself (``http_exception_response``) that a
client can meet: a request it cannot read, no such route, a wrong method, a body too large."""


def error_body(
    code: str,
    message: str,
    details: Sequence[Mapping[str, Any]] = (),
    *,
    available_types: Sequence[str] | None = None,
    saga_status: str | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """``{"error": {"code", "message", "details"[, "available_types"][, "saga_status"]
    [, "idempotency_key"]}}``."""
    detail = ErrorDetail(
        code=code,
        message=message,
        details=[FieldError(field=str(d["field"]), message=str(d["message"])) for d in details],
        available_types=None if available_types is None else list(available_types),
        saga_status=saga_status,
        idempotency_key=idempotency_key,
    )
    return to_json(ErrorBody(error=detail))


def _details(error: BaseException) -> list[dict[str, str]]:
    if isinstance(error, ValidationError):
        return [
            {"field": str(item.get("field", "")), "message": str(item.get("message", ""))}
            for item in error.errors
        ]
    if isinstance(error, UnknownSagaType):
        return [{"field": "saga_type", "message": f"unknown saga type {error.saga_type!r}"}]
    if isinstance(error, UnknownSagaVersion):
        loaded = ", ".join(str(v) for v in error.available)
        return [{"field": "version", "message": f"not loaded; loaded versions: {loaded}"}]
    return []


def _retry_after(error: BaseException) -> str:
    seconds = getattr(error, "retry_after", 1.0)
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        seconds = 1.0
    return str(max(1, math.ceil(seconds)))


def error_response(error: BaseException, *, idempotency_key: str | None = None) -> Response:
    """The response for ``error``, after :data:`ERROR_TABLE` (logging it when the rule says).

    ``idempotency_key``: the key of the start that failed. A server error then carries it (the
    ``Idempotency-Key`` header and ``error.idempotency_key``) and says whether the saga may
    have been created: retrying with the key returns it if it was, and never starts a second.
    """
    rule = rule_for(error)
    if rule.log_level is not None:
        if rule.log_level >= logging.ERROR:
            log.error("request failed: %s", type(error).__name__, exc_info=error)
        else:
            log.log(rule.log_level, "request failed: %s: %s", type(error).__name__, error)
    message = rule.message if rule.message is not None else (str(error) or rule.code)
    available = list(error.available) if isinstance(error, UnknownSagaType) else None
    headers = {"Retry-After": _retry_after(error)} if rule.retry_after else {}
    if rule.close:
        headers["Connection"] = "close"
    if idempotency_key is None or rule.status < 500:
        idempotency_key = None
    else:
        headers[IDEMPOTENCY_KEY] = idempotency_key
        outcome = "was not" if isinstance(error, _NOT_STARTED) else "may have been"
        message = f"{message}; the saga {outcome} created: retry with this idempotency key"
    body = error_body(
        rule.code,
        message,
        _details(error),
        available_types=available,
        saga_status=error.status if isinstance(error, SagaStateConflict) else None,
        idempotency_key=idempotency_key,
    )
    return json_response(body, rule.status, headers)


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "http_error"


def http_exception_response(error: HTTPException) -> Response:
    """Quart's and werkzeug's own errors (unknown route, wrong method, body too large...)."""
    status = error.code or 500
    if status >= 500:
        log.error(
            "request failed: %s", error.name, exc_info=getattr(error, "original_exception", None)
        )
        return json_response(error_body("internal_error", _INTERNAL), status)
    headers = {}
    valid_methods = getattr(error, "valid_methods", None)
    if valid_methods:
        headers["Allow"] = ", ".join(valid_methods)
    if status == 413:
        # The rest of the body is not worth reading: the connection is closed after the answer.
        headers["Connection"] = "close"
    message = error.description or error.name
    return json_response(error_body(_snake(error.name), message), status, headers)


def install_error_handlers(app: Quart) -> None:
    """Route every error a request can raise through this module."""

    async def on_http_exception(error: HTTPException) -> Response:
        return http_exception_response(error)

    async def on_exception(error: Exception) -> Response:
        return error_response(error)

    app.register_error_handler(HTTPException, on_http_exception)
    app.register_error_handler(Exception, on_exception)
