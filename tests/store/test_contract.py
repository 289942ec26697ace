"""The store contract (``StoreBackend``), run over every backend: memory, SQLite, PostgreSQL."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import attrs
import pytest
import trio
import trio_asyncio

from saga_orchestrator.errors import (
    ConcurrencyError,
    DuplicateEventId,
    DuplicateIdempotencyKey,
    StoreError,
    StoreRejected,
    StoreUnavailable,
)
from saga_orchestrator.store.backend import StoreBackend
from saga_orchestrator.store.postgres import WRITE_LOCK_KEY, PostgresBackend
from saga_orchestrator.store.records import (
    ANY_VERSION,
    AppendRequest,
    AppendResult,
    NewEvent,
    OutboxMessage,
    SagaQuery,
    SagaRecord,
    StepRecord,
    encode_cursor,
)
from saga_orchestrator.store.sqlite import SQLiteBackend

from .conftest import DURABLE_KINDS, POSTGRESQL, SQL_KINDS, StoreTarget

T0 = 1_700_000_000.123456789
"""A timestamp with a fraction that only an exact float round trip keeps."""


def event(event_type: str = "Happened", **data: object) -> NewEvent:
    return NewEvent(event_type=event_type, data=dict(data), metadata={"by": "test"})


def request(
    stream_id: str,
    expected: int,
    *events: NewEvent,
    saga: SagaRecord | None = None,
    outbox: tuple[OutboxMessage, ...] = (),
) -> AppendRequest:
    return AppendRequest(
        stream_id=stream_id, expected_version=expected, events=events, saga=saga, outbox=outbox
    )


def saga_record(
    saga_id: str,
    *,
    created_at: float = T0,
    status: str = "running",
    saga_type: str = "order",
    key: str | None = None,
    steps: tuple[StepRecord, ...] = (),
    version: int = 1,
    **changes: object,
) -> SagaRecord:
    record = SagaRecord(
        saga_id=saga_id,
        saga_type=saga_type,
        saga_version=2,
        status=status,
        current_step=None,
        input={"order_id": saga_id, "amount": 12.5, "items": [1, 2, {"n": None}]},
        result=None,
        error=None,
        deadline_at=created_at + 3600.25,
        created_at=created_at,
        updated_at=created_at + 0.001,
        version=version,
        idempotency_key=key,
        correlation_id=f"corr-{saga_id}",
        steps=steps,
    )
    return attrs.evolve(record, **changes)


def step(index: int, status: str = "pending", **changes: object) -> StepRecord:
    return attrs.evolve(StepRecord(index=index, name=f"step-{index}", status=status), **changes)


async def commit_ok(backend: StoreBackend, *requests: AppendRequest) -> list[AppendResult]:
    results = await backend.commit(list(requests))
    assert all(isinstance(r, AppendResult) for r in results), results
    return results  # type: ignore[return-value]


async def create_sagas(backend: StoreBackend, *sagas: SagaRecord) -> None:
    await commit_ok(backend, *(request(s.saga_id, 0, event("SagaStarted"), saga=s) for s in sagas))


# -- appending and reading streams --------------------------------------------------------------


async def test_append_then_read_stream(backend: StoreBackend) -> None:
    events = [event("OrderPlaced", n=1, price=9.99), event("Paid", n=2), event("Shipped", n=3)]
    before = time.time()
    (result,) = await commit_ok(backend, request("order-1", 0, *events))
    after = time.time()

    assert result.stream_id == "order-1"
    assert result.version == 3
    assert len(result.positions) == 3
    assert list(result.positions) == sorted(result.positions)
    assert len(set(result.positions)) == 3

    recorded = await backend.read_stream("order-1")
    assert [e.version for e in recorded] == [1, 2, 3]
    assert [e.position for e in recorded] == list(result.positions)
    for got, sent in zip(recorded, events, strict=True):
        assert got.stream_id == "order-1"
        assert got.event_id == sent.event_id
        assert got.event_type == sent.event_type
        assert got.data == sent.data
        assert got.metadata == sent.metadata
        assert before - 1 <= got.recorded_at <= after + 1

    assert [e.version for e in await backend.read_stream("order-1", from_version=2)] == [2, 3]
    assert [e.version for e in await backend.read_stream("order-1", from_version=2, limit=1)] == [2]
    assert await backend.read_stream("order-1", from_version=4) == []
    assert await backend.read_stream("no-such-stream") == []


async def test_json_values_round_trip(backend: StoreBackend) -> None:
    data = {
        "text": 'naïve ☃ "quoted" \\ back',
        "int": 2**53 + 1,
        "neg": -7,
        "float": 0.1,
        "tiny": 5e-324,
        "nested": {"list": [1, "two", None, True, False, {"deep": []}]},
        "empty": {},
    }
    await commit_ok(backend, request("json", 0, NewEvent(event_type="J", data=data)))
    (got,) = await backend.read_stream("json")
    assert got.data == data
    assert got.metadata == {}


async def test_positions_follow_commit_order_across_streams(backend: StoreBackend) -> None:
    first = await commit_ok(
        backend,
        request("a", 0, event(), event()),
        request("b", 0, event()),
        request("a", 2, event()),
    )
    second = await commit_ok(backend, request("c", 0, event()), request("b", 1, event()))
    positions = [p for result in first + second for p in result.positions]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions) == 6

    everything = await backend.read_all()
    assert [e.position for e in everything] == positions
    assert [(e.stream_id, e.version) for e in everything] == [
        ("a", 1),
        ("a", 2),
        ("b", 1),
        ("a", 3),
        ("c", 1),
        ("b", 2),
    ]


async def test_read_all_after_a_position(backend: StoreBackend) -> None:
    results = await commit_ok(backend, *(request(f"s-{i}", 0, event(n=i)) for i in range(6)))
    positions = [r.positions[0] for r in results]

    after_two = await backend.read_all(after_position=positions[1])
    assert [e.position for e in after_two] == positions[2:]
    page = await backend.read_all(after_position=positions[1], limit=2)
    assert [e.position for e in page] == positions[2:4]
    assert await backend.read_all(after_position=positions[-1]) == []
    assert [e.position for e in await backend.read_all(limit=3)] == positions[:3]


async def test_read_streams_returns_each_named_stream_in_version_order(
    backend: StoreBackend,
) -> None:
    await commit_ok(backend, request("a", 0, event(n=1), event(n=2)), request("b", 0, event(n=3)))
    await commit_ok(backend, request("a", 2, event(n=4)), request("c", 0, event(n=5)))
    streams = await backend.read_streams(["a", "b", "missing", "a"])
    assert ["a", "b"] == sorted(streams)
    assert [1, 2, 4] == [e.data["n"] for e in streams["a"]]
    assert [1, 2, 3] == [e.version for e in streams["a"]]
    assert [3] == [e.data["n"] for e in streams["b"]]
    assert {} == await backend.read_streams([])
    many = [f"s-{i}" for i in range(1200)]  # more ids than one SQLite statement takes
    await commit_ok(backend, *(request(s, 0, event()) for s in many))
    assert 1200 == len(await backend.read_streams(many))


async def test_an_event_can_be_found_by_its_id(backend: StoreBackend) -> None:
    first = event(n=1)
    await commit_ok(backend, request("a", 0, event(n=0), first))
    found = await backend.find_event(first.event_id)
    assert found is not None and ("a", 2, {"n": 1}) == (found.stream_id, found.version, found.data)
    assert await backend.find_event("no-such-event") is None


async def test_event_types_sorted_and_distinct(backend: StoreBackend) -> None:
    assert await backend.event_types() == []
    await commit_ok(
        backend,
        request("x", 0, event("b.Second"), event("a.First"), event("b.Second")),
        request("y", 0, event("Zed"), event("a.First"), event("B")),
    )
    assert await backend.event_types() == ["B", "Zed", "a.First", "b.Second"]


# -- optimistic concurrency ---------------------------------------------------------------------


async def test_new_stream_expects_version_zero(backend: StoreBackend) -> None:
    (created,) = await commit_ok(backend, request("fresh", 0, event()))
    assert created.version == 1
    (again,) = await backend.commit([request("fresh", 0, event())])
    assert isinstance(again, ConcurrencyError)
    assert (again.stream_id, again.expected, again.actual) == ("fresh", 0, 1)
    assert len(await backend.read_stream("fresh")) == 1


async def test_a_conflicting_request_fails_alone(backend: StoreBackend) -> None:
    await commit_ok(backend, request("busy", 0, event(), event()))
    results = await backend.commit(
        [
            request("one", 0, event()),
            request("busy", 1, event()),  # the stream is at 2
            request("unborn", 3, event()),  # the stream does not exist
            request("two", 0, event()),
        ]
    )
    ok_one, conflict, unborn, ok_two = results
    assert isinstance(ok_one, AppendResult) and ok_one.version == 1
    assert isinstance(ok_two, AppendResult) and ok_two.version == 1
    assert isinstance(conflict, ConcurrencyError)
    assert (conflict.stream_id, conflict.expected, conflict.actual) == ("busy", 1, 2)
    assert isinstance(unborn, ConcurrencyError)
    assert (unborn.stream_id, unborn.expected, unborn.actual) == ("unborn", 3, 0)

    assert len(await backend.read_stream("busy")) == 2
    assert await backend.read_stream("unborn") == []
    assert [e.stream_id for e in await backend.read_all()] == ["busy", "busy", "one", "two"]


async def test_requests_for_one_stream_apply_in_batch_order(backend: StoreBackend) -> None:
    results = await backend.commit(
        [
            request("s", 0, event(n=1), event(n=2)),
            request("s", 2, event(n=3)),
            request("s", 2, event(n=99)),  # stale: the request before moved it to 3
            request("s", ANY_VERSION, event(n=4)),
            request("s", 4, event(n=5)),
        ]
    )
    first, second, stale, any_version, last = results
    assert isinstance(first, AppendResult) and first.version == 2
    assert isinstance(second, AppendResult) and second.version == 3
    assert isinstance(stale, ConcurrencyError) and (stale.expected, stale.actual) == (2, 3)
    assert isinstance(any_version, AppendResult) and any_version.version == 4
    assert isinstance(last, AppendResult) and last.version == 5
    stream = await backend.read_stream("s")
    assert [e.data["n"] for e in stream] == [1, 2, 3, 4, 5]
    assert [e.version for e in stream] == [1, 2, 3, 4, 5]


async def test_any_version_appends_whatever_the_version(backend: StoreBackend) -> None:
    (first,) = await commit_ok(backend, request("free", ANY_VERSION, event()))
    (second,) = await commit_ok(backend, request("free", ANY_VERSION, event(), event()))
    assert (first.version, second.version) == (1, 3)


async def test_a_request_without_events_checks_and_keeps_the_version(
    backend: StoreBackend,
) -> None:
    await commit_ok(backend, request("quiet", 0, event()))
    (same,) = await commit_ok(backend, request("quiet", 1, saga=saga_record("quiet")))
    assert same.version == 1 and same.positions == ()
    (stale,) = await backend.commit([request("quiet", 0)])
    assert isinstance(stale, ConcurrencyError)


# -- idempotency keys ---------------------------------------------------------------------------


async def test_a_taken_idempotency_key_fails_alone(backend: StoreBackend) -> None:
    await create_sagas(backend, saga_record("saga-a", key="key-1"))
    results = await backend.commit(
        [
            request("saga-b", 0, event(), saga=saga_record("saga-b", key="key-1")),
            request("saga-c", 0, event(), saga=saga_record("saga-c", key="key-2")),
            request("saga-d", 0, event(), saga=saga_record("saga-d", key="key-3")),
            request("saga-e", 0, event(), saga=saga_record("saga-e", key="key-3")),
            # The owner itself may write its key again.
            request("saga-a", 1, event(), saga=saga_record("saga-a", key="key-1", version=2)),
        ]
    )
    taken, ok_c, ok_d, taken_in_batch, owner_again = results
    assert isinstance(taken, DuplicateIdempotencyKey)
    assert (taken.idempotency_key, taken.saga_id) == ("key-1", "saga-a")
    assert isinstance(taken_in_batch, DuplicateIdempotencyKey)
    assert (taken_in_batch.idempotency_key, taken_in_batch.saga_id) == ("key-3", "saga-d")
    assert isinstance(ok_c, AppendResult) and isinstance(ok_d, AppendResult)
    assert isinstance(owner_again, AppendResult) and owner_again.version == 2

    assert await backend.get_saga("saga-b") is None
    assert await backend.read_stream("saga-b") == []
    assert await backend.get_saga("saga-e") is None
    found = await backend.find_saga_by_key("key-1")
    assert found is not None and found.saga_id == "saga-a" and found.version == 2
    found = await backend.find_saga_by_key("key-3")
    assert found is not None and found.saga_id == "saga-d"
    assert await backend.find_saga_by_key("no-such-key") is None


# -- the saga projection ------------------------------------------------------------------------


async def test_saga_projection_upsert_keeps_or_replaces_steps(backend: StoreBackend) -> None:
    started = saga_record(
        "saga-1",
        key="idem-1",
        steps=(step(0, "running", attempts=1, started_at=T0 + 1), step(1)),
    )
    await commit_ok(backend, request("saga-1", 0, event("SagaStarted"), saga=started))
    assert await backend.get_saga("saga-1") == started
    assert await backend.find_saga_by_key("idem-1") == started

    # No steps in the update: the stored steps stay.
    progressed = attrs.evolve(
        started, status="compensating", current_step="step-1", version=2, steps=()
    )
    await commit_ok(backend, request("saga-1", 1, event("Progress"), saga=progressed))
    got = await backend.get_saga("saga-1")
    assert got == attrs.evolve(progressed, steps=started.steps)

    # Steps in the update are written over the stored ones of the same index.
    steps = (
        step(
            0,
            "completed",
            attempts=2,
            started_at=T0 + 1,
            finished_at=T0 + 2.5,
            result={"charge_id": "ch_1", "amounts": [1.5, 2]},
            compensation_status="failed",
            compensation_attempts=3,
            compensation_error="boom",
        ),
        step(1, "failed", attempts=5, error="timeout", result=["a", 1]),
        step(2, "pending", result="plain string"),
    )
    finished = attrs.evolve(
        progressed,
        status="completed",
        result={"ok": True, "total": 42.0},
        error="a note",
        current_step=None,
        version=3,
        steps=steps,
    )
    await commit_ok(backend, request("saga-1", 2, event("Done"), saga=finished))
    assert await backend.get_saga("saga-1") == finished
    assert await backend.find_saga_by_key("idem-1") == finished

    # Fewer steps than stored: the given ones are written, the others stay.
    shorter = attrs.evolve(finished, version=4, steps=(step(0, "completed"),))
    await commit_ok(backend, request("saga-1", 3, event("Again"), saga=shorter))
    assert await backend.get_saga("saga-1") == attrs.evolve(
        shorter, steps=(step(0, "completed"), *steps[1:])
    )

    assert await backend.get_saga("no-such-saga") is None


async def test_saga_steps_are_sorted_by_index(backend: StoreBackend) -> None:
    record = saga_record("unordered", steps=(step(2), step(0), step(1)))
    await create_sagas(backend, record)
    got = await backend.get_saga("unordered")
    assert got is not None
    assert [s.index for s in got.steps] == [0, 1, 2]


async def test_the_last_write_of_a_saga_in_a_batch_wins(backend: StoreBackend) -> None:
    first = saga_record("twice", steps=(step(0), step(1)))
    second = attrs.evolve(first, status="compensating", version=2, steps=())
    third = attrs.evolve(first, status="compensated", version=3, steps=())
    await commit_ok(
        backend,
        request("twice", 0, event(), saga=first),
        request("twice", 1, event(), saga=second),
        request("twice", 2, event(), saga=third),
    )
    assert await backend.get_saga("twice") == attrs.evolve(third, steps=first.steps)


async def test_an_append_writes_the_steps_it_carries_and_keeps_the_others(
    backend: StoreBackend,
) -> None:
    created = saga_record("partial", key="partial-key", steps=tuple(step(i) for i in range(4)))
    await create_sagas(backend, created)

    running = step(2, "running", attempts=1, started_at=T0 + 1)
    second = attrs.evolve(created, current_step="step-2", version=2, steps=(running,))
    await commit_ok(backend, request("partial", 1, event("StepStarted"), saga=second))
    expected = attrs.evolve(second, steps=(step(0), step(1), running, step(3)))
    assert await backend.get_saga("partial") == expected

    done = step(0, "completed", attempts=2, finished_at=T0 + 2, result={"id": 7})
    third = attrs.evolve(second, status="compensating", version=3, steps=(done,))
    await commit_ok(backend, request("partial", 2, event("StepCompleted"), saga=third))
    expected = attrs.evolve(third, steps=(done, step(1), running, step(3)))
    assert await backend.get_saga("partial") == expected
    assert await backend.find_saga_by_key("partial-key") == expected


async def test_steps_of_one_saga_in_one_batch_last_accepted_wins_per_index(
    backend: StoreBackend,
) -> None:
    created = saga_record("batched", steps=tuple(step(i) for i in range(4)))
    await create_sagas(backend, created)
    first = attrs.evolve(
        created, version=2, steps=(step(0, "completed"), step(1, "running", attempts=1))
    )
    stale = attrs.evolve(created, version=2, steps=(step(1, "failed"), step(3, "failed")))
    last = attrs.evolve(
        created, version=3, steps=(step(2, "running"), step(1, "completed", attempts=1))
    )
    results = await backend.commit(
        [
            request("batched", 1, event(), saga=first),
            request("batched", 1, event(), saga=stale),  # refused: the stream is at 2
            request("batched", 2, event(), saga=last),
        ]
    )
    accepted, refused, accepted_too = results
    assert isinstance(accepted, AppendResult) and isinstance(accepted_too, AppendResult)
    assert isinstance(refused, ConcurrencyError)
    # Step 0 from the first request, 1 and 2 from the last, 3 as it was.
    steps = (step(0, "completed"), step(1, "completed", attempts=1), step(2, "running"), step(3))
    assert await backend.get_saga("batched") == attrs.evolve(last, steps=steps)


async def test_a_refused_request_writes_no_steps(backend: StoreBackend) -> None:
    taken = event("Taken")
    owner = saga_record("owner", key="owner-key", steps=(step(0), step(1)))
    other = saga_record("other", key="other-key", steps=(step(0), step(1)))
    await create_sagas(backend, owner, other)
    await commit_ok(backend, request("elsewhere", 0, taken))

    def changed(record: SagaRecord, **fields: object) -> SagaRecord:
        return attrs.evolve(
            record, version=2, steps=(step(0, "failed"), step(1, "failed"), step(2)), **fields
        )

    results = await backend.commit(
        [
            request("owner", 5, event(), saga=changed(owner)),  # a stale version
            request("other", 1, event(), saga=changed(other, idempotency_key="owner-key")),
            request(
                "other", 1, NewEvent(event_type="X", event_id=taken.event_id), saga=changed(other)
            ),
        ]
    )
    assert [type(r) for r in results] == [
        ConcurrencyError,
        DuplicateIdempotencyKey,
        DuplicateEventId,
    ]
    assert await backend.get_saga("owner") == owner
    assert await backend.get_saga("other") == other


async def test_an_infinite_deadline_round_trips(backend: StoreBackend) -> None:
    record = saga_record("forever", deadline_at=math.inf, steps=(step(0),))
    await create_sagas(backend, record)
    assert await backend.get_saga("forever") == record


async def test_timestamps_round_trip_exactly(backend: StoreBackend) -> None:
    odd = [T0, 0.1 + 0.2, 1e-7, 1.7976931348623157e308 / 1e300, math.pi * 1e9]
    records = [
        saga_record(
            f"ts-{i}",
            created_at=value,
            updated_at=value + 1e-6,
            deadline_at=value * 3,
            steps=(step(0, started_at=value, finished_at=value / 3),),
        )
        for i, value in enumerate(odd)
    ]
    await create_sagas(backend, *records)
    for record in records:
        assert await backend.get_saga(record.saga_id) == record


# -- listing sagas ------------------------------------------------------------------------------


async def test_list_sagas_filters(backend: StoreBackend) -> None:
    records = [
        saga_record("s-1", created_at=T0 + 1, status="running", saga_type="order"),
        saga_record("s-2", created_at=T0 + 2, status="completed", saga_type="order"),
        saga_record("s-3", created_at=T0 + 3, status="running", saga_type="refund"),
        saga_record("s-4", created_at=T0 + 4, status="failed", saga_type="refund"),
        saga_record("s-5", created_at=T0 + 5, status="running", saga_type="order"),
    ]
    await create_sagas(backend, *records)

    async def ids(**filters: object) -> list[str]:
        page = await backend.list_sagas(SagaQuery(**filters))  # type: ignore[arg-type]
        assert page.next_cursor is None
        assert all(item.steps == () for item in page.items)
        return [item.saga_id for item in page.items]

    assert await ids() == ["s-5", "s-4", "s-3", "s-2", "s-1"]
    assert await ids(statuses=["running"]) == ["s-5", "s-3", "s-1"]
    assert await ids(statuses=["failed", "completed"]) == ["s-4", "s-2"]
    assert await ids(saga_type="refund") == ["s-4", "s-3"]
    assert await ids(statuses=["running"], saga_type="order") == ["s-5", "s-1"]
    assert await ids(created_after=T0 + 2) == ["s-5", "s-4", "s-3", "s-2"]  # inclusive
    assert await ids(created_before=T0 + 4) == ["s-3", "s-2", "s-1"]  # exclusive
    assert await ids(created_after=T0 + 2, created_before=T0 + 4, statuses=["running"]) == ["s-3"]
    assert await ids(statuses=["cancelled"]) == []

    page = await backend.list_sagas(SagaQuery(statuses=["running"]))
    assert page.items[0] == attrs.evolve(records[4], steps=())


async def test_list_sagas_filters_by_what_names_a_saga_and_by_update_time(
    backend: StoreBackend,
) -> None:
    records = [
        saga_record("k-1", created_at=T0 + 1, key="key-1", trigger_event_id="ev-1"),
        saga_record("k-2", created_at=T0 + 2, key="key-2", trigger_event_id="ev-1"),
        saga_record("k-3", created_at=T0 + 3, correlation_id="shared", updated_at=T0 + 30),
        saga_record("k-4", created_at=T0 + 4, correlation_id="shared", updated_at=T0 + 10),
    ]
    await create_sagas(backend, *records)

    async def ids(**filters: object) -> list[str]:
        page = await backend.list_sagas(SagaQuery(**filters))  # type: ignore[arg-type]
        return [item.saga_id for item in page.items]

    assert await ids(trigger_event_id="ev-1") == ["k-2", "k-1"]
    assert await ids(trigger_event_id="ev-2") == []
    assert await ids(idempotency_key="key-2") == ["k-2"]
    assert await ids(correlation_id="shared") == ["k-4", "k-3"]
    assert await ids(correlation_id="corr-k-1") == ["k-1"]
    assert await ids(updated_after=T0 + 10) == ["k-4", "k-3"]  # inclusive
    assert await ids(updated_before=T0 + 30, correlation_id="shared") == ["k-4"]  # exclusive
    (item,) = (await backend.list_sagas(SagaQuery(idempotency_key="key-1"))).items
    assert item == attrs.evolve(records[0], steps=())
    assert "ev-1" == item.trigger_event_id


async def test_a_cursor_keeps_its_place_while_sagas_are_written(backend: StoreBackend) -> None:
    records = [saga_record(f"w-{i}", created_at=T0 + i, version=1) for i in range(6)]
    await create_sagas(backend, *records)
    first = await backend.list_sagas(SagaQuery(limit=3))
    assert [i.saga_id for i in first.items] == ["w-5", "w-4", "w-3"]
    # Meanwhile: a new saga, and sagas of both pages change.
    await create_sagas(backend, saga_record("w-new", created_at=T0 + 100))
    for old in (records[4], records[1]):
        moved = attrs.evolve(old, status="completed", version=2, updated_at=T0 + 200)
        await commit_ok(backend, request(old.saga_id, 1, event("Done"), saga=moved))
    second = await backend.list_sagas(SagaQuery(cursor=first.next_cursor, limit=3))
    assert [i.saga_id for i in second.items] == ["w-2", "w-1", "w-0"]
    assert "completed" == second.items[1].status and second.next_cursor is None


async def test_step_errors_are_kept_with_their_type_and_frames(backend: StoreBackend) -> None:
    frames = (
        "steps/orders.py:12 in charge: return lookup['missing']",
        "steps/ünïcode.py:3 in lookup: raise KeyError(key)",
    )
    failed = step(0, "failed", attempts=3, error="KeyError: 'missing'", error_type="KeyError")
    failed = attrs.evolve(failed, error_frames=frames)
    answered = step(1, "failed", error="ServiceUnavailable: 503", error_type="ServiceUnavailable")
    record = saga_record("errors", steps=(failed, answered, step(2)))
    await create_sagas(backend, record)
    got = await backend.get_saga("errors")
    assert got == record
    assert got is not None and got.steps[0].error_frames == frames
    assert ((), "ServiceUnavailable") == (got.steps[1].error_frames, got.steps[1].error_type)
    # A later write of the step (the next attempt succeeded) clears them.
    cleared = attrs.evolve(record, version=2, steps=(step(0, "completed", attempts=4),))
    await commit_ok(backend, request("errors", 1, event("Done"), saga=cleared))
    got = await backend.get_saga("errors")
    assert got is not None
    assert (None, ()) == (got.steps[0].error_type, got.steps[0].error_frames)


async def test_list_sagas_items_have_no_steps(backend: StoreBackend) -> None:
    await create_sagas(backend, saga_record("with-steps", steps=(step(0), step(1))))
    (item,) = (await backend.list_sagas(SagaQuery())).items
    assert item.steps == ()
    assert item == saga_record("with-steps")


@pytest.mark.parametrize("page_size", [1, 4, 5, 23, 50])
async def test_list_sagas_pages_with_a_cursor(backend: StoreBackend, page_size: int) -> None:
    # 23 sagas, three per created_at value: ties are broken by saga_id, newest first.
    records = [
        saga_record(
            f"p-{i:02d}",
            created_at=T0 + (i // 3) * 0.25,
            status="running" if i % 2 else "completed",
        )
        for i in range(23)
    ]
    await create_sagas(backend, *records)
    expected = [
        r.saga_id for r in sorted(records, key=lambda r: (r.created_at, r.saga_id), reverse=True)
    ]

    async def collect(**filters: object) -> list[str]:
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = await backend.list_sagas(
                SagaQuery(cursor=cursor, limit=page_size, **filters)  # type: ignore[arg-type]
            )
            pages += 1
            assert len(page.items) <= page_size
            seen.extend(item.saga_id for item in page.items)
            if page.next_cursor is None:
                return seen
            assert len(page.items) == page_size
            cursor = page.next_cursor
            assert pages < 100

    assert await collect() == expected
    running = {r.saga_id for r in records if r.status == "running"}
    assert await collect(statuses=["running"]) == [s for s in expected if s in running]


async def test_list_sagas_cursor_of_an_unseen_position(backend: StoreBackend) -> None:
    await create_sagas(
        backend,
        saga_record("a", created_at=T0 + 1),
        saga_record("b", created_at=T0 + 2),
        saga_record("c", created_at=T0 + 2),
    )
    cursor = encode_cursor(T0 + 2, "b")  # after (T0+2, "b") in newest-first order
    page = await backend.list_sagas(SagaQuery(cursor=cursor))
    assert [i.saga_id for i in page.items] == ["a"]


async def test_list_sagas_rejects_a_bad_cursor(backend: StoreBackend) -> None:
    with pytest.raises(ValueError):
        await backend.list_sagas(SagaQuery(cursor="not-a-cursor!"))


async def test_active_sagas(backend: StoreBackend) -> None:
    statuses = ["pending", "running", "compensating", "completed", "compensated", "cancelled"]
    statuses += ["timed_out", "failed", "compensation_failed"]
    records = [saga_record(f"act-{status}", status=status, steps=(step(0),)) for status in statuses]
    await create_sagas(backend, *records)
    active = await backend.active_sagas()
    assert sorted(s.saga_id for s in active) == ["act-compensating", "act-pending", "act-running"]
    assert all(s.steps == () for s in active)
    by_id = {r.saga_id: r for r in records}
    for saga in active:
        assert saga == attrs.evolve(by_id[saga.saga_id], steps=())


# -- the outbox ---------------------------------------------------------------------------------


async def test_outbox_pending_then_marked_sent(backend: StoreBackend) -> None:
    messages = [OutboxMessage(topic="orders", event=event("OrderPlaced", n=i)) for i in range(5)]
    before = time.time()
    await commit_ok(
        backend,
        request("o-1", 0, event(), outbox=tuple(messages[:2])),
        request("o-2", 0, event(), outbox=(messages[2],)),
    )
    await commit_ok(backend, request("o-3", 0, outbox=tuple(messages[3:])))
    after = time.time()

    pending = await backend.outbox_pending()
    assert [p.event for p in pending] == [m.event for m in messages]
    assert [p.topic for p in pending] == ["orders"] * 5
    ids = [p.id for p in pending]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert all(before - 1 <= p.created_at <= after + 1 for p in pending)

    assert [p.id for p in await backend.outbox_pending(limit=2)] == ids[:2]
    await backend.outbox_mark_sent([ids[0], ids[2]])
    await backend.outbox_mark_sent([])
    await backend.outbox_mark_sent([ids[0], 987_654])  # already sent, unknown: ignored
    assert [p.id for p in await backend.outbox_pending()] == [ids[1], ids[3], ids[4]]
    await backend.outbox_mark_sent(ids)
    assert await backend.outbox_pending() == []


async def test_a_failed_request_writes_no_outbox(backend: StoreBackend) -> None:
    (result,) = await backend.commit(
        [request("o", 5, event(), outbox=(OutboxMessage(topic="t", event=event()),))]
    )
    assert isinstance(result, ConcurrencyError)
    assert await backend.outbox_pending() == []


async def test_an_append_of_outbox_messages_alone_leaves_every_stream_as_it_is(
    backend: StoreBackend,
) -> None:
    # What a replay commits: messages for events stored earlier, their ids repeated at will.
    (stored,) = await commit_ok(backend, request("kept", 0, event("Stored")))
    [recorded] = await backend.read_stream("kept")
    again = OutboxMessage(
        topic="events",
        event=NewEvent(event_id=recorded.event_id, event_type="Stored"),
        occurred_at=recorded.recorded_at,
    )
    before = time.time()
    results = await commit_ok(
        backend,
        request("kept", ANY_VERSION, outbox=(again, again)),
        request("never-written", ANY_VERSION, outbox=(again,)),
        request("kept", 1, outbox=(again,)),
    )
    assert [(1, ()), (0, ()), (1, ())] == [(r.version, r.positions) for r in results]
    (stale,) = await backend.commit([request("kept", 0, outbox=(again,))])
    assert isinstance(stale, ConcurrencyError)  # the expected version is still checked

    assert [recorded] == await backend.read_all()
    assert {} == await backend.read_streams(["never-written"])
    (new_stream,) = await commit_ok(backend, request("never-written", 0, event()))
    assert 1 == new_stream.version
    pending = await backend.outbox_pending()
    assert [recorded.event_id] * 4 == [p.event.event_id for p in pending]
    assert [recorded.recorded_at] * 4 == [p.occurred_at for p in pending]
    assert all(p.created_at >= before - 1 for p in pending)
    assert stored.positions == (recorded.position,)


async def test_an_outbox_message_occurred_when_it_committed_unless_it_says_otherwise(
    backend: StoreBackend,
) -> None:
    now, earlier = (
        OutboxMessage(topic="t", event=event()),
        OutboxMessage(topic="t", event=event(), occurred_at=T0),
    )
    await commit_ok(backend, request("o", 0, event(), outbox=(now, earlier)))
    first, second = await backend.outbox_pending()
    assert (first.created_at, T0) == (first.occurred_at, second.occurred_at)


# -- health -------------------------------------------------------------------------------------


async def test_ping(backend: StoreBackend) -> None:
    await backend.ping()


# -- durability ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend_kind", DURABLE_KINDS, indirect=True)
async def test_data_survives_close_and_reopen(store_target: StoreTarget) -> None:
    first = store_target.make()
    await first.open()
    record = saga_record("kept", key="kept-key", steps=(step(0, "completed"), step(1)))
    message = OutboxMessage(topic="t", event=event("Kept"))
    try:
        (appended,) = await commit_ok(
            first, request("kept", 0, event(n=1), event(n=2), saga=record, outbox=(message,))
        )
    finally:
        await first.close()
        await first.close()  # idempotent

    second = store_target.make()
    await second.open()
    try:
        assert [e.data["n"] for e in await second.read_stream("kept")] == [1, 2]
        assert await second.get_saga("kept") == record
        assert await second.find_saga_by_key("kept-key") == record
        assert [p.event for p in await second.outbox_pending()] == [message.event]
        (more,) = await commit_ok(second, request("kept", 2, event(n=3)))
        assert more.version == 3
        assert more.positions[0] > appended.positions[-1]
    finally:
        await second.close()


@pytest.mark.parametrize("backend_kind", [POSTGRESQL], indirect=True)
async def test_postgres_refuses_a_nul_character_for_good(backend: StoreBackend) -> None:
    refused, accepted = await backend.commit(
        [request("nul", 0, event(text="a\x00b")), request("ok", 0, event(text="ab"))]
    )
    assert isinstance(refused, StoreRejected) and isinstance(accepted, AppendResult)
    with pytest.raises(StoreRejected, match="can never succeed"):
        await backend.read_stream("a\x00b")


# -- what only the SQL backends check -----------------------------------------------------------


@pytest.mark.parametrize("backend_kind", SQL_KINDS, indirect=True)
async def test_a_value_json_cannot_hold_fails_alone(backend: StoreBackend) -> None:
    results = await backend.commit(
        [
            request("good-1", 0, event()),
            request("bad", 0, NewEvent(event_type="X", data={"x": math.nan})),
            request("bad-2", 0, NewEvent(event_type="X", data={"x": object()})),
            request("good-2", 0, event()),
        ]
    )
    good_1, bad, bad_2, good_2 = results
    assert isinstance(good_1, AppendResult) and isinstance(good_2, AppendResult)
    assert isinstance(bad, StoreRejected) and "JSON" in str(bad)
    assert isinstance(bad_2, StoreRejected)
    assert await backend.read_stream("bad") == []
    assert len(await backend.read_all()) == 2


@pytest.mark.parametrize("backend_kind", SQL_KINDS, indirect=True)
async def test_a_request_json_cannot_hold_writes_no_steps(backend: StoreBackend) -> None:
    created = saga_record("json-steps", steps=(step(0), step(1)))
    await create_sagas(backend, created)
    bad = attrs.evolve(created, version=2, steps=(step(0, "failed"), step(1, result=math.inf)))
    good = attrs.evolve(created, version=2, steps=(step(1, "running"),))
    results = await backend.commit(
        [request("json-steps", 1, event(), saga=bad), request("json-steps", 1, event(), saga=good)]
    )
    refused, accepted = results
    assert isinstance(refused, StoreRejected) and isinstance(accepted, AppendResult)
    assert await backend.get_saga("json-steps") == attrs.evolve(
        good, steps=(step(0), step(1, "running"))
    )


async def test_a_duplicate_event_id_fails_alone(backend: StoreBackend) -> None:
    taken = event("First")
    await commit_ok(backend, request("first", 0, taken))
    results = await backend.commit(
        [
            request("ok-1", 0, event()),
            request("dup", 0, NewEvent(event_type="Again", event_id=taken.event_id)),
            request("ok-1", 1, event()),
            request("ok-2", 0, event()),
        ]
    )
    ok_1, dup, ok_1_again, ok_2 = results
    assert isinstance(dup, DuplicateEventId) and [taken.event_id] == dup.event_ids
    assert isinstance(ok_1, AppendResult) and ok_1.version == 1
    assert isinstance(ok_1_again, AppendResult) and ok_1_again.version == 2
    assert isinstance(ok_2, AppendResult)
    assert await backend.read_stream("dup") == []
    everything = await backend.read_all()
    assert [(e.stream_id, e.version) for e in everything] == [
        ("first", 1),
        ("ok-1", 1),
        ("ok-1", 2),
        ("ok-2", 1),
    ]
    positions = [e.position for e in everything]
    assert positions == sorted(positions)


async def test_an_event_id_repeated_in_a_batch_fails_the_later_request(
    backend: StoreBackend,
) -> None:
    shared = event("Shared")
    twice = event("Twice")
    results = await backend.commit(
        [
            request("conflict", 5, NewEvent(event_type="Lost", event_id="lost-id")),
            request("first", 0, shared),
            request("copy", 0, NewEvent(event_type="Copy", event_id=shared.event_id)),
            request("twice", 0, twice, attrs.evolve(twice, event_type="Again")),
            request("reuses-the-lost-id", 0, NewEvent(event_type="Found", event_id="lost-id")),
            request("last", 0, event()),
        ]
    )
    conflict, first, copy, both, reuse, last = results
    assert isinstance(conflict, ConcurrencyError)
    assert isinstance(first, AppendResult) and isinstance(last, AppendResult)
    assert isinstance(reuse, AppendResult)  # the request that had the id did not commit
    assert isinstance(copy, DuplicateEventId) and copy.event_ids == [shared.event_id]
    assert isinstance(both, DuplicateEventId)
    everything = await backend.read_all()
    assert [e.stream_id for e in everything] == ["first", "reuses-the-lost-id", "last"]


@asynccontextmanager
async def opened_postgres(dsn: str, **options: object) -> AsyncIterator[PostgresBackend]:
    """An opened PostgreSQL backend with one pooled connection (and its writer), closed after."""
    settings: dict[str, object] = {"pool_size": 1, "command_timeout": 5, **options}
    backend = PostgresBackend(dsn, **settings)  # type: ignore[arg-type]
    await backend.open()
    try:
        yield backend
    finally:
        with trio.fail_after(10):
            await backend.close()


@asynccontextmanager
async def holding_the_write_lock(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """Another connection holds the write lock (so that commits wait on the server) until the
    block ends; it is the block's value."""
    blocker = await trio_asyncio.aio_as_trio(asyncpg.connect)(dsn, timeout=5)
    try:
        await trio_asyncio.aio_as_trio(blocker.execute)(
            "SELECT pg_advisory_lock($1)", WRITE_LOCK_KEY
        )
        yield blocker
    finally:
        await trio_asyncio.aio_as_trio(blocker.close)()


@pytest.mark.parametrize("backend_kind", [POSTGRESQL], indirect=True)
async def test_a_cancelled_postgres_commit_commits_nothing_and_keeps_the_pool(
    store_target: StoreTarget,
) -> None:
    dsn = store_target.dsn
    assert dsn is not None
    # One connection: if the cancelled commit leaked it, everything after would wait.
    async with opened_postgres(dsn) as backend:
        async with holding_the_write_lock(dsn) as blocker:
            with trio.move_on_after(0.3) as waited:
                await backend.commit([request("cancelled", 0, event())])
            assert waited.cancelled_caught
            # The batch is one statement, committed by the server as soon as it has the lock:
            # release the lock only once the server has seen the cancel (no backend waits for
            # a lock any more). A cancel that comes after the lock is granted may be too late,
            # like a connection lost after COMMIT was sent (see the test after this one).
            with trio.fail_after(5):
                while await trio_asyncio.aio_as_trio(blocker.fetchval)(_LOCK_WAITERS):
                    await trio.sleep(0.01)
        with trio.fail_after(5):
            (after,) = await commit_ok(backend, request("after", 0, event()))
            assert after.version == 1
            assert await backend.read_stream("cancelled") == []


_LOCK_WAITERS = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


@pytest.mark.parametrize("backend_kind", [POSTGRESQL], indirect=True)
async def test_a_commit_cancelled_as_it_gets_the_lock_is_all_or_nothing(
    store_target: StoreTarget,
) -> None:
    dsn = store_target.dsn
    assert dsn is not None
    async with opened_postgres(dsn) as backend:
        for attempt in range(3):
            streams = [f"race-{attempt}-{i}" for i in range(3)]
            async with holding_the_write_lock(dsn):
                with trio.move_on_after(0.2 + attempt * 0.05) as waited:
                    await backend.commit([request(s, 0, event()) for s in streams])
                assert waited.cancelled_caught
            # The lock went at once: the cancel raced the commit.
            with trio.fail_after(5):
                after = await backend.commit([request(f"after-{attempt}", 0, event())])
                assert isinstance(after[0], AppendResult)
                written = [len(await backend.read_stream(s)) for s in streams]
            assert written in ([0, 0, 0], [1, 1, 1])


async def _terminate_connections(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("backend_kind", [POSTGRESQL], indirect=True)
async def test_postgres_recovers_when_its_connections_are_killed(
    backend: StoreBackend, store_target: StoreTarget
) -> None:
    await commit_ok(backend, request("before", 0, event()))
    killed = await trio_asyncio.aio_as_trio(_terminate_connections)(store_target.dsn)
    assert killed >= 1
    outcomes: list[str] = []
    with trio.fail_after(10):
        while True:
            try:
                await commit_ok(backend, request("after", 0, event()))
                break
            except StoreUnavailable:  # at most the dead connections' turn; then reconnected
                outcomes.append("unavailable")
                assert len(outcomes) <= 4
                await trio.sleep(0.05)
    assert [e.stream_id for e in await backend.read_all()] == ["before", "after"]


# -- errors when the database is not there ------------------------------------------------------


async def test_postgres_unreachable_is_store_unavailable(aio_loop: object) -> None:
    backend = PostgresBackend("postgresql://postgres:secret@127.0.0.1:1/nothing", pool_size=1)
    with pytest.raises(StoreUnavailable) as info:
        await backend.open()
    assert "127.0.0.1:1" in str(info.value)
    assert "secret" not in str(info.value)
    await backend.close()
    with pytest.raises(StoreError):
        await backend.ping()


async def test_postgres_without_an_asyncio_loop_says_so() -> None:
    with pytest.raises(StoreError, match=r"trio_asyncio\.open_loop"):
        await PostgresBackend("postgresql://127.0.0.1:1/x").open()


async def test_sqlite_in_an_unusable_place_is_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    backend = SQLiteBackend(blocker / "store.db")
    with pytest.raises(StoreUnavailable, match="DATA_DIR"):
        await backend.open()
    await backend.close()


async def test_sqlite_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not an SQLite file at all" * 100)
    with pytest.raises(StoreError) as info:
        await SQLiteBackend(path).open()
    assert not isinstance(info.value, StoreUnavailable)
    assert "not a database" in str(info.value)


@pytest.mark.parametrize("backend_kind", SQL_KINDS, indirect=True)
async def test_use_after_close_is_a_store_error(store_target: StoreTarget) -> None:
    backend = store_target.make()
    await backend.open()
    await backend.close()
    with pytest.raises(StoreError):
        await backend.commit([request("late", 0, event())])
    with pytest.raises(StoreError):
        await backend.read_all()
