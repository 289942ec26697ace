"""The events service on the in-memory store: a publish is the event and its outbox message in
one append, a repeat of a chosen id finds the stored event, a replay is ONE append of outbox
messages (no event) whatever its size, saga streams are read-only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import pytest

from saga_orchestrator.actors import open_actor_system
from saga_orchestrator.coordinator.catalog import SagaCatalog
from saga_orchestrator.coordinator.domain_events import DomainEvents
from saga_orchestrator.errors import (
    ConcurrencyError,
    ConflictError,
    DuplicateEventId,
    ValidationError,
)
from saga_orchestrator.store.actor import Store, start_store
from saga_orchestrator.store.memory import MemoryBackend
from saga_orchestrator.store.records import ANY_VERSION, AppendRequest, NewEvent

from ..bus.harness import ONBOARDING, SYNC

TOPIC = "domain-events"


@attrs.frozen
class Service:
    events: DomainEvents
    store: Store
    backend: MemoryBackend


@asynccontextmanager
async def events_service() -> AsyncIterator[Service]:
    backend = MemoryBackend()
    async with open_actor_system(shutdown_grace=0.5) as system:
        store = await start_store(system, backend)
        catalog = SagaCatalog([ONBOARDING, SYNC])
        yield Service(DomainEvents(store, catalog, topic=TOPIC), store, backend)


def registered(n: int, event_id: str | None = None) -> NewEvent:
    event = NewEvent(
        event_type="user.registered",
        data={"user_id": f"u-{n}"},
        metadata={"correlation_id": f"c-{n}", "version": "the publisher's"},
    )
    return event if event_id is None else attrs.evolve(event, event_id=event_id)


# -- publish ------------------------------------------------------------------------------------


async def test_a_published_event_and_its_outbox_message_commit_together() -> None:
    async with events_service() as svc:
        event = registered(1)
        published = await svc.events.publish("user-1", event, expected_version=0)
        again = await svc.events.publish("user-1", registered(2))
        [first, second] = await svc.store.outbox_pending()
    assert (True, 1, event.event_id) == (
        published.created,
        published.event.version,
        published.event.event_id,
    )
    assert [published.event, again.event] == await svc.store.read_stream("user-1")
    assert 2 == svc.store.stats.appends
    assert (TOPIC, event.event_id, event.data) == (
        first.topic,
        first.event.event_id,
        first.event.data,
    )
    # Where the event is in the store; the version only when the publish named one.
    assert {"correlation_id": "c-1", "stream_id": "user-1", "version": 1} == first.event.metadata
    assert {"correlation_id": "c-2", "stream_id": "user-1"} == second.event.metadata
    assert first.created_at == first.occurred_at  # occurred when it was recorded


async def test_a_repeated_chosen_event_id_finds_the_stored_event() -> None:
    async with events_service() as svc:
        first = await svc.events.publish(
            "user-1", registered(1, "evt-1"), expected_version=0, repeatable=True
        )
        again = await svc.events.publish(
            "user-1", registered(1, "evt-1"), expected_version=0, repeatable=True
        )
        anywhere = await svc.events.publish("user-1", registered(1, "evt-1"), repeatable=True)
        assert (True, False, False) == (first.created, again.created, anywhere.created)
        assert first.event == again.event == anywhere.event
        with pytest.raises(ConflictError, match="already names another event"):
            await svc.events.publish("user-1", registered(2, "evt-1"), repeatable=True)
        with pytest.raises(DuplicateEventId):  # the id is taken in another stream
            await svc.events.publish("user-2", registered(1, "evt-1"), repeatable=True)
        with pytest.raises(ConcurrencyError):  # not the caller's id: a real conflict
            await svc.events.publish("user-1", registered(3), expected_version=0)
        assert 1 == len(await svc.store.read_stream("user-1"))
        assert 1 == len(await svc.store.outbox_pending())


async def test_saga_streams_are_not_published_to_or_replayed() -> None:
    async with events_service() as svc:
        with pytest.raises(ValidationError) as publishing:
            await svc.events.publish("saga-1", registered(1))
        with pytest.raises(ValidationError) as replaying:
            await svc.events.replay_stream("saga-1")
        assert 0 == svc.store.stats.appends
    for raised in (publishing, replaying):
        assert ["stream_id"] == [e["field"] for e in raised.value.errors]


# -- replay -------------------------------------------------------------------------------------


async def test_a_replay_is_one_append_of_outbox_messages_and_leaves_the_stream() -> None:
    async with events_service() as svc:
        for n in range(1, 6):
            await svc.events.publish("user-1", registered(n))
        await svc.store.outbox_mark_sent([r.id for r in await svc.store.outbox_pending()])
        stored = await svc.store.read_stream("user-1")
        appends = svc.store.stats.appends

        replayed = await svc.events.replay_stream("user-1", from_version=2, limit=3)

        assert appends + 1 == svc.store.stats.appends  # one transaction for the whole replay
        assert stored == await svc.store.read_all()  # no event appended
        assert ([e.event_id for e in stored[1:4]], TOPIC, 5) == (
            list(replayed.event_ids),
            replayed.topic,
            replayed.next,
        )
        pending = await svc.store.outbox_pending()
        assert [e.event_id for e in stored[1:4]] == [p.event.event_id for p in pending]
        assert [
            {"correlation_id": f"c-{e.version}", "stream_id": "user-1", "version": e.version}
            for e in stored[1:4]
        ] == [p.event.metadata for p in pending]
        # The bus envelope's occurred_at: when the event was recorded, not the replay.
        assert [e.recorded_at for e in stored[1:4]] == [p.occurred_at for p in pending]
        rest = await svc.events.replay_stream("user-1", from_version=5, limit=3)
        assert ([stored[4].event_id], None) == (list(rest.event_ids), rest.next)


async def test_replaying_nothing_appends_nothing() -> None:
    async with events_service() as svc:
        replayed = await svc.events.replay_stream("nothing-here")
        assert ((), None, 0) == (replayed.event_ids, replayed.next, svc.store.stats.appends)


async def test_a_range_replay_skips_saga_streams_and_pages_by_position() -> None:
    async with events_service() as svc:
        one = await svc.events.publish("user-1", registered(1))
        await svc.store.append(
            AppendRequest(
                stream_id="saga-s", expected_version=ANY_VERSION, events=[NewEvent(event_type="x")]
            )
        )
        thing = await svc.events.publish("things", NewEvent(event_type="thing.done"))
        two = await svc.events.publish("user-2", registered(2))
        await svc.store.outbox_mark_sent([r.id for r in await svc.store.outbox_pending()])

        everything = await svc.events.replay_range(after_position=0)
        ids = (one.event.event_id, thing.event.event_id, two.event.event_id)
        assert (ids, None) == (everything.event_ids, everything.next)
        typed = await svc.events.replay_range(after_position=0, event_type="user.registered")
        assert (ids[0], ids[2]) == typed.event_ids
        capped = await svc.events.replay_range(after_position=0, to_position=3)
        assert (ids[:2], None) == (capped.event_ids, capped.next)
        paged = await svc.events.replay_range(after_position=0, limit=2)
        assert (ids[:1], 2) == (paged.event_ids, paged.next)
        assert 4 == len(await svc.store.read_all())
        assert 3 + 2 + 2 + 1 == len(await svc.store.outbox_pending())


# -- reads --------------------------------------------------------------------------------------


async def test_reads_page_and_filter_and_types_leave_saga_transitions_out() -> None:
    async with events_service() as svc:
        for n in range(3):
            await svc.events.publish("things", NewEvent(event_type="thing.done", data={"n": n}))
        await svc.events.publish("user-1", registered(1))
        await svc.store.append(
            AppendRequest(
                stream_id="saga-s",
                expected_version=0,
                events=[NewEvent(event_type="SagaStarted")],
            )
        )
        page = await svc.events.read_stream("things", from_version=1, limit=2)
        assert ([1, 2], 3) == ([e.version for e in page.events], page.next)
        everything = await svc.events.read_all(after_position=0, limit=3, event_type="thing.done")
        assert (3, 3) == (len(everything.events), everything.next)
        users = await svc.events.read_all(after_position=0, limit=10, event_type="user.registered")
        assert (["user-1"], None) == ([e.stream_id for e in users.events], users.next)
        types = await svc.events.event_types()
    assert {
        "airtable.base.connected": ("test_sync",),
        "user.registered": ("test_onboarding",),
    } == types.triggers
    assert ("thing.done", "user.registered") == types.seen
