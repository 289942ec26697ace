"""Failover: the owner of 1,000 parked sagas is SIGKILLed; the other instances claim and resume
every one of them, and drive them to their end.

Three server processes on one PostgreSQL database (the pieces of ``saga-orchestrator bench
failover``, :mod:`saga_orchestrator.bench.instances`); the sagas (``bench.wait``) wait for a
reply event, all started through the first server. Once it is killed, the survivors' metrics
must count 1,000 claims from it, shared between them, and an actor for each; then a reply to a
sample of them, published through either survivor, completes those (a reply that reaches the
instance that does not own its saga is forwarded to the owner): the survivors drive them. The
test asserts completion, not timing: the figures are printed (``bench failover`` measures them).
About 35 s.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from saga_orchestrator.bench.instances import kill_and_time, park, running_servers
from saga_orchestrator.bench.stores import FreshStore
from saga_orchestrator.bench.workloads import REPLY_EVENT
from saga_orchestrator.config import Settings

from ..support.pg import pg_fetch
from ..support.server import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SAGAS = 1000
REPLIED = 100
"""Sagas of the 1,000 replied to, and so completed."""
IN_FLIGHT = 64
DONE_WITHIN = 120.0


async def test_the_survivors_resume_every_saga_of_a_killed_owner(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "src")]))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INSTANCE_HEARTBEAT_SECONDS", "0.5")
    monkeypatch.setenv("INSTANCE_EXPIRY_SECONDS", "2")
    monkeypatch.setenv("RELAY_LEADER_RETRY_SECONDS", "0.5")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    store = FreshStore(kind="postgresql", url=pg_dsn)
    async with running_servers(store, Settings(environment="test"), 3, note=print) as servers:
        ids, errors = await park(servers, SAGAS, concurrency=IN_FLIGHT)
        assert (SAGAS, 0) == (len(ids), errors)
        claimed, resumed, by_survivor = await kill_and_time(servers, SAGAS)
        print(f"claimed in {claimed:.2f} s, resumed in {resumed:.2f} s, by {by_survivor}")
        assert SAGAS == sum(by_survivor)
        assert min(by_survivor) > 0, by_survivor  # shared out, not all on one

        limiter = trio.CapacityLimiter(IN_FLIGHT)

        async def reply(k: int, saga_id: str) -> None:
            body = {
                "event_id": f"reply-{saga_id}",
                "event_type": REPLY_EVENT,
                "stream_id": f"bench-{saga_id}",
                "data": {"saga_id": saga_id},
                "metadata": {"saga_id": saga_id},
            }
            async with limiter:
                response = await servers.clients[1 + k % 2].post("/events/publish", json=body)
            assert response.status_code in (200, 202), response.text

        async with trio.open_nursery() as nursery:
            for k, saga_id in enumerate(ids[:REPLIED]):
                nursery.start_soon(reply, k, saga_id)
        with trio.fail_after(DONE_WITHIN):
            while True:
                rows = await pg_fetch(pg_dsn, "SELECT status, count(*) FROM sagas GROUP BY 1")
                statuses = {row[0]: row[1] for row in rows}
                if statuses.get("completed") == REPLIED:
                    break
                await trio.sleep(0.2)
    assert {"completed": REPLIED, "running": SAGAS - REPLIED} == statuses


HANDED_OVER = 200
EXPIRY = 60.0
"""``INSTANCE_EXPIRY_SECONDS`` of the hand-over test: a claim sooner than this can only come
from the sagas the stopping instance released."""


async def test_an_instance_stopped_in_order_hands_its_sagas_over_at_once(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SIGTERM (a rolling update): the instance stops its actors, releases its leases and
    exits 0; the others claim its sagas as released ones ("hand-over"), without waiting for its
    leases to expire."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "src")]))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INSTANCE_EXPIRY_SECONDS", f"{EXPIRY:g}")
    monkeypatch.setenv("FAILOVER_SCAN_SECONDS", "0.5")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    store = FreshStore(kind="postgresql", url=pg_dsn)
    async with running_servers(store, Settings(environment="test"), 2, note=print) as servers:
        ids, errors = await park(servers, HANDED_OVER, concurrency=IN_FLIGHT)
        assert (HANDED_OVER, 0) == (len(ids), errors)
        stopped = servers.processes[0].process
        stopped.terminate()
        with trio.fail_after(EXPIRY / 2):
            assert 0 == await stopped.wait()
            while await servers.metric(1, "saga_owned", name="this_instance") < HANDED_OVER:
                await trio.sleep(0.1)
        claims = {
            cause: await servers.metric(1, "saga_claims_total", cause=cause)
            for cause in ("hand-over", "failover")
        }
        owners = [row[0] for row in await pg_fetch(pg_dsn, "SELECT DISTINCT owner FROM sagas")]
        survivor = await servers.instance_id(1)
    assert {"hand-over": HANDED_OVER, "failover": 0} == claims
    assert [survivor] == owners
