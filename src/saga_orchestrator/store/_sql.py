"""The code both SQL backends share (sqlite.py and postgres.py): JSON encoding, the planning of
a batch (version and idempotency-key checks in batch order), row decoders, column lists and the
``list_sagas`` statement builder. Both schemas have the same tables and columns.

(Over 400 lines on purpose: the batch rules both SQL backends must apply alike stay in one
place, beside the encoders they need.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from saga_orchestrator.errors import (
    ConcurrencyError,
    DuplicateEventId,
    DuplicateIdempotencyKey,
    LeaseLost,
    StoreError,
    StoreRejected,
)

from .records import (
    ACTIVE_STATUSES,
    ANY_VERSION,
    AppendRequest,
    AppendResult,
    NewEvent,
    OutboxRecord,
    RecordedEvent,
    SagaPage,
    SagaQuery,
    SagaRecord,
    StepRecord,
    decode_cursor,
    encode_cursor,
)

EVENT_COLUMNS = "position, stream_id, version, event_id, event_type, data, metadata, recorded_at"
SAGA_COLUMN_NAMES = (
    "saga_id",
    "saga_type",
    "saga_version",
    "status",
    "current_step",
    "input",
    "result",
    "error",
    "deadline_at",
    "created_at",
    "updated_at",
    "version",
    "idempotency_key",
    "correlation_id",
    "trigger_event_id",
)
SAGA_COLUMNS = ", ".join(SAGA_COLUMN_NAMES)
STEP_COLUMN_NAMES = (
    "saga_id",
    "step_index",
    "name",
    "status",
    "attempts",
    "started_at",
    "finished_at",
    "result",
    "error",
    "compensation_status",
    "compensation_attempts",
    "compensation_error",
    "error_type",
    "error_frames",
)
OUTBOX_COLUMNS = (
    "id, topic, event_id, event_type, data, metadata, created_at, coalesce(occurred_at, created_at)"
)
"""An outbox row as :func:`outbox_from_row` reads it (``occurred_at`` NULL: ``created_at``)."""

EVENT_TYPES_SQL = """
WITH RECURSIVE t(event_type) AS (
    SELECT min(event_type) FROM events
    UNION ALL
    SELECT (SELECT min(e.event_type) FROM events e WHERE e.event_type > t.event_type)
    FROM t WHERE t.event_type IS NOT NULL
)
SELECT event_type FROM t WHERE event_type IS NOT NULL
"""
"""Distinct event types in order, as a loose index scan (one index probe per type)."""


def dumps(value: Any) -> str:
    """JSON text of ``value``; ``ValueError``/``TypeError`` for what JSON cannot hold."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def loads(text: str | None) -> Any:
    """The value of JSON ``text``; ``None`` for SQL NULL."""
    return None if text is None else json.loads(text)


@attrs.frozen
class EncodedRequest:
    """An append with its JSON already encoded, as rows ready for the database."""

    request: AppendRequest
    events: tuple[tuple[str, str, str, str], ...]
    """(event_id, event_type, data, metadata) per event."""
    saga: tuple[Any, ...] | None
    """The sagas row, columns as :data:`SAGA_COLUMN_NAMES`."""
    steps: tuple[tuple[Any, ...], ...]
    """saga_steps rows, columns as :data:`STEP_COLUMN_NAMES`."""
    outbox: tuple[tuple[str, str, str, str, str, float | None], ...]
    """(topic, event_id, event_type, data, metadata, occurred_at) per message."""
    lease: tuple[str, int] | None = None
    """The appender's (instance id, epoch) on the saga, when the append is fenced."""


def encode_request(request: AppendRequest) -> EncodedRequest | StoreError:
    """Encode ``request``; a value JSON cannot hold makes a ``StoreRejected`` for it alone."""
    try:
        events = tuple(
            (e.event_id, e.event_type, dumps(e.data), dumps(e.metadata)) for e in request.events
        )
        saga = request.saga
        saga_row = None
        steps: tuple[tuple[Any, ...], ...] = ()
        if saga is not None:
            saga_row = (
                saga.saga_id,
                saga.saga_type,
                saga.saga_version,
                saga.status,
                saga.current_step,
                dumps(saga.input),
                None if saga.result is None else dumps(saga.result),
                saga.error,
                float(saga.deadline_at),
                float(saga.created_at),
                float(saga.updated_at),
                saga.version,
                saga.idempotency_key,
                saga.correlation_id,
                saga.trigger_event_id,
            )
            steps = tuple(
                (
                    saga.saga_id,
                    step.index,
                    step.name,
                    step.status,
                    step.attempts,
                    None if step.started_at is None else float(step.started_at),
                    None if step.finished_at is None else float(step.finished_at),
                    None if step.result is None else dumps(step.result),
                    step.error,
                    step.compensation_status,
                    step.compensation_attempts,
                    step.compensation_error,
                    step.error_type,
                    dumps(list(step.error_frames)) if step.error_frames else None,
                )
                for step in saga.steps
            )
        outbox = tuple(
            (
                m.topic,
                m.event.event_id,
                m.event.event_type,
                dumps(m.event.data),
                dumps(m.event.metadata),
                None if m.occurred_at is None else float(m.occurred_at),
            )
            for m in request.outbox
        )
    except (TypeError, ValueError) as exc:
        return json_error(request, exc)
    lease = request.lease
    return EncodedRequest(
        request,
        events,
        saga_row,
        steps,
        outbox,
        None if lease is None or saga is None else (lease.instance_id, lease.epoch),
    )


def json_error(request: AppendRequest, exc: BaseException) -> StoreRejected:
    """The error of a request whose values JSON cannot hold (``exc`` from ``json.dumps``)."""
    return StoreRejected(
        f"cannot store the append to stream {request.stream_id!r}: {exc}; event data and "
        "metadata, saga input and result, and step results must be JSON values "
        "(no NaN or infinity)"
    )


def batch_stream_ids(encoded: Iterable[EncodedRequest | Exception]) -> list[str]:
    """The distinct streams of the requests still to try, sorted (a stable lock order)."""
    return sorted({e.request.stream_id for e in encoded if isinstance(e, EncodedRequest)})


def batch_leased_sagas(encoded: Iterable[EncodedRequest | Exception]) -> list[str]:
    """The distinct sagas of the fenced requests still to try, sorted."""
    return sorted(
        {
            item.request.saga.saga_id
            for item in encoded
            if isinstance(item, EncodedRequest)
            and item.lease is not None
            and item.request.saga is not None
        }
    )


def batch_idempotency_keys(encoded: Iterable[EncodedRequest | Exception]) -> list[str]:
    """The distinct idempotency keys of the sagas of the requests still to try, sorted."""
    keys = set()
    for item in encoded:
        if isinstance(item, EncodedRequest) and item.request.saga is not None:
            key = item.request.saga.idempotency_key
            if key is not None:
                keys.add(key)
    return sorted(keys)


@attrs.define
class BatchPlan:
    """What a batch writes, decided from the streams' versions and the keys' owners."""

    results: list[AppendResult | Exception | None] = attrs.Factory(list)
    """A request's error, or ``None`` until the positions of its events are known."""
    accepted: dict[int, tuple[str, int]] = attrs.Factory(dict)
    """Request index -> (stream_id, version after it)."""
    events: list[tuple[str, int, str, str, str, str]] = attrs.Factory(list)
    """(stream_id, version, event_id, event_type, data, metadata), in commit order."""
    event_request: list[int] = attrs.Factory(list)
    streams: dict[str, int] = attrs.Factory(dict)
    """New version of each stream that grew."""
    sagas: dict[str, tuple[Any, ...]] = attrs.Factory(dict)
    """The last row written for each saga in the batch, with the (owner, owner_epoch) a new
    saga is created with at its end (an existing saga's owner is left as it is)."""
    steps: dict[tuple[str, int], tuple[Any, ...]] = attrs.Factory(dict)
    """The step rows to upsert, by (saga_id, step_index): the last accepted request's row of
    each (the saga's steps not in it are left as they are)."""
    outbox: list[tuple[str, str, str, str, str, float | None]] = attrs.Factory(list)

    def finish(self, positions: Sequence[int]) -> list[AppendResult | Exception]:
        """The results, given the global position of each row of :attr:`events`."""
        per_request: dict[int, list[int]] = {}
        for index, position in zip(self.event_request, positions, strict=True):
            per_request.setdefault(index, []).append(position)
        results: list[AppendResult | Exception] = []
        for index, result in enumerate(self.results):
            if result is None:
                stream_id, version = self.accepted[index]
                result = AppendResult(
                    stream_id=stream_id,
                    version=version,
                    positions=tuple(per_request.get(index, ())),
                )
            results.append(result)
        return results


def plan_batch(
    encoded: Sequence[EncodedRequest | Exception],
    versions: Mapping[str, int],
    owners: Mapping[str, str],
    leases: Mapping[str, tuple[str | None, int]] | None = None,
) -> BatchPlan:
    """Check each request in order against ``versions`` (stream -> current version),
    ``owners`` (idempotency key -> saga id) and ``leases`` (saga id -> its stored (owner,
    epoch), for the sagas of fenced requests that exist), as the earlier requests of the batch
    left them."""
    versions = dict(versions)
    owners = dict(owners)
    leases = dict(leases or {})
    plan = BatchPlan()
    for index, item in enumerate(encoded):
        if not isinstance(item, EncodedRequest):
            plan.results.append(item)
            continue
        request = item.request
        current = versions.get(request.stream_id, 0)
        if request.expected_version not in (ANY_VERSION, current):
            plan.results.append(
                ConcurrencyError(request.stream_id, request.expected_version, current)
            )
            continue
        saga = request.saga
        key = None if saga is None else saga.idempotency_key
        if saga is not None and key is not None:
            owner = owners.get(key)
            if owner is not None and owner != saga.saga_id:
                plan.results.append(DuplicateIdempotencyKey(key, owner))
                continue
        lease = item.lease
        if lease is not None and saga is not None:
            held = leases.get(saga.saga_id)
            if held is not None and held != lease:
                plan.results.append(LeaseLost(saga.saga_id, lease[0], held[0]))
                continue
            leases[saga.saga_id] = lease
        for offset, (event_id, event_type, data, metadata) in enumerate(item.events, start=1):
            plan.events.append(
                (request.stream_id, current + offset, event_id, event_type, data, metadata)
            )
            plan.event_request.append(index)
        version = current + len(item.events)
        if item.events:
            versions[request.stream_id] = version
            plan.streams[request.stream_id] = version
        if saga is not None and item.saga is not None:
            plan.sagas[saga.saga_id] = (*item.saga, *(lease or (None, 0)))
            for row in item.steps:
                plan.steps[row[0], row[1]] = row
            if key is not None:
                owners[key] = saga.saga_id
        plan.outbox.extend(item.outbox)
        plan.accepted[index] = (request.stream_id, version)
        plan.results.append(None)
    return plan


def event_from_row(row: Sequence[Any]) -> RecordedEvent:
    """A row of :data:`EVENT_COLUMNS`."""
    return RecordedEvent(
        position=row[0],
        stream_id=row[1],
        version=row[2],
        event_id=row[3],
        event_type=row[4],
        data=loads(row[5]),
        metadata=loads(row[6]),
        recorded_at=row[7],
    )


def saga_from_row(row: Sequence[Any], steps: Iterable[StepRecord] = ()) -> SagaRecord:
    """A row starting with :data:`SAGA_COLUMNS`."""
    return SagaRecord(
        saga_id=row[0],
        saga_type=row[1],
        saga_version=row[2],
        status=row[3],
        current_step=row[4],
        input=loads(row[5]),
        result=loads(row[6]),
        error=row[7],
        deadline_at=row[8],
        created_at=row[9],
        updated_at=row[10],
        version=row[11],
        idempotency_key=row[12],
        correlation_id=row[13],
        trigger_event_id=row[14],
        steps=tuple(steps),
    )


def step_from_row(row: Sequence[Any], start: int = 0) -> StepRecord:
    """Step columns (from ``step_index`` on) at ``row[start:]``."""
    r = row[start:]
    return StepRecord(
        index=r[0],
        name=r[1],
        status=r[2],
        attempts=r[3],
        started_at=r[4],
        finished_at=r[5],
        result=loads(r[6]),
        error=r[7],
        compensation_status=r[8],
        compensation_attempts=r[9],
        compensation_error=r[10],
        error_type=r[11],
        error_frames=loads(r[12]) or (),
    )


SAGA_WITH_STEPS_SELECT = (
    "SELECT "
    + ", ".join(f"s.{c}" for c in SAGA_COLUMN_NAMES)
    + ", "
    + ", ".join(f"st.{c}" for c in STEP_COLUMN_NAMES[1:])
    + " FROM sagas s LEFT JOIN saga_steps st ON st.saga_id = s.saga_id"
)
"""A saga and its steps in ONE statement (one snapshot); add ``WHERE`` and ``ORDER BY``."""


def saga_from_joined_rows(rows: Sequence[Sequence[Any]]) -> SagaRecord | None:
    """The saga of :data:`SAGA_WITH_STEPS_SELECT` rows ordered by ``st.step_index``."""
    if not rows:
        return None
    width = len(SAGA_COLUMN_NAMES)
    steps = [step_from_row(row, width) for row in rows if row[width] is not None]
    return saga_from_row(rows[0], steps)


def outbox_from_row(row: Sequence[Any]) -> OutboxRecord:
    """A row of :data:`OUTBOX_COLUMNS`."""
    return OutboxRecord(
        id=row[0],
        topic=row[1],
        event=NewEvent(
            event_id=row[2], event_type=row[3], data=loads(row[4]), metadata=loads(row[5])
        ),
        created_at=row[6],
        occurred_at=row[7],
    )


def saga_list_sql(query: SagaQuery, placeholder: Callable[[int], str]) -> tuple[str, list[Any]]:
    """The ``list_sagas`` statement and its parameters; ``placeholder(n)`` spells parameter n
    (1-based). Raises ``ValueError`` for a bad cursor."""
    conditions: list[str] = []
    params: list[Any] = []

    def param(value: Any) -> str:
        """Add ``value`` to the parameters; its placeholder."""
        params.append(value)
        return placeholder(len(params))

    if query.cursor:
        created_at, saga_id = decode_cursor(query.cursor)
        conditions.append(f"(created_at, saga_id) < ({param(created_at)}, {param(saga_id)})")
    if query.statuses:
        conditions.append(f"status IN ({', '.join(param(s) for s in query.statuses)})")
    for column in (
        "saga_type",
        "saga_version",
        "correlation_id",
        "idempotency_key",
        "trigger_event_id",
    ):
        value = getattr(query, column)
        if value is not None:
            conditions.append(f"{column} = {param(value)}")
    for column in ("created", "updated"):
        after, before = getattr(query, f"{column}_after"), getattr(query, f"{column}_before")
        if after is not None:
            conditions.append(f"{column}_at >= {param(float(after))}")
        if before is not None:
            conditions.append(f"{column}_at < {param(float(before))}")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = (
        f"SELECT {SAGA_COLUMNS} FROM sagas{where} "
        f"ORDER BY created_at DESC, saga_id DESC LIMIT {param(max(query.limit, 0) + 1)}"
    )
    return sql, params


def saga_page(rows: Sequence[Sequence[Any]], limit: int) -> SagaPage:
    """The page of ``saga_list_sql`` rows (it fetches one more than ``limit``)."""
    limit = max(limit, 0)
    items = tuple(saga_from_row(row) for row in rows[:limit])
    more = len(rows) > limit
    cursor = encode_cursor(items[-1].created_at, items[-1].saga_id) if more and items else None
    return SagaPage(items=items, next_cursor=cursor)


ACTIVE_SAGAS_SQL_TAIL = "ORDER BY created_at, saga_id"

ACTIVE_COUNTS_SQL = (
    "SELECT saga_type, saga_version, count(*) FROM sagas "
    f"WHERE status IN ({', '.join(repr(status) for status in ACTIVE_STATUSES)}) "
    "GROUP BY saga_type, saga_version"
)
"""How many sagas are active, by type and version."""


def active_counts(rows: Iterable[Sequence[Any]]) -> dict[tuple[str, int], int]:
    """The ``{(type, version): count}`` of ``ACTIVE_COUNTS_SQL`` rows."""
    return {(str(row[0]), int(row[1])): int(row[2]) for row in rows}


def group_by_stream(events: Iterable[RecordedEvent]) -> dict[str, list[RecordedEvent]]:
    """Events (in stream, version order) grouped by stream id."""
    grouped: dict[str, list[RecordedEvent]] = {}
    for event in events:
        grouped.setdefault(event.stream_id, []).append(event)
    return grouped


def request_error(item: Any, exc: BaseException) -> StoreError:
    """The error of one append that the database refused: ``DuplicateEventId`` when an event id
    is taken, else a ``StoreRejected`` that says what was refused. ``item`` is the
    ``AppendRequest`` or what holds it as ``request``."""
    request = item if isinstance(item, AppendRequest) else getattr(item, "request", None)
    if (
        request is not None
        and "event_id" in str(exc)
        and ("unique" in str(exc).lower() or "duplicate" in str(exc).lower())
    ):
        return DuplicateEventId([e.event_id for e in request.events])
    stream = request.stream_id if request is not None else "?"
    return StoreRejected(
        f"cannot store the append to stream {stream!r}: {type(exc).__name__}: {exc}; the store "
        "refuses these values, so the same append can never succeed"
    )
