"""The OpenAPI 3.1 document, made from the routes themselves.

(Over 400 lines: the document's builder and the declarations the routes use are one unit.)

Every route declares what it takes and answers with :func:`operation`, next to its Quart
decorator::

    @sagas.post("/<saga_id>/cancel")
    @operation(summary="Cancel a saga", tag="Sagas", body=CancelRequest, body_required=False,
               replies=[Reply(202, "Cancellation started", CommandAccepted)], errors=(409, 503))
    async def cancel_saga(saga_id: str) -> Response: ...

:func:`build_document` walks the app's URL map: each route is one operation, its path
parameters come from the rule, its request body and query from the classes of :mod:`.views`
that the handler checks requests against (:mod:`.validate`), and its responses from the classes
the handler answers with. Every text parameter (path or query) carries the pattern of
:mod:`.boundary`, which checks them all. The errors a route can give follow from what it takes
(a body: 400, 413, 415, 422; a query: 400; a path parameter: 400, 404; not public: 401, and
403 for a write, which a read-only key may not do; always 500) plus the ones it names, each
described with its codes from :data:`~.errors.ERROR_TABLE`.
A route without an :func:`operation` is refused when the app is made
(:func:`check_documented`), so nothing is served undocumented.

``GET /openapi.json`` serves the document and ``GET /docs`` a self-contained HTML page rendering
it (:mod:`.docs_page`: no script, nothing fetched from elsewhere). Both are public like the health
routes: the document describes the API, it grants nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import attrs
from quart import Blueprint, Quart, Response, current_app
from werkzeug.routing import Rule

from saga_orchestrator import __version__
from saga_orchestrator.api_keys import READ_METHODS

from .docs_page import render_html
from .errors import ERROR_TABLE, FRAMEWORK_ERRORS
from .schema import STORABLE_TEXT, SchemaBuilder, constraints, strip_none
from .serialize import json_response
from .views.errors import ErrorBody

__all__ = [
    "DOCS_PATH",
    "OPENAPI_PATH",
    "UI_PREFIX",
    "Operation",
    "Reply",
    "build_document",
    "check_documented",
    "created_or_found",
    "docs_routes",
    "documented_routes",
    "is_ui_path",
    "operation",
    "operation_of",
    "render_html",
    "route_template",
]

F = TypeVar("F", bound=Callable[..., Any])

UI_PREFIX = "/ui"
"""Where the web dashboard is served: its pages are not operations of the API (left out of the
document and of the API-key check; see ``saga_orchestrator.ui``)."""
OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"
_ATTRIBUTE = "__saga_orchestrator_operation__"
_AUTOMATIC_METHODS = frozenset({"HEAD", "OPTIONS"})
"""Methods Quart answers for every route by itself; not operations of their own."""
_RULE_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@attrs.frozen(kw_only=True)
class Reply:
    """A response a route gives when things go well (and the health routes' 503)."""

    status: int
    description: str
    body: Any = None
    """A class of :mod:`.views`, or a union of them; ``None``: see ``media_type``."""
    media_type: str = "application/json"
    schema: dict[str, Any] | None = None
    """For a body that is not a view class: its schema (default: a string)."""
    headers: tuple[str, ...] = ()
    """Header names of :data:`HEADERS` it always has (``X-Correlation-ID`` is always added)."""


@attrs.frozen(kw_only=True)
class Operation:
    """What a route takes and answers."""

    summary: str
    tag: str
    replies: tuple[Reply, ...] = attrs.field(converter=tuple)
    description: str = ""
    public: bool = False
    """Served without the API key (probes, scrapers, this documentation)."""
    body: type[Any] | None = None
    """The request body's class (JSON)."""
    body_required: bool = True
    query: type[Any] | None = None
    """The query's class: each field is a parameter."""
    errors: tuple[int, ...] = ()
    """Error statuses beyond the ones that follow from the above."""
    busy_headers: tuple[str, ...] = ()
    """Header names of :data:`HEADERS` its 503 answers carry (beside ``Retry-After``)."""


def created_or_found(
    body: Any, *, created: str, found: str, headers: tuple[str, ...] = ()
) -> list[Reply]:
    """The replies of a create that is idempotent: 202 made now, 200 made by an earlier request
    with the same key; both with the ``Location`` of what was made (and ``headers``)."""
    return [
        Reply(status=202, description=created, body=body, headers=("Location", *headers)),
        Reply(status=200, description=found, body=body, headers=("Location", *headers)),
    ]


def operation(**kwargs: Any) -> Callable[[F], F]:
    """Declare the :class:`Operation` of a route (put it under the Quart route decorator)."""
    spec = Operation(**kwargs)

    def mark(view: F) -> F:
        setattr(view, _ATTRIBUTE, spec)
        return view

    return mark


def operation_of(view: Callable[..., Any] | None) -> Operation | None:
    """The :class:`Operation` a view declared, or ``None``."""
    return getattr(view, _ATTRIBUTE, None)


# --------------------------------------------------------------------------------------------
# Routes.


def is_ui_path(path: str) -> bool:
    """Whether ``path`` is the dashboard's (not an API operation)."""
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


def documented_routes(app: Quart) -> list[tuple[Rule, str, Operation | None]]:
    """Each ``(rule, method, operation)`` that ``app`` serves, Quart's own HEAD and OPTIONS left
    out (and the dashboard's pages, which are not the API); ``operation`` is ``None`` for a
    route that declared none."""
    routes = []
    for rule in app.url_map.iter_rules():
        if is_ui_path(rule.rule):
            continue
        spec = operation_of(app.view_functions.get(rule.endpoint))
        for method in sorted((rule.methods or set()) - _AUTOMATIC_METHODS):
            routes.append((rule, method, spec))
    return routes


def check_documented(app: Quart) -> None:
    """Raise ``LookupError`` naming each route of ``app`` that declared no :func:`operation`."""
    missing = [f"{method} {rule.rule}" for rule, method, spec in documented_routes(app) if not spec]
    if missing:
        raise LookupError(f"routes without an OpenAPI operation: {', '.join(missing)}")


def public_paths(app: Quart) -> frozenset[str]:
    """The paths of the routes that need no API key."""
    return frozenset(
        rule.rule for rule, _, spec in documented_routes(app) if spec is not None and spec.public
    )


def route_template(rule: Rule) -> str:
    """The rule without its converters: ``/events/stream/<path:stream_id>`` ->
    ``/events/stream/<stream_id>`` (how a segment is matched is not part of the route)."""
    return _RULE_ARGUMENT.sub(r"<\1>", rule.rule)


def openapi_path(rule: Rule) -> str:
    """``/sagas/<saga_id>`` -> ``/sagas/{saga_id}``; ``<path:stream_id>`` -> ``{stream_id}``."""
    return _RULE_ARGUMENT.sub(r"{\1}", rule.rule)


# --------------------------------------------------------------------------------------------
# Parts of the document.

_CORRELATION = "X-Correlation-ID"
HEADERS: dict[str, dict[str, Any]] = {
    _CORRELATION: {
        "description": "The request's correlation id: the one it sent (1 to 128 characters of "
        "letters, digits and `. _ : / + = @ -`), else a new one. Every log line about the "
        "request carries it.",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 128},
    },
    "Location": {
        "description": "Where the resource can be read.",
        "required": True,
        "schema": {"type": "string"},
    },
    "Idempotency-Key": {
        "description": "The start's idempotency key: the one it sent, else the one made for it. "
        "Retrying the start with it returns the same saga and never starts a second one.",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    },
}
"""Response headers, described once (``components/headers``)."""

PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "saga_id": {
        "description": "A saga id (a UUID; anything else is a 404 like an unknown saga).",
        "schema": {"type": "string", "format": "uuid"},
    },
    "stream_id": {
        "description": "A stream id; it may hold slashes.",
        "schema": {"type": "string", "minLength": 1},
    },
}
"""Each path parameter a route may have."""

CORRELATION_PARAMETER = {
    "name": _CORRELATION,
    "in": "header",
    "required": False,
    "description": "A correlation id to use for the request and the saga it starts "
    "(1 to 128 characters of letters, digits and `. _ : / + = @ -`); otherwise one is made.",
    "schema": {"type": "string"},
}

SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {"type": "http", "scheme": "bearer", "description": "The API key as a bearer token."},
}

_STATUS_TEXT = {
    400: "The request is malformed (body not JSON, a bad query or path parameter, or both "
    "`Content-Length` and `Transfer-Encoding`: the connection is then closed).",
    401: "The API key is missing or wrong (`X-API-Key: <key>` or `Authorization: Bearer <key>`).",
    403: "The API key is read-only: it may only read (GET, HEAD, OPTIONS).",
    404: "Not found.",
    409: "Conflicts with the current state.",
    413: "The body is larger than the limit (1 MiB).",
    415: "The body is not `application/json`.",
    422: "The body is not valid: `details` names each bad field.",
    431: "The request line and headers are larger than the limit (`HTTP_MAX_HEADER_BYTES`, "
    "16 KiB by default); the connection is closed.",
    500: "A fault of the service: a fixed message, the details are in its log.",
    503: "Busy, stopping, or a store is down: retry after `Retry-After` seconds.",
}


def _codes(status: int) -> list[str]:
    """The ``error.code`` values a status can have."""
    codes = {rule.code for rule in ERROR_TABLE.values() if rule.status == status}
    codes.update(code for code_status, code in FRAMEWORK_ERRORS if code_status == status)
    return sorted(codes)


def _error_statuses(rule: Rule, method: str, spec: Operation, *, auth: bool) -> list[int]:
    statuses = set(spec.errors) | {400, 431, 500}  # any request: see http/limits.py
    if auth and not spec.public:
        statuses.add(401)
        if method not in READ_METHODS:
            statuses.add(403)  # a read-only key (.auth)
    if spec.body is not None:
        statuses.update((400, 413, 415, 422))
    if spec.query is not None:
        statuses.add(400)
    if rule.arguments:
        statuses.add(400)  # a path parameter no store can keep (.boundary)
        statuses.add(404)  # an unknown saga; or a path that, decoded, matches no route
    return sorted(statuses)


def _storable(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema with the boundary's pattern when it is free text."""
    if schema.get("type") != "string" or {"enum", "pattern", "format"} & set(schema):
        return schema
    return {**schema, "pattern": STORABLE_TEXT}


class _Document:
    def __init__(self, *, auth: bool) -> None:
        self.auth = auth
        self.schemas = SchemaBuilder(refs=True)
        self.error_ref = self.schemas.schema(ErrorBody)

    def operation(self, rule: Rule, method: str, spec: Operation, ids: set[str]) -> dict[str, Any]:
        operation_id = rule.endpoint.rsplit(".", 1)[-1]
        if operation_id in ids:
            raise ValueError(f"two routes are named {operation_id!r}")
        ids.add(operation_id)
        body: dict[str, Any] = {
            "operationId": operation_id,
            "summary": spec.summary,
            "tags": [spec.tag],
        }
        if spec.description:
            body["description"] = spec.description
        body["parameters"] = [
            *self._path_parameters(rule),
            *self._query(spec),
            CORRELATION_PARAMETER,
        ]
        if spec.body is not None:
            body["requestBody"] = {
                "required": spec.body_required,
                "content": {"application/json": {"schema": self.schemas.schema(spec.body)}},
            }
        responses: dict[str, Any] = {}
        for reply in spec.replies:
            responses[str(reply.status)] = self._reply(reply)
        for status in _error_statuses(rule, method, spec, auth=self.auth):
            responses.setdefault(str(status), self._error(status, spec))
        body["responses"] = responses
        if self.auth:
            body["security"] = [] if spec.public else [{"ApiKey": []}, {"Bearer": []}]
        return body

    def _path_parameters(self, rule: Rule) -> Iterable[dict[str, Any]]:
        for name in _RULE_ARGUMENT.findall(rule.rule):
            if name not in PATH_PARAMETERS:
                raise LookupError(f"path parameter {name!r} of {rule.rule} is not described")
            described = PATH_PARAMETERS[name]
            yield {
                "name": name,
                "in": "path",
                "required": True,
                **described,
                "schema": _storable(described["schema"]),
            }

    def _query(self, spec: Operation) -> Iterable[dict[str, Any]]:
        if spec.query is None:
            return
        properties, _ = self.schemas.properties(spec.query)
        for field in attrs.fields(spec.query):
            schema = dict(properties[field.name])
            description = schema.pop("description", None) or constraints(field).description
            if "anyOf" in schema:  # X | None: in a query, a parameter is there or not
                options = [s for s in schema.pop("anyOf") if s != {"type": "null"}]
                schema = (
                    {**options[0], **schema} if len(options) == 1 else {"anyOf": options, **schema}
                )
            if "default" in schema and schema["default"] is None:
                del schema["default"]  # absent, not null
            parameter = {
                "name": field.name,
                "in": "query",
                "required": False,
                "schema": _storable(schema),
            }
            if description:
                parameter["description"] = description
            yield parameter

    def _headers(self, names: Sequence[str]) -> dict[str, Any]:
        return {name: {"$ref": f"#/components/headers/{name}"} for name in (_CORRELATION, *names)}

    def _reply(self, reply: Reply) -> dict[str, Any]:
        if reply.body is not None:
            tp, _ = strip_none(reply.body)
            schema = self.schemas.schema(tp)
        else:
            schema = reply.schema or {"type": "string"}
        return {
            "description": reply.description,
            "headers": self._headers(reply.headers),
            "content": {reply.media_type: {"schema": schema}},
        }

    def _error(self, status: int, spec: Operation) -> dict[str, Any]:
        codes = ", ".join(f"`{code}`" for code in _codes(status))
        headers = ("Retry-After", *spec.busy_headers) if status == 503 else ()
        return {
            "description": f"{_STATUS_TEXT.get(status, 'Error.')} Codes: {codes}.",
            "headers": self._headers(headers),
            "content": {"application/json": {"schema": self.error_ref}},
        }


_DESCRIPTION = """\
A durable saga coordinator. Every response is JSON (but `/metrics` and `/docs`), and every error
has one shape: `{"error": {"code", "message", "details": [{"field", "message"}]}}`.
"""
_AUTH_DESCRIPTION = """
Every operation but the health probes, `/metrics` and this documentation needs the API key, as
`X-API-Key: <key>` or `Authorization: Bearer <key>`.
"""


def build_document(app: Quart, *, auth: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``; ``auth``: the app requires an API key.

    Raises:
        LookupError: a route declared no :func:`operation`, or has an undescribed parameter.
    """
    check_documented(app)
    document = _Document(auth=auth)
    paths: dict[str, dict[str, Any]] = {}
    ids: set[str] = set()
    for rule, method, spec in documented_routes(app):
        assert spec is not None
        item = paths.setdefault(openapi_path(rule), {})
        item[method.lower()] = document.operation(rule, method, spec, ids)
    components: dict[str, Any] = {
        "schemas": dict(sorted(document.schemas.components.items())),
        "headers": HEADERS,
    }
    if auth:
        components["securitySchemes"] = SECURITY_SCHEMES
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Saga orchestrator API",
            "version": __version__,
            "description": _DESCRIPTION + (_AUTH_DESCRIPTION if auth else ""),
        },
        "tags": [
            {"name": "Health", "description": "Probes and metrics; no API key."},
            {"name": "Sagas", "description": "Start, read and cancel sagas; repair parked ones."},
            {"name": "Events", "description": "Publish, read and replay domain events."},
            {"name": "Documentation", "description": "This document; no API key."},
        ],
        "paths": dict(sorted(paths.items())),
        "components": components,
    }


def _document() -> dict[str, Any]:
    """The current app's document, made once."""
    from .app import deps

    cache = current_app.extensions.setdefault("saga_orchestrator.openapi", {})
    if "document" not in cache:
        cache["document"] = build_document(current_app, auth=bool(deps().settings.named_api_keys))
    return cache["document"]


# --------------------------------------------------------------------------------------------
# Serving it.

docs_routes = Blueprint("docs", __name__)

_HTML = "text/html; charset=utf-8"
_HTML_SCHEMA = {"type": "string"}


@docs_routes.get(OPENAPI_PATH)
@operation(
    summary="This API's OpenAPI 3.1 document",
    tag="Documentation",
    public=True,
    replies=[Reply(status=200, description="The document.", schema={"type": "object"})],
)
async def openapi_document() -> Response:
    return json_response(_document())


@docs_routes.get(DOCS_PATH)
@operation(
    summary="The operations, as an HTML page",
    description="A self-contained page (no script, nothing loaded from elsewhere) rendering the "
    "document: each operation with its parameters, body (with an example), answers and "
    "authentication, then each schema.",
    tag="Documentation",
    public=True,
    replies=[
        Reply(status=200, description="The page.", media_type="text/html", schema=_HTML_SCHEMA)
    ],
)
async def docs_page() -> Response:
    response = Response(render_html(_document()), status=200, content_type=_HTML)
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response
