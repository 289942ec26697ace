"""Malformed and hostile input on every path of the real server: each request gets a clear 4xx
in the standard error shape (never a 5xx, never a traceback), and the service stays healthy."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from saga_orchestrator.http.validate import MAX_JSON_DEPTH
from tests.support.live import LiveServer, post_in_thread

JSON = {"Content-Type": "application/json"}
SAGA = str(uuid.uuid4())
BODY_ROUTES = [
    "/sagas/start",
    f"/sagas/{SAGA}/cancel",
    "/events/publish",
    "/events/replay",
    "/events/replay/some-stream",
]
INJECTIONS = [
    "'; DROP TABLE sagas; --",
    '" OR 1=1 --',
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "${jndi:ldap://127.0.0.1/a}",
    "{{7*7}}",
    "%00%0d%0a",
    "\u202e\ufeff",
]


@pytest.fixture
async def client(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with live.client() as client:
        yield client
        # Whatever was sent, the service is still alive and ready.
        async with live.client(key=False) as probe:
            assert 200 == (await probe.get("/health/live")).status_code
            assert 200 == (await probe.get("/health/ready")).status_code


def assert_4xx(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert "Traceback" not in response.text
    body = response.json()
    assert {"code", "message", "details"} <= set(body["error"])
    return body["error"]


# --- bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", BODY_ROUTES)
async def test_oversized_bodies_are_413(
    client: httpx.AsyncClient, live: LiveServer, path: str
) -> None:
    body = b'{"data": "' + b"x" * (2 << 20) + b'"}'
    response = await post_in_thread(live, path, body, JSON)
    assert_4xx(response, 413)
    assert "close" == response.headers["Connection"]


@pytest.mark.parametrize("path", BODY_ROUTES)
async def test_deep_json_is_400(client: httpx.AsyncClient, path: str) -> None:
    for depth in (10_000, MAX_JSON_DEPTH + 1):
        body = b"[" * depth + b"]" * depth
        error = assert_4xx(await client.post(path, content=body, headers=JSON), 400)
        assert "nested deeper" in error["message"]
    nested = b'{"a":' * 5_000 + b"1" + b"}" * 5_000
    assert_4xx(await client.post(path, content=nested, headers=JSON), 400)


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe\xfa",  # not UTF-8
        b'{"saga_type": "\xc3\x28"}',  # an invalid UTF-8 sequence inside a string
        b'{"data": {"x": "\\ud800"}}',  # an unpaired surrogate
        b'{"data": {"x": "a\\u0000b"}}',  # a NUL character (no store keeps it)
        b'{"data": {"x": 1e999}}',  # a number out of range
        b'{"data": {"x": NaN}}',
        b'{"data": {"x": ' + b"9" * 5000 + b"}}",  # an integer too long to read
        b'{"a": 1',
        b"",
    ],
)
async def test_bodies_that_cannot_be_read_are_400(
    client: httpx.AsyncClient, path: str, body: bytes
) -> None:
    response = await client.post(path, content=body, headers=JSON)
    if not body and path.endswith(("/cancel", "/replay/some-stream")):
        assert response.status_code != 400  # the body of these is optional
        return
    assert_4xx(response, 400)


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize("body", [[], "text", 1, None, True, {"data": [1]}, {"limit": "10"}])
async def test_wrong_types_are_422(client: httpx.AsyncClient, path: str, body: Any) -> None:
    content = json.dumps(body).encode()
    assert_4xx(await client.post(path, content=content, headers=JSON), 422)


async def test_wrong_types_name_each_field(client: httpx.AsyncClient) -> None:
    error = assert_4xx(
        await client.post(
            "/events/publish",
            json={
                "event_type": 1,
                "stream_id": "has space",
                "data": [],
                "metadata": "m",
                "expected_version": 2**64,
                "event_id": True,
            },
        ),
        422,
    )
    assert {"event_type", "stream_id", "data", "metadata", "expected_version", "event_id"} == {
        detail["field"] for detail in error["details"]
    }


async def test_unknown_saga_types_are_422(client: httpx.AsyncClient) -> None:
    for saga_type in ["nope", "TEST_TWO_STEPS", " test_two_steps", *INJECTIONS]:
        body = {"saga_type": saga_type, "data": {}}
        error = assert_4xx(await client.post("/sagas/start", json=body), 422)
        assert "unknown_saga_type" == error["code"]


@pytest.mark.parametrize("value", INJECTIONS)
async def test_injection_shaped_strings_are_data(client: httpx.AsyncClient, value: str) -> None:
    """Stored and read back as they are, or refused as a field error: never interpreted."""
    start = {"saga_type": "test_two_steps", "data": {"name": value}, "idempotency_key": value}
    response = await client.post("/sagas/start", json=start)
    if response.status_code == 422:  # control characters in the key
        assert ["idempotency_key"] == [d["field"] for d in response.json()["error"]["details"]]
    else:
        assert response.status_code in (200, 202), response.text
        assert value == response.json()["input"]["name"]
    for path, params in [
        ("/sagas/", {"saga_type": value}),
        ("/events/all", {"event_type": value}),
        ("/events/stream/x", {"from_version": value}),
        ("/sagas/", {"cursor": value}),
        ("/sagas/", {value: "1"}),
    ]:
        response = await client.get(path, params=params)
        assert response.status_code in (200, 400), (path, response.text)
        if response.status_code == 200:
            assert [] == response.json()["items"]
    response = await client.get(f"/events/stream/{value}")
    assert response.status_code in (200, 404)
    assert "Traceback" not in response.text


# --- paths and queries ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "saga_id",
    ["not-a-uuid", "1234", "00000000-0000-0000-0000-00000000000g", "%FF%FE", "'; DROP TABLE x"],
)
async def test_invalid_uuids_are_404(client: httpx.AsyncClient, saga_id: str) -> None:
    for method, suffix in [("GET", ""), ("GET", "/steps"), ("GET", "/events"),
                           ("POST", "/cancel"), ("POST", "/retry")]:  # fmt: skip
        response = await client.request(method, f"/sagas/{saga_id}{suffix}")
        assert "saga_not_found" == assert_4xx(response, 404)["code"]


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/sagas/", "limit"),
        (f"/sagas/{SAGA}/events", "limit"),
        (f"/sagas/{SAGA}/events", "from_version"),
        ("/events/stream/x", "limit"),
        ("/events/stream/x", "from_version"),
        ("/events/all", "limit"),
        ("/events/all", "after_position"),
    ],
)
@pytest.mark.parametrize("value", ["99999999999999999999999999", "1e9", "-1", "0x10", "", "\uff11"])
async def test_huge_or_malformed_numbers_in_queries_are_400(
    client: httpx.AsyncClient, path: str, name: str, value: str
) -> None:
    response = await client.get(path, params={name: value})
    error = assert_4xx(response, 400)
    assert [name] == [detail["field"] for detail in error["details"]]


@pytest.mark.parametrize("path", ["/sagas/?status=%FF", "/events/all?event_type=%FF%FE", "/%FF"])
async def test_invalid_utf8_in_queries_and_paths(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code in (200, 400, 404), response.text
    assert "Traceback" not in response.text
    if response.status_code != 200:
        assert_4xx(response, 400, 404)


def raw_request(live: LiveServer, request: bytes) -> bytes:
    """Send bytes as they are (no client would) and read the answer."""
    url = urlsplit(live.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "target",
    [b"/sagas/\xff\xfe", b"/events/stream/\xc3\x28", b"/health/\x00", b"/sagas/?limit=\xff"],
)
async def test_raw_invalid_utf8_in_the_request_line(
    client: httpx.AsyncClient, live: LiveServer, target: bytes
) -> None:
    request = (
        b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nX-API-Key: "
        + (live.api_key or "").encode() + b"\r\nConnection: close\r\n\r\n"
    )  # fmt: skip
    answer = raw_request(live, request)
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:300]
    assert b"Traceback" not in answer


async def test_hostile_headers(client: httpx.AsyncClient) -> None:
    for correlation in [b"x" * 10_000, b"a\tb", b"' OR 1=1", "\u00e9t\u00e9".encode()]:
        response = await client.get("/sagas/", headers={"X-Correlation-ID": correlation})
        assert 200 == response.status_code
        assert correlation != response.headers["X-Correlation-ID"].encode()  # a new one
    for content_type in ["application/json; charset=latin-1", "application/jsonx", "*/*"]:
        response = await client.post(
            "/sagas/start", content=b'{"saga_type": "x"}', headers={"Content-Type": content_type}
        )
        assert response.status_code in (415, 422), response.text


# --- methods, encodings, control characters, numbers ----------------------------------------


async def test_the_start_route_is_not_a_saga_id(client: httpx.AsyncClient) -> None:
    """``GET /sagas/start`` is a wrong method (405), not a search for a saga named ``start``."""
    response = await client.get("/sagas/start")
    assert "method_not_allowed" == assert_4xx(response, 405)["code"]
    assert {"POST", "OPTIONS"} == set(response.headers["Allow"].replace(" ", "").split(","))
    options = await client.options("/sagas/start")
    assert "GET" not in options.headers["Allow"]
    assert "POST" in options.headers["Allow"]
    assert "saga_not_found" == assert_4xx(await client.get(f"/sagas/{SAGA}"), 404)["code"]


START = {"saga_type": "test_two_steps", "data": {"name": "encoded"}}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (json.dumps(START).encode("utf-16"), "UTF-8"),  # with its byte-order mark
        (json.dumps(START).encode("utf-16-le"), "UTF-8"),
        (json.dumps(START).encode("utf-32"), "UTF-8"),
        (b"\xef\xbb\xbf" + json.dumps(START).encode(), "byte-order mark"),
        (json.dumps(START).replace("encoded", "\u00e9").encode("latin-1"), "UTF-8"),
    ],
)
async def test_bodies_not_in_utf8_are_400_saying_what_to_send(
    client: httpx.AsyncClient, body: bytes, says: str
) -> None:
    response = await client.post("/sagas/start", content=body, headers=JSON)
    error = assert_4xx(response, 400)
    assert "invalid_json" == error["code"]
    assert says in error["message"]


@pytest.mark.parametrize("char", ["\u0080", "\u0085", "\u009b", "\u009f", "\x1b", "\x7f"])
async def test_control_characters_c0_and_c1_are_refused_in_names_keys_and_ids(
    client: httpx.AsyncClient, char: str
) -> None:
    text = f"key{char}1"
    start = {**START, "idempotency_key": text, "correlation_id": text}
    error = assert_4xx(await client.post("/sagas/start", json=start), 422)
    assert ["correlation_id", "idempotency_key"] == sorted(d["field"] for d in error["details"])
    event = {"event_type": text, "stream_id": text, "data": {}, "event_id": text}
    error = assert_4xx(await client.post("/events/publish", json=event), 422)
    assert ["event_id", "event_type", "stream_id"] == sorted(d["field"] for d in error["details"])
    reason = assert_4xx(await client.post(f"/sagas/{SAGA}/cancel", json={"reason": text}), 422)
    assert ["reason"] == [d["field"] for d in reason["details"]]


async def test_a_number_with_a_zero_fraction_is_an_integer(client: httpx.AsyncClient) -> None:
    """JSON Schema counts ``3.0`` as an integer: accepted where the schema says integer."""
    stream = f"floats-{uuid.uuid4()}"
    event = {"event_type": "t.happened", "stream_id": stream, "data": {}, "expected_version": 0.0}
    published = await client.post("/events/publish", json=event)
    assert 202 == published.status_code, published.text
    replayed = await client.post(
        "/events/replay", json={"stream_id": stream, "from_version": 1.0, "limit": 1e3}
    )
    assert (202, 1) == (replayed.status_code, replayed.json().get("replayed")), replayed.text
    started = await client.post("/sagas/start", json={**START, "data": {"name": "f", "count": 2.0}})
    assert 202 == started.status_code, started.text
    assert {"name": "f", "count": 2} == started.json()["input"]
    assert isinstance(started.json()["input"]["count"], int)
    for body, field in [
        ({"stream_id": stream, "from_version": 1.5}, "from_version"),
        ({"stream_id": stream, "limit": 1e300}, "limit"),
    ]:
        error = assert_4xx(await client.post("/events/replay", json=body), 422)
        assert [field] == [d["field"] for d in error["details"]]
    error = assert_4xx(
        await client.post("/sagas/start", json={**START, "data": {"name": "f", "count": 2.5}}), 422
    )
    assert ["data.count"] == [d["field"] for d in error["details"]]
