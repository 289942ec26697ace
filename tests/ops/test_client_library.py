"""``saga_orchestrator.client`` as another service uses it, against the real server: the async
client on trio and on asyncio, the sync client, long-poll waits, typed results and errors."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
import trio

from saga_orchestrator.client import (
    Conflict,
    NotFound,
    Saga,
    SagaClient,
    SyncSagaClient,
    UsageError,
    WaitTimedOut,
)

from .conftest import READ_ONLY_KEY, RunningServer, parked_in_doubt

TWO_STEPS = {"name": "ada"}


class CountingTransport(httpx.AsyncBaseTransport):
    """The real transport, counting requests by path suffix."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.paths: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths[request.url.path.rsplit("/", 1)[-1] or "list"] += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_start_wait_read_and_list_on_trio(running_server: RunningServer):
    async with SagaClient(running_server.url, api_key=running_server.api_key) as sagas:
        saga = await sagas.start("test_two_steps", TWO_STEPS, correlation_id="corr-lib-1")
        again = await sagas.start("test_two_steps", TWO_STEPS,
                                  idempotency_key=saga.idempotency_key)  # fmt: skip
        done = await sagas.wait(saga.saga_id, timeout=20)
        steps = await sagas.steps(saga.saga_id)
        history = await sagas.history(saga.saga_id)
        listed = [s async for s in sagas.list(saga_type="test_two_steps", limit=500)]
        one = [s async for s in sagas.list(limit=1)]
    assert isinstance(saga, Saga) and saga.created and saga.idempotency_key
    assert (again.saga_id, again.created) == (saga.saga_id, False)
    assert ("completed", True, "corr-lib-1") == (done.status, done.terminal, done.correlation_id)
    assert done.created_at is not None and done.created_at.tzinfo is not None
    assert ["reserve", "confirm"] == [s.name for s in steps]
    assert "SagaStarted" == history[0].type and len(history) == done.version
    assert saga.saga_id in {s.saga_id for s in listed}
    assert [saga.saga_id] == [s.saga_id for s in one]  # newest first


async def test_a_wait_long_polls_instead_of_polling(running_server: RunningServer):
    transport = CountingTransport()
    async with SagaClient(running_server.url, api_key=running_server.api_key,
                          transport=transport) as sagas:  # fmt: skip
        saga = await sagas.start("test_slow", {"seconds": 3})
        done = await sagas.wait(saga.saga_id, timeout=30)
    assert "completed" == done.status
    # a transition per change of the saga, not a request per half second
    assert transport.paths["wait"] <= done.version
    assert transport.paths[saga.saga_id] == 1


async def test_cancel_and_the_errors_a_caller_handles(running_server: RunningServer):
    async with SagaClient(running_server.url, api_key=running_server.api_key) as sagas:
        slow = await sagas.start("test_slow", {"seconds": 60})
        accepted = await sagas.cancel(slow.saga_id, reason="changed my mind")
        cancelled = await sagas.wait(slow.saga_id, timeout=20)
        with pytest.raises(Conflict) as conflict:
            await sagas.cancel(slow.saga_id)
        with pytest.raises(NotFound) as missing:
            await sagas.get("7d9f1c0e-5d7e-4c1e-9a8a-0b6c2f7d1e11")
        with pytest.raises(UsageError) as invalid:
            await sagas.start("test_two_steps", {"nom": "ada"})
        still = await sagas.start("test_slow", {"seconds": 60})
        with pytest.raises(WaitTimedOut):
            await sagas.wait(still.saga_id, timeout=1)
        await sagas.cancel(still.saga_id)
    assert (accepted.saga_id, "cancelled") == (slow.saga_id, cancelled.status)
    assert (409, 404, 422) == (conflict.value.status, missing.value.status, invalid.value.status)
    assert "saga_not_found" == missing.value.code


async def test_keys_come_from_the_environment_and_read_only_keys_cannot_write(
    running_server: RunningServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("SAGA_ORCHESTRATOR_URL", running_server.url)
    monkeypatch.setenv("SAGA_ORCHESTRATOR_API_KEY", READ_ONLY_KEY)
    async with SagaClient() as reader:
        assert "ok" == (await reader.health())["status"]
        [_] = [s async for s in reader.list(limit=1)]
        with pytest.raises(UsageError) as refused:
            await reader.start("test_two_steps", TWO_STEPS)
        assert READ_ONLY_KEY not in repr(reader)
    assert 403 == refused.value.status
    async with SagaClient(api_key="not-the-key") as stranger:
        with pytest.raises(UsageError) as unknown:
            await stranger.get("7d9f1c0e-5d7e-4c1e-9a8a-0b6c2f7d1e11")
    assert 401 == unknown.value.status


def test_the_async_client_on_asyncio(running_server: RunningServer):
    async def main() -> Saga:
        async with SagaClient(running_server.url, api_key=running_server.api_key) as sagas:
            saga = await sagas.start("test_slow", {"seconds": 0.2})
            return await sagas.wait(saga.saga_id, timeout=20)

    assert "completed" == asyncio.run(main()).status


async def test_the_sync_client(running_server: RunningServer):
    def script() -> tuple[Any, ...]:
        with SyncSagaClient(running_server.url, api_key=running_server.api_key) as sagas:
            saga = sagas.start("test_two_steps", TWO_STEPS)
            done = sagas.wait(saga.saga_id, timeout=20)
            event = sagas.publish("lib.tested", "lib-stream", {"n": 1}, event_id="lib-e-1")
            again = sagas.publish("lib.tested", "lib-stream", {"n": 1}, event_id="lib-e-1")
            listed = list(sagas.list(limit=3))
        return done, event, again, listed

    done, event, again, listed = await trio.to_thread.run_sync(script)
    assert "completed" == done.status
    assert (True, False, event.position) == (event.created, again.created, again.position)
    assert 3 == len(listed)


async def test_pages_steps_and_saga_types(running_server: RunningServer):
    async with SagaClient(running_server.url, api_key=running_server.api_key) as sagas:
        started = [await sagas.start("test_two_steps", {"name": f"page-{n}"}) for n in range(3)]
        done = await sagas.wait(started[-1].saga_id, timeout=20)
        first = await sagas.list_page(limit=2, saga_type="test_two_steps")
        second = await sagas.list_page(cursor=first.next, limit=2, saga_type="test_two_steps")
        steps = await sagas.steps(done.saga_id)
        history = await sagas.history_page(done.saga_id, limit=2)
        rest = await sagas.history_page(done.saga_id, from_version=history.next)
        types = {saga_type.name: saga_type for saga_type in await sagas.saga_types()}
    newest = [saga.saga_id for saga in reversed(started)]
    assert newest[:2] == [saga.saga_id for saga in first.items]
    assert newest[2] == second.items[0].saga_id and first.next is not None
    assert (done.saga_id, "completed") == (steps.saga_id, steps.status)
    assert ["reserve", "confirm"] == [step.name for step in steps] and 2 == len(steps)
    assert steps.raw["items"][0]["name"] == steps[0].name  # the JSON as sent, for printing
    assert (3, None) == (history.next, rest.next)
    assert done.version == len(history.items) + len(rest.items)
    assert "SagaStarted" == history.items[0].type and "SagaCompleted" == rest.items[-1].type
    two_steps = types["test_two_steps"]
    assert ["reserve", "confirm"] == [step.name for step in two_steps.steps]
    assert two_steps.version >= 1 and two_steps.input_schema


async def test_read_and_replay_events(running_server: RunningServer):
    stream = "lib-read-stream"
    async with SagaClient(running_server.url, api_key=running_server.api_key) as sagas:
        published = [await sagas.publish("lib.read", stream, {"n": n}) for n in range(3)]
        page = await sagas.read_stream(stream, limit=2)
        tail = await sagas.read_stream(stream, from_version=page.next)
        after = published[0].position - 1
        only = await sagas.read_all(after_position=after, event_type="lib.read", limit=1000)
        known = await sagas.event_types()
        again = await sagas.replay_stream(stream, from_version=2)
        ranged = await sagas.replay_range(after_position=after, event_type="lib.read", limit=2)
        with pytest.raises(UsageError) as refused:
            await sagas.replay_stream(f"saga-{published[0].event_id}")
    ids = [event.event_id for event in published]
    assert ids == [event.event_id for event in (*page.items, *tail.items)]
    assert (3, None) == (page.next, tail.next)
    assert ids == [event.event_id for event in only.items]
    assert {"lib.read"} == {event.type for event in only.items}
    assert "lib.read" in known.seen and "lib.read" not in known.triggers
    assert (tuple(ids[1:]), None) == (again.event_ids, again.next) and again.bus_stream
    assert tuple(ids[:2]) == ranged.event_ids and ranged.next == published[1].position
    assert 422 == refused.value.status  # a saga's transitions are never replayed


async def test_a_dry_run_says_what_an_action_would_record(running_server: RunningServer):
    saga_id = await trio.to_thread.run_sync(parked_in_doubt, running_server)
    async with SagaClient(running_server.url, api_key=running_server.api_key) as sagas:
        dry = await sagas.resolve(saga_id, "charge", "not_applied", reason="r", dry_run=True)
        still = await sagas.get(saga_id)
    assert (True, "cancelled") == (dry.dry_run, dry.status)
    assert ("StepResolved", "SagaCompensated") == dry.would_record
    assert "compensation_failed" == still.status


async def test_a_start_names_a_version_and_the_list_filters_by_it(running_server: RunningServer):
    async with SagaClient(running_server.url, api_key=running_server.api_key) as sagas:
        saga = await sagas.start("test_two_steps", TWO_STEPS, version=1)
        await sagas.wait(saga.saga_id, timeout=20)
        shown = await sagas.get(saga.saga_id)
        on_v1 = [s.saga_id async for s in sagas.list(saga_type="test_two_steps", saga_version=1)]
        active = [s.saga_id async for s in sagas.list(saga_version=1, active=True)]
        with pytest.raises(UsageError) as missing:
            await sagas.start("test_two_steps", TWO_STEPS, version=9)
        types = {saga_type.name: saga_type for saga_type in await sagas.saga_types()}
    assert (1, False) == (shown.saga_version, shown.waiting_for_definition)
    assert saga.saga_id in on_v1 and saga.saga_id not in active
    assert (422, "unknown_saga_version") == (missing.value.status, missing.value.code)
    (v1,) = types["test_two_steps"].versions
    assert (1, True, 0) == (v1.version, v1.loaded, v1.active)  # it completed: none active
    assert ["reserve", "confirm"] == [step.name for step in v1.steps]
