"""Every start has an idempotency key, and an answer that leaves the outcome open carries it.

A start the client sent without a key gets one made for it (returned in the body and in
``Idempotency-Key``), without the lookup a client's key costs. A 503 tells the client whether
the saga may have been created and gives it the key; retrying with the key then returns that
saga instead of starting a second one. Over the in-memory store, on the autojump clock."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio

from saga_orchestrator.coordinator.options import EngineOptions
from saga_orchestrator.store.memory import MemoryBackend
from saga_orchestrator.store.records import AppendRequest, AppendResult, SagaRecord
from tests.support import open_api

START = {"saga_type": "test_two_steps", "data": {"name": "k"}}


class SlowCommits(MemoryBackend):
    """The next commit (after ``slow_next``) takes that many seconds: the creating append is
    with the store meanwhile. Counts the lookups of idempotency keys."""

    def __init__(self) -> None:
        super().__init__()
        self.slow_next = 0.0
        self.lookups: list[str] = []

    async def commit(self, batch: Sequence[AppendRequest]) -> list[AppendResult | Exception]:
        delay, self.slow_next = self.slow_next, 0.0
        await trio.sleep(delay)
        return await super().commit(batch)

    async def find_saga_by_key(self, idempotency_key: str) -> SagaRecord | None:
        self.lookups.append(idempotency_key)
        return await super().find_saga_by_key(idempotency_key)


async def post_start(client: Any, **extra: Any) -> tuple[int, dict[str, Any], Any]:
    response = await client.post("/sagas/start", json={**START, **extra})
    return response.status_code, await response.get_json(), response.headers


async def sagas(client: Any) -> list[dict[str, Any]]:
    return (await (await client.get("/sagas/")).get_json())["items"]


async def test_a_start_without_a_key_gets_one_made_and_returned(autojump_clock: Any) -> None:
    backend = SlowCommits()
    async with open_api(backend=backend) as api:
        status, saga, headers = await post_start(api.client)
        assert 202 == status
        key = saga["idempotency_key"]
        assert key and key == headers["Idempotency-Key"]
        assert [] == backend.lookups  # a key made for this start is new: not looked up
        again_status, again, again_headers = await post_start(api.client, idempotency_key=key)
        assert (200, saga["saga_id"], False) == (again_status, again["saga_id"], again["created"])
        assert key == again_headers["Idempotency-Key"]
        assert [key] == backend.lookups  # a client's key is looked up
        other_status, other, _ = await post_start(api.client)
        assert 202 == other_status
        assert other["idempotency_key"] != key
        assert 2 == len(await sagas(api.client))


async def test_a_start_whose_answer_timed_out_is_found_by_its_key(autojump_clock: Any) -> None:
    """The ask times out while the creating append is with the store: 503 with the key, and a
    retry with it returns the saga that append made (200), never a second one."""
    backend = SlowCommits()
    async with open_api(backend=backend, command_timeout=5.0) as api:
        backend.slow_next = 8.0  # lands 3 s after the ask gave up
        status, body, headers = await post_start(api.client)
        assert 503 == status
        error = body["error"]
        assert "timeout" == error["code"]
        key = error["idempotency_key"]
        assert key and key == headers["Idempotency-Key"]
        assert "may have been created: retry with this idempotency key" in error["message"]
        assert int(headers["Retry-After"]) >= 1
        # retried at once: the first append is still in flight, the retry waits behind it
        status, saga, _ = await post_start(api.client, idempotency_key=key)
        assert (200, False, key) == (status, saga["created"], saga["idempotency_key"])
        assert [saga["saga_id"]] == [item["saga_id"] for item in await sagas(api.client)]


async def test_a_start_refused_at_the_limit_carries_its_key(autojump_clock: Any) -> None:
    async with open_api(options=EngineOptions(max_active_sagas=1)) as api:
        slow = await api.client.post(
            "/sagas/start", json={"saga_type": "test_slow", "data": {"seconds": 60}}
        )
        assert 202 == slow.status_code
        status, body, headers = await post_start(api.client, idempotency_key="client-key-1")
        assert (503, "overloaded") == (status, body["error"]["code"])
        assert "client-key-1" == body["error"]["idempotency_key"] == headers["Idempotency-Key"]
        assert (
            "the saga was not created: retry with this idempotency key"
            in (body["error"]["message"])
        )
        assert 1 == len(await sagas(api.client))


async def test_errors_a_client_can_fix_carry_no_key(autojump_clock: Any) -> None:
    async with open_api() as api:
        status, body, headers = await post_start(api.client, data={"nam": "x"})
        assert 422 == status
        assert "idempotency_key" not in body["error"]
        assert "Idempotency-Key" not in headers


async def test_starts_in_flight_are_answered_when_the_service_begins_to_stop(
    autojump_clock: Any,
) -> None:
    """Once draining begins, a start still waiting for the coordinator is answered within the
    time given (503 with its key: the saga may have been created), and a later start is refused
    before it reaches the coordinator (not created)."""
    backend = SlowCommits()
    async with open_api(backend=backend, command_timeout=30.0) as api:
        backend.slow_next = 20.0
        answers: list[tuple[float, int, dict[str, Any]]] = []

        async def start_one() -> None:
            status, body, _ = await post_start(api.client)
            answers.append((trio.current_time(), status, body))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(start_one)
            await trio.sleep(1.0)
            began = trio.current_time()
            api.deps.draining.begin(1.5)
        [(answered_at, status, body)] = answers
        assert answered_at - began <= 1.5
        assert (503, "unavailable") == (status, body["error"]["code"])
        assert "may have been created" in body["error"]["message"]
        key = body["error"]["idempotency_key"]

        status, late, headers = await post_start(api.client)
        assert (503, "unavailable") == (status, late["error"]["code"])
        assert "the saga was not created" in late["error"]["message"]
        assert late["error"]["idempotency_key"] == headers["Idempotency-Key"]

        await trio.sleep(30)  # the first append lands after all: its saga is found by its key
        [saga] = await sagas(api.client)
        assert key == saga["idempotency_key"]
