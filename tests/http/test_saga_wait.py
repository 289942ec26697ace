"""``GET /sagas/{id}/wait``: a long poll that answers at a saga's next change, at once for an
ended saga, at its timeout otherwise, and sees another instance's changes by re-reading."""

from __future__ import annotations

from typing import Any

import trio

from saga_orchestrator.http.routes_sagas import RECHECK_SECONDS
from tests.support import open_api


async def start_slow(client: Any, seconds: float) -> dict[str, Any]:
    response = await client.post(
        "/sagas/start", json={"saga_type": "test_slow", "data": {"seconds": seconds}}
    )
    assert 202 == response.status_code
    return await response.get_json()


async def wait(client: Any, saga_id: str, **query: Any) -> tuple[int, dict[str, Any], float]:
    began = trio.current_time()
    response = await client.get(f"/sagas/{saga_id}/wait", query_string=query)
    return response.status_code, await response.get_json(), trio.current_time() - began


async def test_a_wait_answers_at_the_sagas_next_change(autojump_clock):
    async with open_api() as api:
        saga = await start_slow(api.client, seconds=20)
        status, body, took = await wait(api.client, saga["saga_id"],
                                        after_version=saga["version"], timeout=60)  # fmt: skip
        assert 200 == status
        assert body["version"] > saga["version"]
        assert took < 1  # the next transition, not the timeout
        version = body["version"]
        while body["status"] != "completed":
            status, body, took = await wait(api.client, saga["saga_id"], after_version=version)
            version = body["version"]
        assert 19 <= trio.current_time() < 25  # woken by the completion, 20 s in


async def test_an_ended_saga_is_answered_at_once(autojump_clock):
    async with open_api() as api:
        saga = await start_slow(api.client, seconds=1)
        body: dict[str, Any] = {"status": "running", "version": 0}
        while body["status"] != "completed":
            _, body, _ = await wait(api.client, saga["saga_id"], after_version=body["version"])
        status, again, took = await wait(api.client, saga["saga_id"], after_version=10**9)
    assert (200, "completed", body["version"], 0) == (
        status, again["status"], again["version"], took
    )  # fmt: skip


async def test_a_wait_without_news_ends_at_its_timeout(autojump_clock):
    async with open_api() as api:
        saga = await start_slow(api.client, seconds=3600)
        _, body, _ = await wait(api.client, saga["saga_id"], after_version=0, timeout=0)
        status, same, took = await wait(api.client, saga["saga_id"],
                                        after_version=body["version"], timeout=7)  # fmt: skip
        assert (200, body["version"], "running") == (status, same["version"], same["status"])
        assert 7 <= took < 7 + RECHECK_SECONDS
        await api.client.post(f"/sagas/{saga['saga_id']}/cancel")


async def test_a_change_this_process_does_not_hear_of_is_seen_by_re_reading(autojump_clock):
    # as when another instance drives the saga: this engine's transitions reach no waiter
    async with open_api(wire_waiters=False) as api:
        saga = await start_slow(api.client, seconds=5)
        body: dict[str, Any] = {"status": "running", "version": saga["version"]}
        while body["status"] != "completed":
            _, body, _ = await wait(api.client, saga["saga_id"], after_version=body["version"])
        assert 5 <= trio.current_time() <= 5 + RECHECK_SECONDS + 0.5


async def test_a_shutdown_answers_the_waits_in_flight(autojump_clock):
    async with open_api() as api:
        saga = await start_slow(api.client, seconds=3600)
        answers: list[tuple[int, dict[str, Any], float]] = []

        async def waiter() -> None:
            answers.append(await wait(api.client, saga["saga_id"], after_version=10**6,
                                      timeout=60))  # fmt: skip

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.sleep(2)
            api.deps.draining.begin(within=1)
        [(status, body, took)] = answers
        assert (200, "running") == (status, body["status"])
        assert took <= 3.5
        await api.client.post(f"/sagas/{saga['saga_id']}/cancel")


async def test_bad_waits_are_refused(autojump_clock):
    async with open_api() as api:
        saga = await start_slow(api.client, seconds=1)
        status, body, _ = await wait(api.client, saga["saga_id"], timeout=61)
        assert (400, "timeout") == (status, body["error"]["details"][0]["field"])
        status, body, _ = await wait(api.client, saga["saga_id"], after_version=-1)
        assert 400 == status
        status, body, _ = await wait(api.client, "7d9f1c0e-5d7e-4c1e-9a8a-0b6c2f7d1e11")
        assert (404, "saga_not_found") == (status, body["error"]["code"])
