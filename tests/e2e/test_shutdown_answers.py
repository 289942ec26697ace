"""SIGTERM to the real server while starts wait for the store: every start is answered, and
truthfully; no saga exists that its client cannot find by a key it knows.

The creating appends are held in flight by a lock the test takes on the ``sagas`` table
(PostgreSQL), so the starts are really at the store when the signal comes. The lock is let go
either early (the starts complete during the graceful shutdown: each is answered with its saga)
or only after Hypercorn's graceful timeout (the sagas are created after the HTTP server has
stopped: each start must already have been answered with a 503 carrying its key). The server
is then started again on the same database to see what exists, and each start answered with
a 503 is retried with its key: in the end each start is exactly one saga.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path
from typing import Any

import asyncpg
import attrs
import httpx
import pytest
import trio

from ..support.server import API_KEY, free_port, server_log, server_process, wait_ready

GRACE = 2.0
"""``SHUTDOWN_GRACE_SECONDS``: Hypercorn's graceful timeout is this too (at most 2 s)."""
STARTS = 24
START = {"saga_type": "test_two_steps", "data": {"name": "stopping"}}


@attrs.define
class Outcome:
    """What one start's client saw."""

    sent_key: str | None
    status: int | None = None
    body: dict[str, Any] = attrs.field(factory=dict)
    header_key: str | None = None
    failure: str | None = None
    """The transport error when no answer came."""

    @property
    def learned_key(self) -> str | None:
        """The key this client knows: its own, else the one the answer gave."""
        if self.sent_key is not None:
            return self.sent_key
        return self.body.get("idempotency_key") or self.body.get("error", {}).get("idempotency_key")


def hold_table_lock(dsn: str, locked: threading.Event, release: threading.Event) -> None:
    """Hold ``LOCK TABLE sagas IN EXCLUSIVE MODE`` (reads pass, writes wait) until
    ``release`` is set (run in a thread)."""

    async def hold() -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute("LOCK TABLE sagas IN EXCLUSIVE MODE")
            locked.set()
            while not release.is_set():
                await asyncio.sleep(0.01)
            await transaction.rollback()
        finally:
            await conn.close(timeout=10)

    asyncio.run(hold())


async def start_one(client: httpx.AsyncClient, outcome: Outcome) -> None:
    body = dict(START)
    if outcome.sent_key is not None:
        body["idempotency_key"] = outcome.sent_key
    try:
        response = await client.post("/sagas/start", json=body)
    except httpx.TransportError as exc:
        outcome.failure = f"{type(exc).__name__}: {exc}"
        return
    outcome.status = response.status_code
    outcome.body = response.json()
    outcome.header_key = response.headers.get("Idempotency-Key")


async def wait_at_the_store(client: httpx.AsyncClient, count: int) -> None:
    """Until ``count`` starts are admitted (their creating appends wait for the lock)."""
    with trio.fail_after(15):
        while True:
            coordinator = (await client.get("/health")).json()["components"]["coordinator"]
            if coordinator["active_sagas"] >= count:
                return
            await trio.sleep(0.05)


async def all_sagas(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/sagas/", params={"limit": 500})
    assert 200 == response.status_code, response.text
    return response.json()["items"]


async def stop_with_starts_in_flight(
    tmp_path: Path, dsn: str, release_after: float
) -> list[Outcome]:
    """Starts held at the store, SIGTERM, the lock let go ``release_after`` s later; the
    outcomes once the server has exited."""
    port = free_port()
    env = {"PORT": str(port), "DATABASE_URL": dsn, "SHUTDOWN_GRACE_SECONDS": str(GRACE)}
    outcomes = [Outcome(None if n % 2 else f"client-{n}") for n in range(STARTS)]
    locked, release = threading.Event(), threading.Event()
    async with (
        server_process(tmp_path, log_name="first.log", **env) as process,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": API_KEY}, timeout=30
        ) as client,
        trio.open_nursery() as nursery,
    ):
        await wait_ready(client)
        nursery.start_soon(lambda: trio.to_thread.run_sync(hold_table_lock, dsn, locked, release))
        try:
            with trio.fail_after(10):
                while not locked.is_set():
                    await trio.sleep(0.01)
            async with trio.open_nursery() as starts:
                for outcome in outcomes:
                    starts.start_soon(start_one, client, outcome)
                await wait_at_the_store(client, STARTS)
                process.send_signal(signal.SIGTERM)
                await trio.sleep(release_after)
                release.set()
        finally:
            release.set()
        with trio.fail_after(30):
            code = await process.wait()
        assert 0 == code, server_log(tmp_path, "first.log")[-3000:]
    return outcomes


@attrs.frozen
class Tally:
    started: int
    """Starts answered 202 with their saga."""
    unsure: int
    """Starts answered 503 with their key."""
    found_unsure: int
    """Of those, the sagas that existed before the retry (created after all)."""


async def check_truthful(tmp_path: Path, dsn: str, outcomes: list[Outcome]) -> Tally:
    """Every start was answered truthfully; retried with its key, each is one saga."""
    assert [] == [o.failure for o in outcomes if o.failure is not None]
    port = free_port()
    async with (
        server_process(tmp_path, log_name="second.log", PORT=str(port), DATABASE_URL=dsn),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": API_KEY}, timeout=30
        ) as client,
    ):
        await wait_ready(client)
        by_key = {saga["idempotency_key"]: saga for saga in await all_sagas(client)}
        learned = [o.learned_key for o in outcomes]
        # every start knows a key, the one its answer names
        assert None not in learned
        assert all(o.header_key == o.learned_key for o in outcomes)
        # no saga that its client cannot find
        assert set(by_key) <= set(learned), sorted(set(by_key) - set(learned))
        unsure = []
        for outcome in outcomes:
            if outcome.status == 202:  # started: it exists, as answered
                saga = by_key[outcome.learned_key]
                assert outcome.body["saga_id"] == saga["saga_id"]
                continue
            assert 503 == outcome.status, outcome
            message = outcome.body["error"]["message"]
            if "was not created" in message:
                assert outcome.learned_key not in by_key
            else:
                assert "may have been created: retry with this idempotency key" in message
            unsure.append(outcome)
        # the 503s retried with their keys: each start is exactly one saga
        for outcome in unsure:
            again = await client.post(
                "/sagas/start", json={**START, "idempotency_key": outcome.learned_key}
            )
            assert again.status_code in (200, 202), again.text
            assert (again.status_code == 200) == (outcome.learned_key in by_key)
        final = await all_sagas(client)
        assert sorted(map(str, learned)) == sorted(saga["idempotency_key"] for saga in final)
    found = sum(o.learned_key in by_key for o in unsure)
    return Tally(started=len(outcomes) - len(unsure), unsure=len(unsure), found_unsure=found)


@pytest.mark.e2e
@pytest.mark.integration
async def test_starts_completing_during_shutdown_are_answered_with_their_saga(
    tmp_path: Path, pg_dsn: str
) -> None:
    outcomes = await stop_with_starts_in_flight(tmp_path, pg_dsn, release_after=0.3)
    tally = await check_truthful(tmp_path, pg_dsn, outcomes)
    assert tally.started > 0, tally  # the lock went early: starts completed while stopping


@pytest.mark.e2e
@pytest.mark.integration
async def test_starts_still_at_the_store_when_http_stops_get_their_key(
    tmp_path: Path, pg_dsn: str
) -> None:
    outcomes = await stop_with_starts_in_flight(tmp_path, pg_dsn, release_after=GRACE + 0.3)
    tally = await check_truthful(tmp_path, pg_dsn, outcomes)
    # HTTP had stopped before the lock went: every start was answered 503 with its key, and
    # sagas were created after that all the same (the case a client must retry for)
    assert (0, STARTS) == (tally.started, tally.unsure)
    assert tally.found_unsure > 0, tally
