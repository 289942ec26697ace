"""Parts of the new workloads on their own: the load generator against a scripted server,
the counter that gives up on a stuck run, and what the recovery workload leaves behind."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from saga_orchestrator.bench.common import Counter, Progress
from saga_orchestrator.bench.engine import engine_options
from saga_orchestrator.bench.http_load import build_request, fetch, run_load
from saga_orchestrator.bench.recovery import _check_left_in_step_2, _populate
from saga_orchestrator.bench.stores import BenchError, StoreTarget, fresh_store
from saga_orchestrator.config import Settings
from saga_orchestrator.coordinator.projection import stream_id

ANSWERS = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n",
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy",
)


async def _scripted(answers: tuple[bytes, ...], stream: trio.SocketStream) -> None:
    """Answer each request on a connection with the next of ``answers``; close after the
    last (or at once when there are none)."""
    buffer = b""
    for answer in answers:
        while b"\r\n\r\n" not in buffer:
            data = await stream.receive_some(4096)
            if not data:
                return
            buffer += data
        buffer = buffer.split(b"\r\n\r\n", 1)[1]
        await stream.send_all(answer)
    await stream.aclose()


async def _serve(nursery: trio.Nursery, answers: tuple[bytes, ...]) -> int:
    listeners = await nursery.start(
        partial(trio.serve_tcp, partial(_scripted, answers), 0, host="127.0.0.1")
    )
    return int(listeners[0].socket.getsockname()[1])


async def test_the_load_generator_reads_every_kind_of_answer_and_counts_errors() -> None:
    async with trio.open_nursery() as nursery:
        port = await _serve(nursery, ANSWERS)
        request = build_request("GET", "/x", "127.0.0.1", port)
        progress = Progress(None)
        result = await run_load("127.0.0.1", port, request, n=9, concurrency=1, progress=progress)
        nursery.cancel_scope.cancel()
    # each connection: 200 (Content-Length), 200 (chunked), then 503 with Connection: close
    assert {200: 6, 503: 3} == result.statuses
    assert (9, 0, 3, 9, 9) == (
        result.requests,
        result.failures,
        result.errors,
        len(result.latencies),
        progress.done,
    )
    assert result.latencies == sorted(result.latencies)


async def test_a_request_without_an_answer_is_a_failure() -> None:
    async with trio.open_nursery() as nursery:
        port = await _serve(nursery, ())
        request = build_request("GET", "/x", "127.0.0.1", port)
        result = await run_load("127.0.0.1", port, request, n=3, concurrency=2)
        with pytest.raises(ConnectionResetError):
            await fetch("127.0.0.1", port, request)
        nursery.cancel_scope.cancel()
    assert (3, {}, 3) == (result.failures, result.statuses, result.errors)


def test_a_request_with_a_body_says_its_length() -> None:
    request = build_request(
        "POST", "/sagas/start", "h", 1, headers=[("X-API-Key", "k")], body=b'{"a": 1}'
    )
    assert request == (
        b"POST /sagas/start HTTP/1.1\r\nHost: h:1\r\nX-API-Key: k\r\nContent-Length: 8\r\n\r\n"
        b'{"a": 1}'
    )


async def test_a_counter_gives_up_when_nothing_moves(autojump_clock: Any) -> None:
    counter = Counter(3)
    counter.add()
    with pytest.raises(BenchError, match="stuck at 1/3"):
        await counter.wait(stall=10, what="sagas")
    counter.add(2)
    assert counter.reached_at == await counter.wait(stall=10, what="sagas")


async def test_recovery_leaves_each_saga_right_after_starting_step_2(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    target = StoreTarget(kind="memory")
    async with fresh_store(target) as store:
        options = engine_options(settings)
        await _populate(
            store, settings, options, n=5, concurrency=2, progress=Progress(None), label="x"
        )
        backend = store.backend()
        records = await backend.active_sagas()
        histories = await backend.read_streams([stream_id(r.saga_id) for r in records])
        assert 5 == len(histories)
        for history in histories.values():
            assert ["SagaStarted", "StepStarted", "StepCompleted", "StepStarted"] == [
                e.event_type for e in history
            ]
            assert 1 == history[-1].data["step"]
        await _check_left_in_step_2(backend, 5)
        with pytest.raises(BenchError, match="5 active sagas left behind, not 6"):
            await _check_left_in_step_2(backend, 6)
