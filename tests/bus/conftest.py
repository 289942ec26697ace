"""Fixtures of the bus tests: the same contract suite runs on the in-process bus and on Redis.

``bus`` is an opened bus of each kind; on Redis every key starts with the test's
``redis_prefix`` (deleted after the test). ``add_raw`` appends an entry with arbitrary fields
(what another producer could write), bypassing :class:`BusMessage`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis

from saga_orchestrator.bus import EventBus, InProcessBus, RedisStreamsBus

REDIS = pytest.param("redis", marks=pytest.mark.integration, id="redis")
BUS_KINDS = ["in-process", REDIS]
MAX_LENGTH = 10_000

AddRaw = Callable[[str, dict[str, str]], Awaitable[None]]


@pytest.fixture(params=BUS_KINDS)
def bus_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_bus(bus_kind: str, request: pytest.FixtureRequest) -> Callable[..., EventBus]:
    """``make_bus(max_length=..., **options)``: a new, unopened bus of this test's kind (on
    Redis, over the same keys each time: a new bus is a new process looking at the same
    server)."""
    if bus_kind == "in-process":
        return lambda max_length=MAX_LENGTH, **options: InProcessBus(
            max_length=max_length, **options
        )
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    return lambda max_length=MAX_LENGTH, **options: RedisStreamsBus(
        url, prefix=prefix, max_length=max_length, read_timeout=5.0, command_timeout=2.0, **options
    )


@pytest.fixture
async def bus(make_bus: Callable[..., EventBus]) -> AsyncIterator[EventBus]:
    opened = make_bus()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def add_raw(bus: EventBus, request: pytest.FixtureRequest) -> AddRaw:
    if isinstance(bus, InProcessBus):

        async def add(stream: str, fields: dict[str, str]) -> None:
            bus._append(stream, [fields])

        return add
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")

    async def add_to_redis(stream: str, fields: dict[str, str]) -> None:
        client = redis.Redis.from_url(url, socket_timeout=2)
        try:
            client.xadd(prefix + stream, fields)
        finally:
            client.close()

    return add_to_redis
