"""Saga routes. Reads go straight to the store; commands are asked of the coordinator.

=======  ===============================  ==================================================
POST     /sagas/start                     202 new saga, 200 existing (same idempotency key)
GET      /sagas/                          newest first; filters, cursor pagination
GET      /sagas/types/available           the saga types, with a JSON schema of their input
GET      /sagas/<saga_id>                 the saga with its steps
GET      /sagas/<saga_id>/steps           its steps
GET      /sagas/<saga_id>/events          its durable transitions
POST     /sagas/<saga_id>/cancel          202; 409 when it has ended or is parked
=======  ===============================  ==================================================

The operator actions (``retry``, ``resolve``, ...) are in :mod:`.routes_operator`.

A saga id that is not a UUID is a 404 like any unknown saga. ``/sagas/start`` is not a saga
id: ``GET /sagas/start`` is a 405 (``Allow: POST``), not a search for a saga named ``start``.
Errors become responses in :mod:`.errors`.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Sequence
from typing import Any

import trio
from quart import Blueprint, Response, request
from werkzeug.routing import BaseConverter

from saga_orchestrator.coordinator.layout import Placement
from saga_orchestrator.coordinator.messages import CancelSaga, StartResult, StartSaga
from saga_orchestrator.coordinator.projection import stream_id
from saga_orchestrator.coordinator.state import SagaStatus
from saga_orchestrator.errors import SagaNotFound, UnknownSagaType, UnknownSagaVersion
from saga_orchestrator.store.records import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    SagaQuery,
    SagaRecord,
    decode_cursor,
    new_id,
)

from .app import deps
from .correlation import current_correlation_id
from .errors import (
    IDEMPOTENCY_KEY,
    InvalidQuery,
    ServiceStopping,
    StartInterrupted,
    error_response,
)
from .openapi import Reply, created_or_found, operation
from .serialize import (
    event_view,
    json_response,
    saga_summary,
    saga_types_view,
    saga_view,
    step_views,
)
from .validate import check_body, check_query, json_body
from .views.sagas import (
    CancelRequest,
    CommandAccepted,
    ListSagasQuery,
    SagaEvents,
    SagaEventsQuery,
    SagaPage,
    SagaSteps,
    SagaTypes,
    SagaView,
    StartedSaga,
    StartSagaRequest,
    WaitQuery,
)

__all__ = ["parse_list_query", "parse_start_body", "sagas"]

sagas = Blueprint("sagas", __name__, url_prefix="/sagas")

RECHECK_SECONDS = 1.0
"""How often a long poll (``/wait``) re-reads the store besides this process's own news: the
delay with which it sees a change made by another instance."""


class SagaIdConverter(BaseConverter):
    """A path segment that may be a saga id: anything but ``start``, the one route beside
    ``/sagas/<saga_id>`` (a ``GET /sagas/start`` then finds only ``POST /sagas/start``: 405)."""

    regex = r"(?!start$)[^/]+"


sagas.record_once(lambda state: state.app.url_map.converters.setdefault("saga_id", SagaIdConverter))

TAG = "Sagas"


# --------------------------------------------------------------------------------------------
# Request parsing.


def parse_start_body(body: Any) -> StartSaga:
    """Check a ``POST /sagas/start`` body strictly; raises ``ValidationError`` naming each field.

    The saga's ``data`` is checked against its type's input by the coordinator. Every start has
    an idempotency key: without one in the body, a new one is made (``key_is_new``).
    """
    start = check_body(StartSagaRequest, body)
    return StartSaga(
        saga_type=start.saga_type,
        data=start.data,
        idempotency_key=start.idempotency_key or new_id(),
        correlation_id=start.correlation_id or current_correlation_id(),
        key_is_new=start.idempotency_key is None,
        version=start.version,
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


def parse_list_query(args: dict[str, list[str]]) -> SagaQuery:
    """Check the query of ``GET /sagas/``; raises ``InvalidQuery`` (400) naming each parameter.

    ``args`` maps each parameter to its values (``request.args.to_dict(flat=False)``).
    """
    if len(args.get("status", ())) > 1:  # repeated: one list
        args = {**args, "status": [",".join(args["status"])]}
    given = check_query(ListSagasQuery, args)
    errors: list[dict[str, str]] = []
    times: dict[str, float] = {}
    for name in ("created_after", "created_before", "updated_after", "updated_before"):
        text = getattr(given, name)
        if text is not None:
            try:
                times[name] = _parse_time(text)
            except (ValueError, OverflowError, OSError):
                errors.append(
                    {"field": name, "message": "expected an ISO-8601 time or epoch seconds"}
                )
    if given.cursor is not None and not _cursor_is_ours(given.cursor):
        errors.append({"field": "cursor", "message": "not a cursor this service gave out"})
    statuses = () if given.status is None else tuple(dict.fromkeys(given.status.split(",")))
    if given.active is not None:
        wanted = [v.value for v in SagaStatus if (v.value in ACTIVE_STATUSES) == given.active]
        statuses = tuple(v for v in statuses if v in wanted) if statuses else tuple(wanted)
        if not statuses:
            kind = "active" if given.active else "ended or parked"
            errors.append({"field": "active", "message": f"no status given is {kind}"})
    if errors:
        raise InvalidQuery("the query is not valid", errors)
    return SagaQuery(
        statuses=statuses,
        saga_type=given.saga_type,
        saga_version=given.saga_version,
        correlation_id=given.correlation_id,
        idempotency_key=given.idempotency_key,
        trigger_event_id=given.trigger_event_id,
        created_after=times.get("created_after"),
        created_before=times.get("created_before"),
        updated_after=times.get("updated_after"),
        updated_before=times.get("updated_before"),
        cursor=given.cursor,
        limit=given.limit,
    )


def _cursor_is_ours(cursor: str) -> bool:
    """Whether ``cursor`` can be one of ours: a time and a saga id (a UUID), so that nothing
    else it may carry (a NUL character...) reaches the store."""
    try:
        _, saga_id = decode_cursor(cursor)
        return str(uuid.UUID(saga_id)) == saga_id
    except ValueError:
        return False


def _saga_id(raw: str) -> str:
    """The canonical form of a saga id; an id that is not a UUID names no saga (404)."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise SagaNotFound(raw) from None


async def _load(saga_id: str) -> SagaRecord:
    """The saga named by the path; raises ``SagaNotFound`` (404)."""
    saga_id = _saga_id(saga_id)
    record = await deps().store.get_saga(saga_id)
    if record is None:
        raise SagaNotFound(saga_id)
    return record


# --------------------------------------------------------------------------------------------
# Routes.


@sagas.post("/start")
@operation(
    summary="Start a saga",
    description="Its steps run in the background. With an `idempotency_key` already used for "
    "this saga type, the saga it started is returned instead (200); used for another type: 409. "
    "Every start has a key: without one, one is made, kept with the saga and returned (the "
    "body's `idempotency_key` and the `Idempotency-Key` header). A 503 carries the key too: the "
    "saga may have been created, so retry with that key (send your own key to be able to retry "
    "even when no answer comes).",
    tag=TAG,
    body=StartSagaRequest,
    replies=created_or_found(
        StartedSaga,
        created="Started.",
        found="The saga an earlier start with the same key made.",
        headers=(IDEMPOTENCY_KEY,),
    ),
    errors=(409, 503),
    busy_headers=(IDEMPOTENCY_KEY,),
)
async def start_saga() -> Response:
    message = parse_start_body(await json_body())
    key = message.idempotency_key
    assert key is not None
    try:
        result = await _ask_start(message)
    except Exception as exc:
        return error_response(exc, idempotency_key=key)  # a 5xx carries the key
    body = saga_view(result.saga, _placements(result.saga), created=result.created)
    headers = {"Location": f"/sagas/{result.saga.saga_id}", IDEMPOTENCY_KEY: key}
    return json_response(body, 202 if result.created else 200, headers)


async def _ask_start(message: StartSaga) -> StartResult:
    """Ask the coordinator to start; once the service begins to stop the wait is cut short
    in time to answer (see :mod:`.draining`).

    Raises:
        ServiceStopping: the service stops: the start was not asked.
        StartInterrupted: the service began to stop while the start was asked.
    """
    svc = deps()
    if svc.draining.stopping:
        raise ServiceStopping("the service is stopping")
    with svc.draining.bounded():
        result: StartResult = await svc.coordinator.ask(message, timeout=svc.command_timeout)
        return result
    raise StartInterrupted("the service began to stop while the start was in flight")


@sagas.get("/")
@operation(
    summary="List sagas, newest first",
    description="Every filter given must hold. Pages follow the order of creation (time, then "
    "saga id), which never changes: a `cursor` keeps its place while sagas are started or "
    "change (a new saga is on the first page, not the next).",
    tag=TAG,
    query=ListSagasQuery,
    replies=[Reply(status=200, description="A page of sagas.", body=SagaPage)],
    errors=(503,),
)
async def list_sagas() -> Response:
    query = parse_list_query(request.args.to_dict(flat=False))
    page = await deps().store.list_sagas(query)
    items = [saga_summary(record) for record in page.items]
    return json_response(SagaPage(items=items, next_cursor=page.next_cursor))


@sagas.get("/types/available")
@operation(
    summary="The saga types, with the JSON schema of their input and their versions",
    description="Each type's newest loaded version (new sagas start on it), and under "
    "`versions` every version loaded or still run by active sagas, with how many are active on "
    "each: a version may be retired once none is.",
    tag=TAG,
    replies=[Reply(status=200, description="Every saga type.", body=SagaTypes)],
    errors=(503,),
)
async def saga_types() -> Response:
    svc = deps()
    return json_response(saga_types_view(svc.catalog, await svc.store.active_counts()))


def _placements(record: SagaRecord) -> Sequence[Placement | None]:
    """Where each of the saga's steps sits (group, branch), as its definition (its version)
    says; none known (a version not loaded here): plain steps."""
    try:
        return deps().catalog.get(record.saga_type, record.saga_version).placements
    except (UnknownSagaType, UnknownSagaVersion):
        return ()


@sagas.get("/<saga_id:saga_id>")
@operation(
    summary="A saga with its steps",
    tag=TAG,
    replies=[Reply(status=200, description="The saga.", body=SagaView)],
    errors=(503,),
)
async def get_saga(saga_id: str) -> Response:
    record = await _load(saga_id)
    waiting = await _waits_for_definition(record)
    return json_response(saga_view(record, _placements(record), waiting_for_definition=waiting))


async def _waits_for_definition(record: SagaRecord) -> bool:
    """Whether ``record`` is active, on a version this process has not loaded, and no live
    instance drives it."""
    svc = deps()
    if record.status not in ACTIVE_STATUSES:
        return False
    if (record.saga_type, record.saga_version) in svc.catalog.loaded():
        return False
    _, _, live = await svc.store.saga_owner(record.saga_id)
    return not live


@sagas.get("/<saga_id>/steps")
@operation(
    summary="A saga's steps",
    tag=TAG,
    replies=[Reply(status=200, description="Its steps, in order.", body=SagaSteps)],
    errors=(503,),
)
async def get_steps(saga_id: str) -> Response:
    record = await _load(saga_id)
    steps = step_views(record.steps, _placements(record))
    return json_response(SagaSteps(saga_id=record.saga_id, status=record.status, items=steps))


@sagas.get("/<saga_id>/events")
@operation(
    summary="A saga's recorded transitions, oldest first",
    tag=TAG,
    query=SagaEventsQuery,
    replies=[Reply(status=200, description="A page of transitions.", body=SagaEvents)],
    errors=(503,),
)
async def get_events(saga_id: str) -> Response:
    saga_id = _saga_id(saga_id)
    query = check_query(SagaEventsQuery, request.args.to_dict(flat=False))
    store = deps().store
    events = await store.read_stream(
        stream_id(saga_id), from_version=query.from_version, limit=query.limit
    )
    if not events and await store.get_saga(saga_id) is None:
        raise SagaNotFound(saga_id)
    next_version = events[-1].version + 1 if len(events) == query.limit else None
    items = [event_view(event) for event in events]
    return json_response(SagaEvents(saga_id=saga_id, items=items, next_from_version=next_version))


@sagas.get("/<saga_id>/wait")
@operation(
    summary="Wait for a saga to change (long poll)",
    description="Answers the saga as soon as its `version` is past `after_version`, at once if "
    "it already is or the saga has ended for good (`completed`, `compensated`, `cancelled`, "
    "`timed_out`), else when `timeout` seconds have passed: the client compares the version "
    "and asks again. A saga driven by another instance is seen within "
    f"{RECHECK_SECONDS:g} s of its change.",
    tag=TAG,
    query=WaitQuery,
    replies=[Reply(status=200, description="The saga as it is now.", body=SagaView)],
    errors=(503,),
)
async def wait_for_saga(saga_id: str) -> Response:
    query = check_query(WaitQuery, request.args.to_dict(flat=False))
    record = await _load(saga_id)
    svc = deps()
    deadline = trio.current_time() + query.timeout
    with svc.draining.bounded():  # a shutdown answers every wait with what it has
        while record.version <= query.after_version and record.status not in TERMINAL_STATUSES:
            left = deadline - trio.current_time()
            if left <= 0:
                break
            await svc.waiters.changed(record.saga_id, at_most=min(left, RECHECK_SECONDS))
            record = await _load(record.saga_id)
    return json_response(saga_view(record, _placements(record)))


@sagas.post("/<saga_id>/cancel")
@operation(
    summary="Cancel a saga",
    description="The running step is interrupted at once and the completed steps are "
    "compensated; the saga ends `cancelled`. 409 when it has ended or is parked for an operator.",
    tag=TAG,
    body=CancelRequest,
    body_required=False,
    replies=[Reply(status=202, description="Cancellation started.", body=CommandAccepted)],
    errors=(409, 503),
)
async def cancel_saga(saga_id: str) -> Response:
    saga_id = _saga_id(saga_id)
    given = check_body(CancelRequest, await json_body(required=False))
    svc = deps()
    status = await svc.coordinator.ask(
        CancelSaga(saga_id=saga_id, reason=given.reason or "cancelled by request"),
        timeout=svc.command_timeout,
    )
    return json_response(CommandAccepted(saga_id=saga_id, status=status), 202)
