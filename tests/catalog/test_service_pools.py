"""The downstream services' connection pools: a pool per service, at most ``max_connections``
requests in flight in each (the others wait their turn), and connections kept alive and reused
from one call to the next, also after a burst wider than any keep-alive limit."""

from __future__ import annotations

from functools import partial

import httpx
import trio

from saga_orchestrator.bench.stub_service import StubService, serve_stub
from saga_orchestrator.coordinator.downstream import (
    Call,
    DownstreamConfig,
    open_downstream_clients,
)

CALL = Call("saga-1:step", "corr-1")


class _Gate:
    """A mock service whose answers wait until released, counting the requests in it."""

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self.paths: list[str] = []
        self.release = trio.Event()

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.inside += 1
        self.most = max(self.most, self.inside)
        self.paths.append(request.url.path)
        try:
            await self.release.wait()
        finally:
            self.inside -= 1
        return httpx.Response(200, json={"user_id": "u", "status": "active"})


async def test_at_most_max_connections_requests_are_in_flight_per_service():
    gate = _Gate()
    config = DownstreamConfig.all_at("http://svc", max_connections=3)
    answered = 0
    async with open_downstream_clients(config, transport=httpx.MockTransport(gate.handler)) as c:

        async def get(index: int) -> None:
            nonlocal answered
            await c.auth.get_user(f"u{index}", CALL)
            answered += 1

        async with trio.open_nursery() as nursery:
            for index in range(10):
                nursery.start_soon(get, index)
            await trio.testing.wait_all_tasks_blocked()
            assert 3 == gate.inside  # the other 7 wait their turn outside the pool
            gate.release.set()
    assert (3, 10) == (gate.most, answered)


async def test_a_busy_service_does_not_hold_up_another():
    gate = _Gate()
    config = DownstreamConfig.all_at("http://svc", max_connections=1)

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/auth/"):
            return await gate.handler(request)
        return httpx.Response(201, json={"profile_id": "p-1"})

    async with (
        open_downstream_clients(config, transport=httpx.MockTransport(handler)) as c,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(c.auth.get_user, "u1", CALL)
        await trio.testing.wait_all_tasks_blocked()
        assert 1 == gate.inside  # auth's only turn is taken
        with trio.fail_after(5):
            reply = await c.users.create_profile("u1", "a@b.co", "A", CALL)
        assert "p-1" == reply["profile_id"]
        gate.release.set()


async def test_connections_are_kept_alive_and_reused_after_a_wide_burst():
    stub = StubService()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(serve_stub, stub))
        config = DownstreamConfig.all_at(f"http://127.0.0.1:{port}", max_connections=50)
        async with open_downstream_clients(config) as c:
            stub.batch = 50  # each burst's 50 calls are in flight at once
            for _ in range(3):  # three bursts, as steps of many sagas
                async with trio.open_nursery() as burst:
                    for index in range(50):
                        burst.start_soon(c.auth.get_user, f"u{index}", CALL)
            stub.batch = 0
            for index in range(20):  # then calls one after the other, as one saga's steps
                await c.auth.get_user(f"u{index}", CALL)
        nursery.cancel_scope.cancel()
    assert 170 == stub.requests
    assert stub.connections <= 50  # each kept alive, none closed and opened again
