"""The downstream services' transport (plain HTTP/1.1 on trio sockets), against services written
by hand here: connections kept alive and reused, one the service closed while idle replaced
without failing the call, ``Connection: close`` honoured, each body framing read, and failures
that tell whether the request may have been applied."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import httpx
import pytest
import trio

from saga_orchestrator.bench.stub_service import StubService, serve_stub
from saga_orchestrator.coordinator.downstream import (
    Call,
    DownstreamConfig,
    ServiceUnavailable,
    open_downstream_clients,
)
from saga_orchestrator.coordinator.downstream._transport import LeanTransport

CALL = Call("saga-1:step", "corr-1")
USER = b'{"user_id":"u","status":"active"}'

Service = Callable[[trio.SocketStream], Awaitable[None]]


async def _request_head(stream: trio.SocketStream, buffer: bytearray) -> bytes | None:
    """The next request's head (its body, if any, is left in ``buffer``); None at EOF."""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        data = await stream.receive_some(65536)
        if not data:
            return None
        buffer += data
    head = bytes(buffer[:end])
    del buffer[: end + 4]
    return head


def _answer(body: bytes, *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 200 OK", b"Content-Length: " + str(len(body)).encode(), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


async def _serve(service: Service, *, task_status: trio.TaskStatus[int]) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(service, listeners)


async def _get_user(port: int) -> dict:
    config = DownstreamConfig.all_at(f"http://127.0.0.1:{port}")
    async with open_downstream_clients(config) as clients:
        return await clients.auth.get_user("u", CALL)


async def test_one_saga_after_another_reuses_one_connection():
    stub = StubService()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(serve_stub, stub))
        config = DownstreamConfig.all_at(f"http://127.0.0.1:{port}")
        async with open_downstream_clients(config) as clients:
            for index in range(10):
                await clients.auth.get_user(f"u{index}", CALL)
        nursery.cancel_scope.cancel()
    assert (10, 1) == (stub.requests, stub.connections)  # kept alive from one call to the next


async def test_a_connection_the_service_closed_while_idle_is_replaced():
    connections = 0

    async def one_answer_then_close(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        buffer = bytearray()
        async with stream:
            if await _request_head(stream, buffer) is not None:
                await stream.send_all(_answer(USER))  # says nothing of closing, then closes

    async with trio.open_nursery() as nursery:
        port = await nursery.start(_serve, one_answer_then_close)
        config = DownstreamConfig.all_at(f"http://127.0.0.1:{port}")
        async with open_downstream_clients(config) as clients:
            for _ in range(3):
                assert "u" == (await clients.auth.get_user("u", CALL))["user_id"]
                await trio.testing.wait_all_tasks_blocked(0.01)  # the close has arrived
        nursery.cancel_scope.cancel()
    assert 3 == connections


@pytest.mark.parametrize(
    "answer",
    [
        _answer(USER, b"Connection: close"),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\n"
        + USER[:5]
        + b"\r\n"
        + hex(len(USER) - 5)[2:].encode()
        + b"\r\n"
        + USER[5:]
        + b"\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\n" + USER,  # the body ends when the connection does
    ],
    ids=["connection-close", "chunked", "read-to-close"],
)
async def test_each_body_framing_is_read(answer: bytes):
    connections = 0

    async def serve(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        buffer = bytearray()
        async with stream:
            while await _request_head(stream, buffer) is not None:
                await stream.send_all(answer)
                if b"chunked" not in answer:
                    return

    async with trio.open_nursery() as nursery:
        port = await nursery.start(_serve, serve)
        config = DownstreamConfig.all_at(f"http://127.0.0.1:{port}")
        async with open_downstream_clients(config) as clients:
            for _ in range(2):
                assert {"user_id": "u", "status": "active"} == await clients.auth.get_user(
                    "u", CALL
                )
        nursery.cancel_scope.cancel()
    assert (1 if b"chunked" in answer else 2) == connections


async def test_a_refused_connection_is_retried_and_not_in_doubt():
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ServiceUnavailable) as caught:
        await _get_user(port)
    assert caught.value.effect_unknown is False


async def test_an_answer_lost_after_the_request_was_sent_is_in_doubt():
    async def hang_up(stream: trio.SocketStream) -> None:
        async with stream:
            await _request_head(stream, bytearray())  # read it, answer nothing

    async with trio.open_nursery() as nursery:
        port = await nursery.start(_serve, hang_up)
        with pytest.raises(ServiceUnavailable) as caught:
            await _get_user(port)
        nursery.cancel_scope.cancel()
    assert caught.value.effect_unknown is True


async def test_the_request_goes_out_as_sent_and_https_goes_to_the_fallback():
    seen: list[bytes] = []

    async def record(stream: trio.SocketStream) -> None:
        buffer = bytearray()
        async with stream:
            head = await _request_head(stream, buffer)
            assert head is not None
            while len(buffer) < 2:
                buffer += await stream.receive_some(65536)
            seen.append(head + b"|" + bytes(buffer))
            await stream.send_all(_answer(b'{"ok": true}'))

    fallback: list[httpx.Request] = []

    def mock(request: httpx.Request) -> httpx.Response:
        fallback.append(request)
        return httpx.Response(200, json={"secure": True})

    transport = LeanTransport(lambda: httpx.MockTransport(mock))
    async with trio.open_nursery() as nursery, httpx.AsyncClient(transport=transport) as http:
        port = await nursery.start(_serve, record)
        reply = await http.post(f"http://127.0.0.1:{port}/a%20b?x=1", json={})
        assert {"ok": True} == reply.json()
        assert {"secure": True} == (await http.get("https://example.test/")).json()
        nursery.cancel_scope.cancel()
    [raw] = seen
    head, _, body = raw.partition(b"|")
    lines = head.split(b"\r\n")
    assert b"POST /a%20b?x=1 HTTP/1.1" == lines[0]
    assert f"host: 127.0.0.1:{port}".encode() in [line.lower() for line in lines]
    assert b"content-length: 2" in [line.lower() for line in lines]
    assert b"{}" == body
    assert ["https://example.test/"] == [str(r.url) for r in fallback]


@pytest.mark.parametrize("status_line", [b"HTTP/1.1 503 ", b"HTTP/1.1 503 Try Later"])
async def test_the_reason_phrase_is_the_one_the_service_sent(status_line: bytes):
    # errors quote it ("answered 503 Try Later"); a service that sends none gets none added
    async def serve(stream: trio.SocketStream) -> None:
        async with stream:
            await _request_head(stream, bytearray())
            await stream.send_all(status_line + b"\r\nContent-Length: 0\r\n\r\n")

    async with trio.open_nursery() as nursery:
        port = await nursery.start(_serve, serve)
        transport = LeanTransport()
        response = await transport.handle_async_request(
            httpx.Request("GET", f"http://127.0.0.1:{port}/x")
        )
        await transport.aclose()
        nursery.cancel_scope.cancel()
    assert (503, status_line[13:].decode()) == (response.status_code, response.reason_phrase)
