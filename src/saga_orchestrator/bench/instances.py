"""Several server processes on one PostgreSQL database (docs/operations.md, "Several replicas").

* ``bench saga-4 --instances N``: N servers (``python -m saga_orchestrator serve``, see
  :mod:`.http_server`) on the workload's fresh database; this process starts ``bench.saga-4``
  sagas through their APIs, each to the next server in turn, C at a time, and waits until none
  is active. Figures: sagas/s over all of them (N sagas / seconds from the first start to the
  last saga's end), the starts' p50/p99, the starts each server took.
* ``bench failover``: N servers (3 by default); N sagas parked on a reply-driven step
  (``bench.wait``), all started through the first server (so it owns them); then that server is
  SIGKILLed. Figures: seconds from the kill until the survivors had claimed every saga
  (``saga_claims_total{cause="failover"}``) and until an actor ran for each again
  (``saga_owned``), as their ``/metrics`` say; the survivors' share of the claims. The
  survivors run with the default lease settings unless the environment sets them.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import attrs
import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from saga_orchestrator.config import Settings

from .common import Progress, percentile, rounded
from .http_server import ServerProcess, server_process
from .stores import BenchError, FreshStore, StoreTarget, fresh_store, opened
from .workloads import SAGA_4, SAGA_WAIT, Workload

__all__ = [
    "FailoverResult",
    "InstancesResult",
    "Servers",
    "park",
    "run_failover",
    "run_instances",
    "running_servers",
    "start_sagas",
]

POLL = 0.05
"""Seconds between looks at the store or the servers' metrics."""
WITHIN = 600.0
"""Most seconds a phase may take."""


@attrs.define
class Servers:
    """Running servers on one store, and an HTTP client for each."""

    processes: list[ServerProcess]
    clients: list[httpx.AsyncClient]

    async def metric(self, index: int, metric: str, **labels: str) -> float:
        """A sample of server ``index``'s ``/metrics`` (0 when it has none)."""
        text = (await self.clients[index].get("/metrics")).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == metric and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    async def instance_id(self, index: int) -> str:
        body = (await self.clients[index].get("/health")).json()
        return str(body["components"]["coordinator"]["instance_id"])


@asynccontextmanager
async def running_servers(
    store: FreshStore,
    settings: Settings,
    count: int,
    *,
    note: Callable[[str], None] = print,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Servers]:
    """``count`` servers over ``store``, all ready; stopped when the ``async with`` ends."""
    async with AsyncExitStack() as stack:
        processes = []
        clients = []
        for _ in range(count):
            server = await stack.enter_async_context(
                server_process(store, settings, note=note, env=env)
            )
            client = httpx.AsyncClient(
                base_url=f"http://{server.host}:{server.port}",
                headers={"X-API-Key": server.api_key},
                timeout=30.0,
            )
            processes.append(server)
            clients.append(await stack.enter_async_context(client))
        yield Servers(processes, clients)


async def start_sagas(
    servers: Servers,
    saga_type: str,
    n: int,
    *,
    concurrency: int,
    via: Sequence[int] | None = None,
    first: int = 0,
) -> tuple[list[str], list[float], dict[int, int], int]:
    """Start ``n`` sagas, ``concurrency`` at a time, each through the next of ``via`` (default:
    every server) in turn. The saga ids, each start's seconds, starts by server, errors."""
    targets = list(via) if via is not None else list(range(len(servers.clients)))
    ids: list[str] = []
    latencies: list[float] = []
    by_server = dict.fromkeys(targets, 0)
    errors = 0
    limiter = trio.CapacityLimiter(concurrency)

    async def one(k: int) -> None:
        nonlocal errors
        index = targets[k % len(targets)]
        body = {"saga_type": saga_type, "data": {"index": first + k}}
        async with limiter:
            began = time.perf_counter()
            try:
                response = await servers.clients[index].post("/sagas/start", json=body)
            except httpx.HTTPError:
                errors += 1
                return
            latencies.append(time.perf_counter() - began)
        if response.status_code in (200, 202):
            ids.append(response.json()["saga_id"])
            by_server[index] += 1
        else:
            errors += 1

    async with trio.open_nursery() as nursery:
        for k in range(n):
            nursery.start_soon(one, k)
    return ids, sorted(latencies), by_server, errors


async def wait_until(check: Callable[[], Awaitable[bool]], doing: str) -> float:
    """Poll ``await check()`` until it is true; when it was (``time.perf_counter()``)."""
    deadline = time.perf_counter() + WITHIN
    while time.perf_counter() < deadline:
        if await check():
            return time.perf_counter()
        await trio.sleep(POLL)
    raise BenchError(f"{doing} took more than {WITHIN:g} s")


# -- bench saga-4 --instances N ------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class InstancesResult:
    workload: str
    store: str
    instances: int
    n: int
    concurrency: int
    sagas_per_s: float
    """Sagas ended per second over all instances: from the first start to the last end."""
    starts_per_s: float
    start_p50_ms: float
    start_p99_ms: float
    starts_by_instance: list[int]
    errors: int
    warmup: int
    elapsed_s: float

    def to_json(self) -> dict[str, Any]:
        return rounded(self)

    def line(self) -> str:
        return (
            f"{self.workload:<12} {self.store:<10} n={self.n:<6} c={self.concurrency:<4} "
            f"instances={self.instances}  {self.sagas_per_s:7,.0f} sagas/s  starts "
            f"{self.starts_per_s:7,.0f}/s  p50 {self.start_p50_ms:7.2f} ms  p99 "
            f"{self.start_p99_ms:7.2f} ms  by instance {self.starts_by_instance}"
            + (f"  ERRORS {self.errors}" if self.errors else "")
        )


def _postgres(target: StoreTarget, what: str) -> None:
    if target.kind != "postgresql":
        raise BenchError(f"{what} needs PostgreSQL (several processes share one store): "
                         "set DATABASE_URL or --database-url to a postgresql:// URL")  # fmt: skip


async def run_instances(
    workload: Workload,
    target: StoreTarget,
    settings: Settings,
    *,
    n: int,
    concurrency: int,
    warmup: int,
    keep: bool,
    progress: Progress,
    note: Callable[[str], None],
    instances: int,
) -> InstancesResult:
    """``workload`` (``saga-4``) through ``instances`` server processes on one database."""
    _postgres(target, "--instances")
    if workload.saga_type != SAGA_4.name:
        raise BenchError(f"--instances runs saga-4 only, not {workload.name}")
    async with (
        fresh_store(target, keep=keep, note=note) as store,
        running_servers(store, settings, instances, note=note) as servers,
        opened(store.backend()) as backend,
    ):

        async def none_active() -> bool:
            return not await backend.active_sagas()

        note(f"{workload.name}: {instances} servers ready; warm-up {warmup}")
        await start_sagas(servers, SAGA_4.name, warmup, concurrency=concurrency)
        await wait_until(none_active, "the warm-up")
        note(f"{workload.name}: {n} sagas through {instances} servers")
        began = time.perf_counter()
        _, latencies, by_server, errors = await start_sagas(
            servers, SAGA_4.name, n, concurrency=concurrency, first=warmup
        )
        started = time.perf_counter()
        ended = await wait_until(none_active, "the sagas")
    elapsed = ended - began
    return InstancesResult(
        workload=workload.name,
        store=store.kind,
        instances=instances,
        n=n,
        concurrency=concurrency,
        sagas_per_s=n / elapsed if elapsed > 0 else math.inf,
        starts_per_s=n / (started - began) if started > began else math.inf,
        start_p50_ms=1000 * percentile(latencies, 50) if latencies else 0.0,
        start_p99_ms=1000 * percentile(latencies, 99) if latencies else 0.0,
        starts_by_instance=[by_server[i] for i in sorted(by_server)],
        errors=errors,
        warmup=warmup,
        elapsed_s=elapsed,
    )


# -- bench failover ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class FailoverResult:
    workload: str
    store: str
    instances: int
    n: int
    """Sagas the killed server owned."""
    claimed_s: float
    """Seconds from the SIGKILL until the survivors had claimed all of them."""
    resumed_s: float
    """Seconds from the SIGKILL until an actor ran for each of them on a survivor."""
    claims_by_survivor: list[int]
    heartbeat_s: float
    expiry_s: float
    scan_s: float
    errors: int

    def to_json(self) -> dict[str, Any]:
        return rounded(self)

    def line(self) -> str:
        return (
            f"{self.workload:<12} {self.store:<10} n={self.n:<6} instances={self.instances}  "
            f"claimed in {self.claimed_s:6.2f} s  resumed in {self.resumed_s:6.2f} s  claims by "
            f"survivor {self.claims_by_survivor}  (heartbeat {self.heartbeat_s:g} s, expiry "
            f"{self.expiry_s:g} s, scan {self.scan_s:g} s)"
            + (f"  ERRORS {self.errors}" if self.errors else "")
        )


async def park(servers: Servers, n: int, *, concurrency: int) -> tuple[list[str], int]:
    """``n`` ``bench.wait`` sagas started through server 0, each parked on its reply-driven
    step (owned by server 0); their ids and the starts that failed."""
    ids, _, _, errors = await start_sagas(
        servers, SAGA_WAIT.name, n, concurrency=concurrency, via=[0]
    )

    async def all_waiting() -> bool:
        return await servers.metric(0, "saga_owned", name="this_instance") >= len(ids)

    await wait_until(all_waiting, "parking the sagas")
    return ids, errors


async def kill_and_time(servers: Servers, n: int) -> tuple[float, float, list[int]]:
    """SIGKILL server 0; seconds until the others have claimed ``n`` sagas from it, until an
    actor runs for each, and each survivor's claims."""
    survivors = range(1, len(servers.clients))
    killed_at = time.perf_counter()
    servers.processes[0].process.kill()

    async def claims() -> list[int]:
        return [
            int(await servers.metric(i, "saga_claims_total", cause="failover")) for i in survivors
        ]

    async def all_claimed() -> bool:
        return sum(await claims()) >= n

    async def all_resumed() -> bool:
        owned = [await servers.metric(i, "saga_owned", name="this_instance") for i in survivors]
        return sum(owned) >= n

    claimed = await wait_until(all_claimed, "claiming the sagas")
    resumed = await wait_until(all_resumed, "resuming the sagas")
    return claimed - killed_at, resumed - killed_at, await claims()


async def run_failover(
    workload: Workload,
    target: StoreTarget,
    settings: Settings,
    *,
    n: int,
    concurrency: int,
    warmup: int,
    keep: bool,
    progress: Progress,
    note: Callable[[str], None],
    instances: int,
) -> FailoverResult:
    """SIGKILL the owner of ``n`` parked sagas; how long the others take to claim and resume
    them (``warmup`` is not used)."""
    _postgres(target, "failover")
    if instances < 2:
        raise BenchError("failover needs at least 2 instances")
    async with (
        fresh_store(target, keep=keep, note=note) as store,
        running_servers(store, settings, instances, note=note) as servers,
    ):
        note(f"{workload.name}: {instances} servers ready; parking {n} sagas")
        ids, errors = await park(servers, n, concurrency=concurrency)
        note(f"{workload.name}: killing the owner of {len(ids)} sagas")
        claimed, resumed, by_survivor = await kill_and_time(servers, len(ids))
    return FailoverResult(
        workload=workload.name,
        store=store.kind,
        instances=instances,
        n=len(ids),
        claimed_s=claimed,
        resumed_s=resumed,
        claims_by_survivor=by_survivor,
        heartbeat_s=settings.instance_heartbeat_seconds,
        expiry_s=settings.instance_expiry_seconds,
        scan_s=settings.failover_scan_seconds,
        errors=errors,
    )
