"""What only the PostgreSQL backend does: a batch is one statement (``saga_commit_batch``) on a
connection of its own, the writer, which outlives batches and is replaced when it is lost; the
migrations that create and replace the function upgrade databases made by earlier releases."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import attrs
import pytest
import trio
import trio_asyncio

from saga_orchestrator.errors import (
    ConcurrencyError,
    DuplicateIdempotencyKey,
    LeaseLost,
    StoreError,
    StoreUnavailable,
)
from saga_orchestrator.store._sql import dumps
from saga_orchestrator.store.migrations import load_migrations
from saga_orchestrator.store.postgres import (
    _COMMIT_BATCH,
    WRITE_LOCK_KEY,
    PostgresBackend,
    _payload,
)
from saga_orchestrator.store.records import (
    AppendResult,
    Lease,
    NewEvent,
    OutboxMessage,
    StepRecord,
)

from ..support.tcp_proxy import open_tcp_proxy
from .test_contract import (
    commit_ok,
    create_sagas,
    event,
    holding_the_write_lock,
    opened_postgres,
    request,
    saga_record,
    step,
)

pytestmark = pytest.mark.integration


def next_writer(backend: PostgresBackend) -> Any:
    """The writer the next batch goes to when none is in flight (the last one released)."""
    return backend._idle_writers[-1]


def writer_connection(backend: PostgresBackend) -> asyncpg.Connection:
    writer = next_writer(backend)
    assert writer.conn is not None
    return writer.conn


async def _admin(dsn: str, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def admin(dsn: str, sql: str, *args: object) -> object:
    return await trio_asyncio.aio_as_trio(_admin)(dsn, sql, *args)


async def test_a_batch_is_one_statement_on_a_connection_that_outlives_it(
    pg_dsn: str, aio_loop: object
) -> None:
    async with opened_postgres(pg_dsn) as backend:
        # On a new connection asyncpg first looks up the result's array types (once).
        await commit_ok(backend, request("warm-up", 0, event()))
        conn = writer_connection(backend)
        statements: list[str] = []
        conn.add_query_logger(lambda logged: statements.append(logged.query))
        first = await commit_ok(backend, *(request(f"s-{i}", 0, event()) for i in range(20)))
        assert len(statements) == 1 and "saga_commit_batch" in statements[0]
        await commit_ok(backend, request("s-0", 1, event()), request("s-1", 1, event()))
        assert len(statements) == 2
        assert writer_connection(backend) is conn
        assert backend.commits == 3
        positions = [p for result in first for p in result.positions]
        assert positions == sorted(positions) and len(set(positions)) == 20
        # The function's lock is the documented one.
        source = await admin(
            pg_dsn, "SELECT prosrc FROM pg_proc WHERE proname = 'saga_commit_batch'"
        )
        assert f"pg_advisory_xact_lock({WRITE_LOCK_KEY})" in str(source)


async def test_the_writer_is_replaced_when_the_server_drops_it_while_idle(
    pg_dsn: str, aio_loop: object
) -> None:
    async with opened_postgres(pg_dsn) as backend:
        await commit_ok(backend, request("before", 0, event()))
        pid = writer_connection(backend).get_server_pid()
        assert await admin(pg_dsn, "SELECT pg_terminate_backend($1)", pid)
        await trio.sleep(0.3)  # the client sees the connection close
        (after,) = await commit_ok(backend, request("after", 0, event()))  # no error at all
        assert writer_connection(backend).get_server_pid() != pid
        assert next_writer(backend).connects == 2
        assert [e.stream_id for e in await backend.read_all()] == ["before", "after"]
        assert after.positions[0] > 1


async def test_a_batch_whose_writer_is_killed_fails_unavailable_and_the_next_reconnects(
    pg_dsn: str, aio_loop: object
) -> None:
    async with opened_postgres(pg_dsn) as backend:
        pid = writer_connection(backend).get_server_pid()
        async with holding_the_write_lock(pg_dsn), trio.open_nursery() as nursery:

            async def kill_soon() -> None:
                await trio.sleep(0.3)
                await admin(pg_dsn, "SELECT pg_terminate_backend($1)", pid)

            nursery.start_soon(kill_soon)
            with pytest.raises(StoreUnavailable):
                await backend.commit([request("lost", 0, event())])
        with trio.fail_after(5):
            (again,) = await commit_ok(backend, request("lost", 0, event()))
        assert again.version == 1  # the killed statement committed nothing
        assert writer_connection(backend).get_server_pid() != pid


_STATE_OF = "SELECT state FROM pg_stat_activity WHERE pid = $1"


async def test_a_batch_stuck_on_the_server_is_cancelled_at_the_command_timeout(
    pg_dsn: str, aio_loop: object
) -> None:
    async with opened_postgres(pg_dsn, command_timeout=0.5) as backend:
        await commit_ok(backend, request("warm-up", 0, event()))
        pid = writer_connection(backend).get_server_pid()
        async with holding_the_write_lock(pg_dsn):
            with trio.fail_after(3), pytest.raises(StoreUnavailable, match=r"within 0\.5 s"):
                await backend.commit([request("stuck", 0, event())])
            # The cancel reaches the server on a connection of its own: once it has, the
            # writer's session is idle again, while the lock is still held.
            with trio.fail_after(5):
                while await admin(pg_dsn, _STATE_OF, pid) != "idle":
                    await trio.sleep(0.02)
        # The statement was cancelled on the server: nothing committed, and the same writer
        # connection takes the next batch.
        with trio.fail_after(5):
            (again,) = await commit_ok(backend, request("stuck", 0, event()))
        assert again.version == 1
        assert writer_connection(backend).get_server_pid() == pid


def through(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


async def test_the_writer_recovers_when_the_network_comes_back(
    pg_dsn: str, aio_loop: object
) -> None:
    target = urlsplit(pg_dsn)
    async with (
        open_tcp_proxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy,
        opened_postgres(through(pg_dsn, proxy.port), connect_timeout=2) as backend,
    ):
        await commit_ok(backend, request("up", 0, event()))
        proxy.cut()
        for _ in range(3):  # refused fast, every time, while the network is away
            with trio.fail_after(3), pytest.raises(StoreUnavailable):
                await backend.commit([request("down", 0, event())])
        proxy.restore()
        with trio.fail_after(5):
            (back,) = await commit_ok(backend, request("down", 0, event()))
        assert back.version == 1
        assert [e.stream_id for e in await backend.read_all()] == ["up", "down"]


async def test_a_value_the_server_refuses_fails_alone(pg_dsn: str, aio_loop: object) -> None:
    async with opened_postgres(pg_dsn) as backend:
        results = await backend.commit(
            [
                request("good-1", 0, event()),
                # JSON can hold it, PostgreSQL's jsonb cannot: the batch statement fails, and
                # the requests are committed one by one.
                request("bad", 0, NewEvent(event_type="X", data={"text": "nul\x00byte"})),
                request("good-2", 0, event()),
            ]
        )
        good_1, bad, good_2 = results
        assert isinstance(good_1, AppendResult) and isinstance(good_2, AppendResult)
        assert isinstance(bad, StoreError) and not isinstance(bad, StoreUnavailable)
        assert backend.commits == 2
        assert [e.stream_id for e in await backend.read_all()] == ["good-1", "good-2"]


_SCHEMA_MIGRATIONS = """
CREATE TABLE schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
)
"""


async def _apply_migrations_up_to(conn: asyncpg.Connection, version: int) -> None:
    """Apply and record the migrations up to ``version``, as the release that had no later one
    did."""
    await conn.execute(_SCHEMA_MIGRATIONS)
    for migration in load_migrations("postgresql")[:version]:
        await conn.execute(migration.sql)
        await conn.execute(
            "INSERT INTO schema_migrations VALUES ($1, $2, 0)", migration.version, migration.name
        )


async def _make_first_release_database(dsn: str) -> None:
    """The schema of migration 0001 only, with what that release's statements wrote."""
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        async with conn.transaction():
            await _apply_migrations_up_to(conn, 1)
            await conn.execute(
                "INSERT INTO events (stream_id, version, event_id, event_type, data, metadata, "
                "recorded_at) VALUES ('saga-old', 1, 'old-1', 'SagaStarted', '{}', '{}', 1), "
                "('saga-old', 2, 'old-2', 'StepStarted', '{}', '{}', 2)"
            )
            await conn.execute("INSERT INTO streams VALUES ('saga-old', 2)")
            await conn.execute(
                "INSERT INTO sagas (saga_id, saga_type, saga_version, status, input, "
                "deadline_at, created_at, updated_at, version, idempotency_key) "
                "VALUES ('old', 'order', 1, 'running', '{}', 9, 1, 2, 2, 'old-key')"
            )
            await conn.execute(
                "INSERT INTO saga_steps (saga_id, step_index, name, status) "
                "VALUES ('old', 0, 'one', 'running'), ('old', 1, 'two', 'pending')"
            )
    finally:
        await conn.close()


async def test_the_function_migration_upgrades_a_first_release_database(
    pg_dsn: str, aio_loop: object
) -> None:
    await trio_asyncio.aio_as_trio(_make_first_release_database)(pg_dsn)
    async with opened_postgres(pg_dsn) as backend:
        assert backend.migrations_applied == [
            "0002_commit_batch_function",
            "0003_commit_batch_upserts_steps",
            "0004_outbox_occurred_at",
            "0005_instances_and_saga_owners",
            "0006_saga_commands",
            "0007_step_errors_and_trigger_events",
        ]
        taken = saga_record("new", key="old-key")
        moved = saga_record("old", key="old-key", version=3, steps=(step(0, "completed"),))
        results = await backend.commit(
            [
                request("saga-old", 0, event()),
                request("saga-new", 0, event(), saga=taken),
                request("saga-old", 2, event(), saga=moved),
            ]
        )
        stale, duplicate, appended = results
        assert isinstance(stale, ConcurrencyError) and stale.actual == 2
        assert isinstance(duplicate, DuplicateIdempotencyKey) and duplicate.saga_id == "old"
        assert isinstance(appended, AppendResult) and appended.version == 3
        assert appended.positions[0] > 2  # after what the first release wrote
        # Step 0 written, step 1 as the first release left it.
        kept = StepRecord(index=1, name="two", status="pending")
        assert await backend.get_saga("old") == attrs.evolve(moved, steps=(*moved.steps, kept))
        assert [e.event_id for e in await backend.read_stream("saga-old")][:2] == [
            "old-1",
            "old-2",
        ]


_BATCH_FUNCTION_SETTINGS = [
    "enable_seqscan=off",
    "enable_hashjoin=off",
    "enable_mergejoin=off",
    "plan_cache_mode=force_generic_plan",
    "jit=off",
]


async def _batch_function(dsn: str) -> list[tuple[object, ...]]:
    """(settings, source) of each function named ``saga_commit_batch``."""
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT proconfig, prosrc FROM pg_proc WHERE proname = 'saga_commit_batch'"
        )
        return [tuple(row) for row in rows]
    finally:
        await conn.close()


def assert_the_step_upserting_function(functions: list[tuple[object, ...]]) -> None:
    """One ``saga_commit_batch`` (0003 replaced 0002's, no overload), with the plan-pinning
    settings, that deletes no step."""
    ((settings, source),) = functions
    assert settings == _BATCH_FUNCTION_SETTINGS
    assert "DELETE" not in str(source)


async def _make_release_database(dsn: str, version: int, payload: list[Any], now: float) -> None:
    """Migrations up to ``version`` only, with ``payload`` committed by that release's
    ``saga_commit_batch`` at ``now``."""
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        async with conn.transaction():
            await _apply_migrations_up_to(conn, version)
        await conn.fetchrow(_COMMIT_BATCH, dumps([payload]), now)
    finally:
        await conn.close()


async def _make_second_release_database(dsn: str) -> None:
    """Migrations 0001 and 0002 only, with a saga of three steps written by 0002's function."""
    created = saga_record("old", steps=(step(0), step(1), step(2)))
    await _make_release_database(
        dsn, 2, _payload(request("saga-old", 0, event(), saga=created)), 1.0
    )


async def test_the_step_upsert_migration_upgrades_a_second_release_database(
    pg_dsn: str, aio_loop: object
) -> None:
    await trio_asyncio.aio_as_trio(_make_second_release_database)(pg_dsn)
    async with opened_postgres(pg_dsn) as backend:
        assert backend.migrations_applied == [
            "0003_commit_batch_upserts_steps",
            "0004_outbox_occurred_at",
            "0005_instances_and_saga_owners",
            "0006_saga_commands",
            "0007_step_errors_and_trigger_events",
        ]
        assert_the_step_upserting_function(await trio_asyncio.aio_as_trio(_batch_function)(pg_dsn))
        before = await backend.get_saga("old")
        assert before is not None and [s.index for s in before.steps] == [0, 1, 2]
        # 0002's function would have deleted steps 0 and 2.
        moved = attrs.evolve(before, version=2, steps=(step(1, "running", attempts=1),))
        await commit_ok(backend, request("saga-old", 1, event(), saga=moved))
        assert await backend.get_saga("old") == attrs.evolve(
            moved, steps=(step(0), step(1, "running", attempts=1), step(2))
        )


async def test_the_migrations_of_an_empty_database_end_with_the_step_upsert(
    pg_dsn: str, aio_loop: object
) -> None:
    async with opened_postgres(pg_dsn) as backend:
        assert backend.migrations_applied == [m.name for m in load_migrations("postgresql")]
        assert backend.migrations_applied[-1] == "0007_step_errors_and_trigger_events"
        assert_the_step_upserting_function(await trio_asyncio.aio_as_trio(_batch_function)(pg_dsn))
        created = saga_record("new", steps=(step(0), step(1)))
        await create_sagas(backend, created)
        moved = attrs.evolve(created, version=2, steps=(step(0, "completed"),))
        await commit_ok(backend, request("new", 1, event(), saga=moved))
        assert await backend.get_saga("new") == attrs.evolve(
            moved, steps=(step(0, "completed"), step(1))
        )


async def _make_third_release_database(dsn: str) -> None:
    """Migrations 0001 to 0003 only, with an unsent outbox message written by 0003's function
    (its messages have five elements: no ``occurred_at``)."""
    payload = _payload(request("s", 0, event(), outbox=(OutboxMessage(topic="t", event=event()),)))
    payload[5] = [message[:5] for message in payload[5]]
    await _make_release_database(dsn, 3, payload, 1.5)


async def test_the_outbox_migration_upgrades_a_third_release_database(
    pg_dsn: str, aio_loop: object
) -> None:
    await trio_asyncio.aio_as_trio(_make_third_release_database)(pg_dsn)
    async with opened_postgres(pg_dsn) as backend:
        assert backend.migrations_applied == [
            "0004_outbox_occurred_at",
            "0005_instances_and_saga_owners",
            "0006_saga_commands",
            "0007_step_errors_and_trigger_events",
        ]
        assert_the_step_upserting_function(await trio_asyncio.aio_as_trio(_batch_function)(pg_dsn))
        [old] = await backend.outbox_pending()
        assert (1.5, 1.5) == (old.created_at, old.occurred_at)  # occurred when it committed
        replayed = OutboxMessage(topic="t", event=old.event, occurred_at=1.25)
        await commit_ok(backend, request("s", 1, outbox=(replayed,)))
        assert [1.5, 1.25] == [m.occurred_at for m in await backend.outbox_pending()]


async def test_two_writers_take_turns_so_positions_follow_commit_order(
    pg_dsn: str, aio_loop: object
) -> None:
    batches: list[list[int]] = []
    async with opened_postgres(pg_dsn) as first, opened_postgres(pg_dsn) as second:

        async def write(backend: PostgresBackend, name: str) -> None:
            for n in range(20):
                results = await commit_ok(
                    backend, *(request(f"{name}-{n}-{i}", 0, event(), event()) for i in range(5))
                )
                batches.append([p for result in results for p in result.positions])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write, first, "a")
            nursery.start_soon(write, second, "b")
    # Each batch got a run of positions of its own: the write lock let one writer at a time
    # allocate and commit, so no batch's positions fall between another's.
    assert len(batches) == 40
    ranges = sorted((min(b), max(b)) for b in batches)
    assert all(b == list(range(b[0], b[0] + 10)) for b in batches)
    assert all(earlier[1] < later[0] for earlier, later in itertools.pairwise(ranges))


async def _make_fourth_release_database(dsn: str) -> None:
    """Migrations 0001 to 0004 only, with a running saga written by 0004's function (no
    owner: the release before instances)."""
    created = saga_record("old", steps=(step(0, "running"),))
    await _make_release_database(
        dsn, 4, _payload(request("saga-old", 0, event(), saga=created)), 2.0
    )


async def test_the_ownership_migration_leaves_existing_sagas_unowned_for_the_first_claim(
    pg_dsn: str, aio_loop: object
) -> None:
    await trio_asyncio.aio_as_trio(_make_fourth_release_database)(pg_dsn)
    async with opened_postgres(pg_dsn) as backend:
        assert backend.migrations_applied == [
            "0005_instances_and_saga_owners",
            "0006_saga_commands",
            "0007_step_errors_and_trigger_events",
        ]
        assert (None, 0, False) == await backend.saga_owner("old")
        await backend.register_instance("first", {}, 60.0)
        (claimed,) = await backend.claim_orphans("first", 10)
        assert ("old", 1, None) == (claimed.saga_id, claimed.epoch, claimed.previous_owner)
        # appends without a lease (events, the old engine) are not fenced
        moved = saga_record("old", version=2, steps=(step(0, "completed"),))
        await commit_ok(backend, request("saga-old", 1, event(), saga=moved))


async def _make_sixth_release_database(dsn: str) -> None:
    """Migrations 0001 to 0006 only, with a leased saga and its steps written by that release's
    ``saga_commit_batch`` (0005's: no step errors, no trigger event)."""
    created = saga_record("old", steps=(step(0, "retry_wait", error="KeyError: 'x'"), step(1)))
    leased = attrs.evolve(request("saga-old", 0, event(), saga=created), lease=Lease("first", 1))
    await _make_release_database(dsn, 6, _payload(leased), 3.0)


async def test_the_step_errors_migration_upgrades_a_sixth_release_database_and_keeps_fencing(
    pg_dsn: str, aio_loop: object
) -> None:
    await trio_asyncio.aio_as_trio(_make_sixth_release_database)(pg_dsn)
    async with opened_postgres(pg_dsn) as backend:
        assert backend.migrations_applied == ["0007_step_errors_and_trigger_events"]
        assert_the_step_upserting_function(await trio_asyncio.aio_as_trio(_batch_function)(pg_dsn))
        old = await backend.get_saga("old")
        assert old is not None and old.trigger_event_id is None
        assert [(None, ())] * 2 == [(s.error_type, s.error_frames) for s in old.steps]
        # The new function writes the new columns, and still fences.
        failed = step(0, "failed", error="KeyError: 'x'", error_type="KeyError")
        failed = attrs.evolve(failed, error_frames=("a.py:1 in f: x['x']",))
        moved = attrs.evolve(old, version=2, trigger_event_id="ev-1", steps=(failed,))
        stale = attrs.evolve(request("saga-old", 1, event(), saga=moved), lease=Lease("other", 1))
        (refused,) = await backend.commit([stale])
        assert isinstance(refused, LeaseLost) and "first" == refused.owner
        await commit_ok(backend, attrs.evolve(stale, lease=Lease("first", 1)))
        assert await backend.get_saga("old") == attrs.evolve(moved, steps=(failed, step(1)))
