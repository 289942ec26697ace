"""The ``http`` workload: the real server (a child process) under a load generator on loopback.

The server runs over the workload's fresh store (see :mod:`.http_server`). In this process,
the load generator (:mod:`.http_load`) keeps C connections open and sends, one request at a
time per connection:

1. ``GET /health/live`` (an ask round trip to the coordinator): W warm-up requests, then N;
2. ``POST /sagas/start`` of a ``bench.saga-4`` saga with the API key: W warm-up, then N. Each
   answer comes once the start is durable; the saga's steps run on in the server.

Figures per phase: requests/s (N / seconds from the first request to the last answer), p50/p99
of each request (write to last byte read), errors (no answer or not 2xx: ``503`` when
``MAX_ACTIVE_SAGAS`` sagas are active is one), the server's CPU per request (from
``/proc/<pid>/stat``) and this process's. ``sagas_per_s`` and ``requests_per_s`` are the POST
phase's; ``post_to_get`` = POST requests/s / GET requests/s.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
import trio

from saga_orchestrator.config import Settings

from .common import Progress, cpu_seconds_of, percentile, rounded
from .http_load import LoadResult, build_request, run_load
from .http_server import ServerProcess, server_process
from .stores import BenchError, StoreTarget, fresh_store
from .workloads import Workload

__all__ = ["HttpResult", "run_http"]

GET_PATH = "/health/live"
POST_PATH = "/sagas/start"


@attrs.frozen(kw_only=True)
class HttpResult:
    """The figures of one ``http`` run."""

    workload: str
    store: str
    n: int
    """Requests per phase."""
    concurrency: int
    """Connections."""
    sagas_per_s: float
    """Sagas started per second: the POST phase's requests/s."""
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    get_requests_per_s: float
    get_p50_ms: float
    get_p99_ms: float
    post_to_get: float
    """POST requests/s / GET requests/s."""
    get_errors: int
    post_errors: int
    errors: int
    get_statuses: dict[str, int]
    post_statuses: dict[str, int]
    server_cpu_ms_per_get: float | None
    server_cpu_ms_per_post: float | None
    client_cpu_ms_per_get: float
    client_cpu_ms_per_post: float
    load_generator: str
    warmup: int
    elapsed_s: float

    def to_json(self) -> dict[str, Any]:
        return rounded(self)

    def line(self) -> str:
        def cpu(value: float | None) -> str:
            return "?" if value is None else f"{value:.2f}"

        return (
            f"{self.workload:<12} {self.store:<10} n={self.n:<6} c={self.concurrency:<4} "
            f"POST {POST_PATH} {self.requests_per_s:7,.0f} req/s  p50 {self.p50_ms:7.2f} ms  "
            f"p99 {self.p99_ms:7.2f} ms | GET {GET_PATH} {self.get_requests_per_s:7,.0f} "
            f"req/s  p50 {self.get_p50_ms:7.2f} ms  p99 {self.get_p99_ms:7.2f} ms | "
            f"POST/GET {100 * self.post_to_get:3.0f} %  server cpu "
            f"{cpu(self.server_cpu_ms_per_post)}/{cpu(self.server_cpu_ms_per_get)} ms per "
            f"POST/GET"
            + (
                f"  ERRORS {self.errors} (GET {self.get_statuses}, POST {self.post_statuses})"
                if self.errors
                else ""
            )
        )


@attrs.frozen
class _Phase:
    load: LoadResult
    server_cpu_s: float | None


async def _phase(
    server: ServerProcess,
    request: bytes,
    *,
    n: int,
    warmup: int,
    concurrency: int,
    progress: Progress,
    label: str,
) -> _Phase:
    host, port = server.host, server.port
    try:
        if warmup:
            await run_load(host, port, request, n=warmup, concurrency=concurrency)
        before = cpu_seconds_of(server.pid)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(progress.report, label, n)
            load = await run_load(
                host, port, request, n=n, concurrency=concurrency, progress=progress
            )
            nursery.cancel_scope.cancel()
        after = cpu_seconds_of(server.pid)
    except OSError as exc:
        raise BenchError(f"{label}: cannot reach the server: {exc}") from exc
    cpu = after - before if before is not None and after is not None else None
    return _Phase(load=load, server_cpu_s=cpu)


def _per_request_ms(seconds: float | None, n: int) -> float | None:
    return None if seconds is None else seconds * 1000 / n


def _statuses(load: LoadResult) -> dict[str, int]:
    counts = {str(status): count for status, count in sorted(load.statuses.items())}
    if load.failures:
        counts["no answer"] = load.failures
    return counts


async def run_http(
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
) -> HttpResult:
    """Run the ``http`` workload: a server over a fresh store of ``target``, loaded from here."""
    progress = progress or Progress(None)
    async with (
        fresh_store(target, keep=keep, note=note) as store,
        server_process(store, settings, note=note) as server,
    ):
        host, port = server.host, server.port
        get = build_request("GET", GET_PATH, host, port)
        body = json.dumps({"saga_type": workload.saga_type, "data": {"index": 0}}).encode()
        post = build_request(
            "POST",
            POST_PATH,
            host,
            port,
            headers=[("X-API-Key", server.api_key), ("Content-Type", "application/json")],
            body=body,
        )
        options = {"n": n, "warmup": warmup, "concurrency": concurrency, "progress": progress}
        gets = await _phase(server, get, label=f"{workload.name} GET {GET_PATH}", **options)
        posts = await _phase(server, post, label=f"{workload.name} POST {POST_PATH}", **options)
    g, p = gets.load, posts.load
    if g.errors or p.errors:
        note(
            f"{workload.name}: requests without a 2xx answer: GET {_statuses(g)}, "
            f"POST {_statuses(p)}"
        )
    return HttpResult(
        workload=workload.name,
        store=target.kind,
        n=n,
        concurrency=concurrency,
        sagas_per_s=p.requests_per_s,
        requests_per_s=p.requests_per_s,
        p50_ms=percentile(p.latencies, 50) * 1000,
        p99_ms=percentile(p.latencies, 99) * 1000,
        mean_ms=sum(p.latencies) / len(p.latencies) * 1000 if p.latencies else 0.0,
        max_ms=p.latencies[-1] * 1000 if p.latencies else 0.0,
        get_requests_per_s=g.requests_per_s,
        get_p50_ms=percentile(g.latencies, 50) * 1000,
        get_p99_ms=percentile(g.latencies, 99) * 1000,
        post_to_get=p.requests_per_s / g.requests_per_s if g.requests_per_s else 0.0,
        get_errors=g.errors,
        post_errors=p.errors,
        errors=g.errors + p.errors,
        get_statuses=_statuses(g),
        post_statuses=_statuses(p),
        server_cpu_ms_per_get=_per_request_ms(gets.server_cpu_s, n),
        server_cpu_ms_per_post=_per_request_ms(posts.server_cpu_s, n),
        client_cpu_ms_per_get=g.client_cpu_s * 1000 / n,
        client_cpu_ms_per_post=p.client_cpu_s * 1000 / n,
        load_generator="python",
        warmup=warmup,
        elapsed_s=g.elapsed_s + p.elapsed_s,
    )
