"""The ``onboarding`` and ``events`` workloads: ``user_onboarding`` as users run it, through the
real server, against the ``devservices`` stand-in, each in a process of its own.

* ``onboarding``: each saga is started with ``POST /sagas/start`` (answered once the start is
  durable); the saga's four steps then call the stand-in over HTTP.
* ``events``: each saga is triggered by a ``user.registered`` event sent with ``POST
  /events/publish``: stored with its outbox row, relayed to Redis Streams by the relay, read by
  the router, which starts the saga. Needs Redis (``--redis-url``, else ``REDIS_URL``); the
  server gets streams and a consumer group of its own, deleted afterwards.

C starters each start a saga, wait for it to end, then start the next. The end is read from the
store by :class:`~.ends.EndWatch` in this process (so PostgreSQL or SQLite: the memory store
lives in the server), not asked of the server. Figures: sagas/s (N / time from the first start
to the last end), start-to-end latency (from just before the request to the ``updated_at`` the
ending transition wrote), the server's CPU per saga and the stand-in's (``/proc``).
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from saga_orchestrator.config import Settings
from saga_orchestrator.coordinator.router import trigger_key
from saga_orchestrator.devservices._app import SERVICE_PATHS

from .common import Progress, cpu_seconds_of, latency_ms, rounded
from .ends import EndWatch
from .http_load import Connection, ProtocolError, build_request, connect
from .http_server import HOST, ServerProcess, child_process, free_port, server_process
from .stores import MEMORY, BenchError, FreshStore, StoreTarget, fresh_store, opened
from .workloads import Workload

__all__ = ["ApiResult", "run_api"]

SAGA_END_TIMEOUT = 120.0
"""Seconds one saga may take from its request to its end before the run is abandoned."""
RETRY_PAUSE = 0.01
"""Seconds before a request answered 503 (overloaded, not ready) is sent again."""


@attrs.frozen(kw_only=True)
class ApiResult:
    """The figures of one ``onboarding`` or ``events`` run."""

    workload: str
    store: str
    n: int
    concurrency: int
    sagas_per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    server_cpu_ms_per_saga: float | None
    services_cpu_ms_per_saga: float | None
    client_cpu_ms_per_saga: float
    errors: int
    statuses: dict[str, int]
    refused: int
    """Requests answered 503 and sent again (``MAX_ACTIVE_SAGAS`` reached, not ready)."""
    warmup: int
    elapsed_s: float

    def to_json(self) -> dict[str, Any]:
        return rounded(self)

    def line(self) -> str:
        def cpu(value: float | None) -> str:
            return "?" if value is None else f"{value:.2f}"

        return (
            f"{self.workload:<12} {self.store:<10} n={self.n:<6} c={self.concurrency:<4} "
            f"{self.sagas_per_s:9,.0f} sagas/s  p50 {self.p50_ms:7.2f} ms  "
            f"p99 {self.p99_ms:7.2f} ms  server cpu {cpu(self.server_cpu_ms_per_saga)} ms/saga "
            f"(devservices {cpu(self.services_cpu_ms_per_saga)})"
            + (f"  ({self.refused} answered 503, sent again)" if self.refused else "")
            + (f"  ERRORS {self.errors} {self.statuses}" if self.errors else "")
        )


def _user(index: int, run: str) -> dict[str, str]:
    user_id = f"bench-{run}-{index}"
    return {"user_id": user_id, "email": f"{user_id}@example.com", "name": f"User {index}"}


@attrs.define
class _Phase:
    latencies: list[float] = attrs.field(factory=list)
    statuses: dict[str, int] = attrs.field(factory=dict)
    last_end: float = 0.0


class _Link:
    """One starter's keep-alive connection to the server. The server closes a connection left
    idle for ``HTTP_KEEP_ALIVE_SECONDS`` (a starter waits for its saga's end in between): a
    request that finds it closed is sent again on a new one."""

    def __init__(self, server: ServerProcess) -> None:
        self._server = server
        self._connection: Connection | None = None

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """(status, body) of ``request``'s answer."""
        for attempt in (1, 2):
            reused = self._connection is not None
            if self._connection is None:
                self._connection = await connect(self._server.host, self._server.port)
            try:
                status, keep = await self._connection.exchange(request)
            except (OSError, trio.BrokenResourceError, ProtocolError):
                await self.aclose()
                if reused and attempt == 1:
                    continue
                raise
            body = self._connection.body
            if not keep:
                await self.aclose()
            return status, body
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.aclose()


class _Starter:
    """Starts one saga over a keep-alive connection and waits for its end."""

    def __init__(self, workload: Workload, server: ServerProcess, watch: EndWatch) -> None:
        self._events = workload.name == "events"
        self._server = server
        self._watch = watch
        self._run = secrets.token_hex(4)
        self._headers = [("X-API-Key", server.api_key), ("Content-Type", "application/json")]
        self.refused = 0
        """Requests answered 503 (and sent again)."""

    def _request(self, path: str, body: dict[str, Any]) -> bytes:
        return build_request(
            "POST",
            path,
            self._server.host,
            self._server.port,
            headers=self._headers,
            body=json.dumps(body).encode(),
        )

    async def one(self, link: _Link, index: int) -> tuple[str, float]:
        """(status the saga ended in, its end time); raises ``BenchError`` on a refusal."""
        user = _user(index, self._run)
        if self._events:
            event_id = f"bench-{self._run}-{index}"
            request = self._request(
                "/events/publish",
                {
                    "event_type": "user.registered",
                    "stream_id": f"user-{user['user_id']}",
                    "data": user,
                    "event_id": event_id,
                },
            )
        else:
            request = self._request("/sagas/start", {"saga_type": "user_onboarding", "data": user})
        status, body = await link.exchange(request)
        while status == 503:  # overloaded, not ready: nothing was started; sent again
            self.refused += 1
            await trio.sleep(RETRY_PAUSE)
            status, body = await link.exchange(request)
        if not 200 <= status < 300:
            raise BenchError(f"the server answered {status}: {body[:300]!r}")
        with trio.move_on_after(SAGA_END_TIMEOUT):
            if self._events:
                key = trigger_key(event_id, "user_onboarding")
                _, ended, at = await self._watch.wait_for_key(key)
            else:
                saga_id = json.loads(body)["saga_id"]
                _, ended, at = await self._watch.wait_for_id(saga_id)
            return ended, at
        raise BenchError(f"saga {index} did not end within {SAGA_END_TIMEOUT:g} s")


async def _drive(
    starter: _Starter,
    server: ServerProcess,
    *,
    n: int,
    concurrency: int,
    first: int,
    progress: Progress,
    label: str,
) -> _Phase:
    phase = _Phase()
    indexes = iter(range(first, first + n))

    async def worker() -> None:
        link = _Link(server)
        try:
            for index in indexes:
                started = time.time()
                status, at = await starter.one(link, index)
                phase.latencies.append(at - started)
                phase.statuses[status] = phase.statuses.get(status, 0) + 1
                phase.last_end = max(phase.last_end, at)
                progress.done += 1
        finally:
            await link.aclose()

    progress.done = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(progress.report, label, n)
        async with trio.open_nursery() as workers:
            for _ in range(min(concurrency, n)):
                workers.start_soon(worker)
        nursery.cancel_scope.cancel()
    return phase


@asynccontextmanager
async def _devservices(note: Callable[[str], None]) -> AsyncIterator[ServerProcess]:
    import os

    port = free_port()
    command = [sys.executable, "-m", "saga_orchestrator", "devservices", "--port", str(port)]
    async with child_process(command, os.environ, port, note=note) as process:
        yield process


@asynccontextmanager
async def _redis_streams(settings: Settings) -> AsyncIterator[dict[str, str]]:
    """The settings of a Redis event bus with streams of this run's own, deleted after it."""
    import redis

    prefix = f"bench-{secrets.token_hex(4)}"
    names = {
        "EVENT_STREAM": f"{prefix}.events",
        "LIFECYCLE_STREAM": f"{prefix}.lifecycle",
        "CONSUMER_GROUP": prefix,
    }
    client = redis.Redis.from_url(settings.redis_url, password=settings.redis_password)
    try:
        await trio.to_thread.run_sync(client.ping)
    except redis.RedisError as exc:
        raise BenchError(f"events needs Redis: cannot reach REDIS_URL ({exc})") from exc
    try:
        yield {"USE_REDIS_EVENT_BUS": "true", "REDIS_URL": settings.redis_url, **names}
    finally:
        streams = [names["EVENT_STREAM"], names["LIFECYCLE_STREAM"]]
        streams += [f"{name}:dead" for name in streams]
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(lambda: client.delete(*streams))
            client.close()


@asynccontextmanager
async def _bus_settings(workload: Workload, settings: Settings) -> AsyncIterator[dict[str, str]]:
    if workload.name != "events":
        yield {}
        return
    async with _redis_streams(settings) as environ:
        yield environ


async def run_api(
    workload: Workload,
    target: StoreTarget,
    settings: Settings,
    *,
    n: int,
    concurrency: int,
    warmup: int,
    keep: bool = False,
    progress: Progress | None = None,
    note: Callable[[str], None] = print,
) -> ApiResult:
    """Run ``onboarding`` or ``events``: devservices and the server in processes of their own,
    over a fresh store of ``target`` (PostgreSQL or SQLite)."""
    if target.kind == MEMORY:
        raise BenchError(
            f"{workload.name} reads the sagas' ends from the store: use PostgreSQL or SQLite"
        )
    progress = progress or Progress(None)
    async with (
        fresh_store(target, keep=keep, note=note) as store,
        _bus_settings(workload, settings) as bus,
        _devservices(note) as services,
    ):
        base = f"http://{HOST}:{services.port}"
        environ = {name: base + path for name, path in SERVICE_PATHS.items()}
        environ.update(bus)
        async with server_process(store, settings, note=note, environ=environ) as server:
            return await _measure(
                workload, store, server, services, n, concurrency, warmup, progress
            )


async def _measure(
    workload: Workload,
    store: FreshStore,
    server: ServerProcess,
    services: ServerProcess,
    n: int,
    concurrency: int,
    warmup: int,
    progress: Progress,
) -> ApiResult:
    async with opened(store.backend()) as backend, trio.open_nursery() as nursery:
        watch = EndWatch(backend)
        nursery.start_soon(watch.run)
        starter = _Starter(workload, server, watch)
        options = {"concurrency": concurrency, "progress": progress}
        if warmup:
            await _drive(starter, server, n=warmup, first=n, label=f"{workload.name} warm-up",
                         **options)  # fmt: skip
        cpu = cpu_seconds_of(server.pid), cpu_seconds_of(services.pid), time.process_time()
        starter.refused = 0
        began = time.time()
        phase = await _drive(starter, server, n=n, first=0, label=workload.name, **options)
        after = cpu_seconds_of(server.pid), cpu_seconds_of(services.pid), time.process_time()
        nursery.cancel_scope.cancel()
    elapsed = phase.last_end - began

    def per_saga(i: int) -> float | None:
        low, high = cpu[i], after[i]
        return None if low is None or high is None else (high - low) * 1000 / n

    errors = sum(c for s, c in phase.statuses.items() if s != workload.expected_status)
    return ApiResult(
        workload=workload.name,
        store=store.kind,
        n=n,
        concurrency=concurrency,
        sagas_per_s=n / elapsed if elapsed > 0 else 0.0,
        **latency_ms(phase.latencies),
        server_cpu_ms_per_saga=per_saga(0),
        services_cpu_ms_per_saga=per_saga(1),
        client_cpu_ms_per_saga=(after[2] - cpu[2]) * 1000 / n,
        errors=errors,
        statuses=phase.statuses,
        refused=starter.refused,
        warmup=warmup,
        elapsed_s=elapsed,
    )
