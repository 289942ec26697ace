"""Connections to the real server (Hypercorn over real sockets): they close when they should
(``Connection: close``, idle after the keep-alive timeout, a slow-header client), they stay
usable when they should (after a 401, a 405, a refused body), and a head that is too large or
framed twice is refused."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import requests
import trio

from tests.support.live import LiveServer, live_server_thread
from tests.support.raw_http import Answer, Reader, connect, request

KEEP_ALIVE = 1.0
"""``HTTP_KEEP_ALIVE_SECONDS`` of the server here."""
MAX_HEADER = 4096
"""``HTTP_MAX_HEADER_BYTES`` of the server here."""
JSON = {"Content-Type": "application/json"}
START = json.dumps({"saga_type": "test_two_steps", "data": {"name": "c"}}).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server_thread(
        tmp_path_factory.mktemp("connections"),
        http_keep_alive_seconds=KEEP_ALIVE,
        http_max_header_bytes=MAX_HEADER,
    ) as live:
        yield live


@pytest.fixture
async def reader(server: LiveServer) -> AsyncIterator[Reader]:
    """A raw connection to ``server``."""
    stream = await connect(server.url)
    async with stream:
        yield Reader(stream)


def keyed(server: LiveServer, **headers: str) -> dict[str, str]:
    return {**server.key_headers, **headers}


def assert_error(answer: Answer, status: int, code: str) -> None:
    assert status == answer.status, answer
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["x-correlation-id"]
    error = answer.json()["error"]
    assert code == error["code"]
    assert error["message"] and isinstance(error["details"], list)


# --- Connection: close -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "key", "body", "status"),
    [
        ("GET", "/health/live", False, b"", 200),
        ("GET", "/sagas/", False, b"", 401),
        ("POST", "/sagas/start", False, START, 401),
        ("POST", "/sagas/start", True, START, 202),
    ],
)
async def test_connection_close_closes_the_socket_after_the_answer(
    server: LiveServer, reader: Reader, method: str, path: str, key: bool, body: bytes, status: int
) -> None:
    headers = {**(server.key_headers if key else {}), **JSON, "Connection": "close"}
    await reader.stream.send_all(request(method, path, headers=headers, body=body))
    answer = await reader.answer()
    assert status == answer.status, answer
    assert answer.closes
    assert b"" == await reader.closed()  # a client reading until EOF gets it


# --- keep-alive --------------------------------------------------------------------------------


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(
    server: LiveServer, reader: Reader
) -> None:
    for _ in range(3):  # still usable between requests
        await reader.stream.send_all(request("GET", "/health/live"))
        answer = await reader.answer()
        assert (200, False) == (answer.status, answer.closes)
    assert b"" == await reader.closed(within=KEEP_ALIVE + 10)


async def test_a_connection_that_never_sends_a_request_is_closed(reader: Reader) -> None:
    assert b"" == await reader.closed(within=KEEP_ALIVE + 10)


@pytest.mark.parametrize("after_a_request", [False, True])
async def test_a_slow_header_client_is_cut_off(reader: Reader, after_a_request: bool) -> None:
    """A client that trickles its request head never gets to send it all: the keep-alive
    timer runs until a whole head has arrived, on a new connection or after an answer."""
    if after_a_request:
        await reader.stream.send_all(request("GET", "/health/live"))
        assert 200 == (await reader.answer()).status
    await reader.stream.send_all(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")

    async def trickle() -> None:
        try:
            while True:
                await reader.stream.send_all(b"x")
                await trio.sleep(0.1)
        except trio.BrokenResourceError:
            pass  # cut off while sending

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trickle)
        sent_back = await reader.closed(within=KEEP_ALIVE + 10)
        nursery.cancel_scope.cancel()
    assert b"" == sent_back  # cut off without an answer


async def test_many_requests_on_one_connection_keep_it_open(
    server: LiveServer, reader: Reader
) -> None:
    """An answer to a request whose body has arrived keeps the connection."""
    for i in range(30):
        if i % 2:
            message = request("GET", "/health/live")
        else:  # 202, and 401 without a key: both read the body or not, the body is there
            key = server.key_headers if i % 4 else {}
            message = request("POST", "/sagas/start", headers={**key, **JSON}, body=START)
        await reader.stream.send_all(message)
        answer = await reader.answer()
        assert answer.status in (200, 202, 401), answer
        assert not answer.closes, (i, answer)


# --- a client that reuses its connection after an error -------------------------------------


async def test_the_next_request_after_a_401_and_a_405_is_answered_on_the_same_connection(
    reader: Reader,
) -> None:
    await reader.stream.send_all(request("POST", "/sagas/start", headers=JSON, body=START))
    assert 401 == (await reader.answer()).status
    await reader.stream.send_all(request("DELETE", "/health/live"))
    assert 405 == (await reader.answer()).status
    await reader.stream.send_all(request("GET", "/health/live"))
    assert 200 == (await reader.answer()).status


async def test_an_answer_before_the_body_arrived_closes_the_connection_and_says_so(
    server: LiveServer, reader: Reader
) -> None:
    """A 401 for a request whose body is still coming: the connection cannot carry another
    request, and the answer says so (a reusing client would otherwise hang or fail)."""
    headers = {**JSON, "Content-Length": str(len(START))}
    await reader.stream.send_all(request("POST", "/sagas/start", headers=headers))
    answer = await reader.answer()
    assert 401 == answer.status
    assert answer.closes
    assert b"" == await reader.closed()


async def test_a_413_closes_the_connection_and_says_so(server: LiveServer, reader: Reader) -> None:
    headers = {**keyed(server, **JSON), "Content-Length": str(4 << 20)}
    await reader.stream.send_all(request("POST", "/sagas/start", headers=headers))
    await reader.stream.send_all(b"x" * 65536)  # the rest would follow
    answer = await reader.answer()
    assert_error(answer, 413, "request_entity_too_large")
    assert answer.closes
    await reader.closed()


def _slow_body() -> Iterator[bytes]:
    yield START[:5]
    time.sleep(0.5)  # longer than the server waits for a body it will not read
    yield START[5:]


def test_a_requests_session_gets_every_answer_after_401_405_413_and_an_unread_body(
    server: LiveServer,
) -> None:
    """``requests`` reuses its connections; once, it hung on the request after a 401 whose
    body the server had not read."""
    url = server.url
    with requests.Session() as session:
        sequence = [
            session.post(f"{url}/sagas/start", json={"a": 1}, timeout=5).status_code,
            session.get(f"{url}/health/live", timeout=5).status_code,
            session.delete(f"{url}/health/live", timeout=5).status_code,
            session.get(f"{url}/health/live", timeout=5).status_code,
            session.post(
                f"{url}/sagas/start",
                data=b"x" * (2 << 20),
                headers=keyed(server, **JSON),
                timeout=5,
            ).status_code,
            session.get(f"{url}/health/live", timeout=5).status_code,
            session.post(
                f"{url}/sagas/start", data=_slow_body(), headers=JSON, timeout=5
            ).status_code,
            session.get(f"{url}/health/live", timeout=5).status_code,
        ]
    assert [401, 200, 405, 200, 413, 200, 401, 200] == sequence


async def test_an_httpx_client_gets_every_answer_after_401_405_and_an_unread_body(
    server: LiveServer,
) -> None:
    async def slow_body() -> AsyncIterator[bytes]:
        yield START[:5]
        await trio.sleep(0.5)
        yield START[5:]

    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
        sequence = [
            (await client.post("/sagas/start", json={"a": 1})).status_code,
            (await client.get("/health/live")).status_code,
            (await client.delete("/health/live")).status_code,
            (await client.get("/health/live")).status_code,
            (await client.post("/sagas/start", content=slow_body(), headers=JSON)).status_code,
            (await client.get("/health/live")).status_code,
        ]
    assert [401, 200, 405, 200, 401, 200] == sequence


# --- the request head ------------------------------------------------------------------------


def _head_of(size: int, path: str = "/health/live") -> bytes:
    """A GET whose head takes exactly ``size`` bytes."""
    bare = request("GET", path, headers={"X-Pad": ""})
    return request("GET", path, headers={"X-Pad": "p" * (size - len(bare))})


async def test_a_head_at_the_limit_is_served(reader: Reader) -> None:
    message = _head_of(MAX_HEADER)
    assert MAX_HEADER == len(message)
    await reader.stream.send_all(message)
    assert 200 == (await reader.answer()).status


@pytest.mark.parametrize("path", ["/health/live", "/sagas/", "/no/such/route"])
async def test_a_head_over_the_limit_is_431_and_closes(reader: Reader, path: str) -> None:
    await reader.stream.send_all(_head_of(MAX_HEADER + 1, path))
    answer = await reader.answer()
    assert_error(answer, 431, "request_header_too_large")
    assert str(MAX_HEADER) in answer.json()["error"]["message"]
    assert answer.closes
    await reader.closed()


async def test_a_huge_head_sent_in_pieces_is_refused_before_it_is_all_there(
    reader: Reader,
) -> None:
    """Hypercorn buffers twice the limit of a head still arriving, then refuses it (431,
    an empty body) and closes."""
    await reader.stream.send_all(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ")
    try:
        for _ in range(4 * MAX_HEADER // 1024):
            await reader.stream.send_all(b"p" * 1024)
            await trio.sleep(0.01)
    except trio.BrokenResourceError:
        pass
    data = await reader.closed()
    assert data.startswith(b"HTTP/1.1 431 "), data[:200]


async def test_content_length_with_transfer_encoding_is_400_and_closes(
    server: LiveServer, reader: Reader
) -> None:
    """Request smuggling: the chunked body ends at once, and a second request follows; a
    proxy believing Content-Length would take it for the body. Neither is served."""
    smuggled = request("GET", "/sagas/", headers=server.key_headers)
    body = b"0\r\n\r\n" + smuggled
    headers = {
        **keyed(server, **JSON),
        "Content-Length": str(len(body)),
        "Transfer-Encoding": "chunked",
    }
    await reader.stream.send_all(request("POST", "/sagas/start", headers=headers, body=body))
    answer = await reader.answer()
    assert_error(answer, 400, "ambiguous_framing")
    assert answer.closes
    assert b"" == await reader.closed()  # the smuggled request got no answer
