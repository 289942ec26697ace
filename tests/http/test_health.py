"""Health routes: liveness, readiness and the overall picture."""

from __future__ import annotations

import trio

from saga_orchestrator.actors import open_mailbox
from saga_orchestrator.config import Settings
from saga_orchestrator.errors import StoreUnavailable
from saga_orchestrator.http.app import ApiDeps, create_app
from saga_orchestrator.store.memory import MemoryBackend
from saga_orchestrator.store.records import ClaimedSaga, Loaded
from tests.support import open_api


class SlowRecoveryBackend(MemoryBackend):
    """Recovery (``active_sagas``) waits until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = trio.Event()

    async def claim_orphans(
        self, instance_id: str, limit: int, *, mine: bool = False, loaded: Loaded | None = None
    ) -> list[ClaimedSaga]:
        await self.release.wait()
        return await super().claim_orphans(instance_id, limit, mine=mine, loaded=loaded)


class DownBackend(MemoryBackend):
    """A database that cannot be reached (its message holds internals)."""

    async def ping(self) -> None:
        raise StoreUnavailable("connection refused by db.internal:5432 (password hunter2)")


class HangingBackend(MemoryBackend):
    async def ping(self) -> None:
        await trio.sleep_forever()


async def test_live_answers_when_the_coordinator_answers() -> None:
    async with open_api() as api:
        response = await api.client.get("/health/live")
        assert 200 == response.status_code
        assert {"status": "alive"} == await response.get_json()


async def test_live_is_503_when_the_coordinator_does_not_answer() -> None:
    async with open_api() as api:
        silent, _mailbox = open_mailbox("coordinator", 4)  # nobody reads it
        deps = ApiDeps(
            coordinator=silent,
            store=api.deps.store,
            catalog=api.deps.catalog,
            health_timeout=0.05,
        )
        client = create_app(deps).test_client()
        response = await client.get("/health/live")
        assert 503 == response.status_code
        assert "unavailable" == (await response.get_json())["status"]
        ready = await client.get("/health/ready")
        assert 503 == ready.status_code
        assert [{"component": "coordinator", "reason": "does not answer"}] == (
            await ready.get_json()
        )["not_ready"]


async def test_ready_only_after_recovery() -> None:
    backend = SlowRecoveryBackend()
    async with open_api(backend=backend) as api:
        response = await api.client.get("/health/ready")
        assert 503 == response.status_code
        body = await response.get_json()
        assert "not_ready" == body["status"]
        assert ["coordinator"] == [item["component"] for item in body["not_ready"]]
        overall = await api.client.get("/health")
        assert 503 == overall.status_code
        coordinator = (await overall.get_json())["components"]["coordinator"]
        assert coordinator["recovered"] is False
        assert "recovering" == coordinator["status"]
        # Liveness does not wait for recovery.
        assert 200 == (await api.client.get("/health/live")).status_code

        backend.release.set()
        await api.coordinator.ready.wait()
        response = await api.client.get("/health/ready")
        assert 200 == response.status_code
        assert {"status": "ready"} == await response.get_json()


async def test_ready_is_503_when_the_store_is_down_without_leaking_its_error() -> None:
    async with open_api(backend=DownBackend()) as api:
        await api.coordinator.ready.wait()
        response = await api.client.get("/health/ready")
        assert 503 == response.status_code
        body = await response.get_json()
        assert ["store"] == [item["component"] for item in body["not_ready"]]
        overall = await api.client.get("/health")
        assert 503 == overall.status_code
        text = (await overall.get_data()).decode()
        assert "hunter2" not in text and "db.internal" not in text
        store = (await overall.get_json())["components"]["store"]
        assert "error" == store["status"]


async def test_ready_is_503_when_the_store_does_not_answer_in_time() -> None:
    async with open_api(backend=HangingBackend(), health_timeout=0.05) as api:
        await api.coordinator.ready.wait()
        response = await api.client.get("/health/ready")
        assert 503 == response.status_code
        (item,) = (await response.get_json())["not_ready"]
        assert "store" == item["component"]
        assert "did not answer" in item["reason"]


async def test_health_lists_the_components() -> None:
    async with open_api() as api:
        await api.coordinator.ready.wait()
        response = await api.client.get("/health")
        assert 200 == response.status_code
        body = await response.get_json()
        assert "ok" == body["status"]
        components = body["components"]
        assert {"store", "coordinator", "bus", "instances"} == set(components)
        assert "ok" == components["store"]["status"]
        assert "memory" == components["store"]["kind"]
        assert components["store"]["latency_ms"] >= 0
        assert 0 == components["store"]["failed_batches"]
        coordinator = components["coordinator"]
        assert 0 == coordinator["active_sagas"]
        assert 10_000 == coordinator["max_active_sagas"]
        assert coordinator["recovered"] is True
        assert 0 == coordinator["mailbox_depth"]
        assert {"status": "not configured"} == components["bus"]
        assert coordinator["lease_holds"] is True
        (this,) = components["instances"]["live"]
        assert (1, coordinator["instance_id"]) == (
            components["instances"]["count"],
            this["instance_id"],
        )
        assert this["expires_at"] > this["heartbeat_at"] >= this["started_at"]


async def test_health_needs_no_api_key() -> None:
    async with open_api(settings=Settings(api_key="s3cret")) as api:
        await api.coordinator.ready.wait()
        for path in ("/health", "/health/live", "/health/ready"):
            assert 200 == (await api.client.get(path)).status_code, path
