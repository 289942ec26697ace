"""The Redis fixtures of ``tests/conftest.py``: the server answers, and a test's keys go away
(each test stands alone: none depends on another having run)."""

from __future__ import annotations

import re

import pytest
import redis.asyncio
import trio
import trio_asyncio

from .conftest import delete_redis_keys, redis_client, redis_keys_prefix

pytestmark = pytest.mark.integration


async def _aio_ping(url: str) -> bool:
    client = redis.asyncio.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(await client.ping())
    finally:
        await client.aclose()


async def test_redis_url_answers_ping_through_trio_asyncio(
    redis_url: str, aio_loop: trio_asyncio.TrioEventLoop
) -> None:
    # How the service will talk to Redis: redis.asyncio, crossing from trio once.
    with trio.fail_after(5):
        assert await trio_asyncio.aio_as_trio(_aio_ping)(redis_url) is True


def test_redis_prefix_is_unique_to_the_test(redis_prefix: str) -> None:
    assert re.fullmatch(r"test:[0-9a-f]{32}:", redis_prefix)


def test_deleting_a_prefix_deletes_its_keys_and_no_others(
    redis_url: str, redis_prefix: str
) -> None:
    # The cleanup of the redis_prefix fixture, called directly on a prefix inside this test's
    # own; the keys beside it must survive (the fixture's teardown removes them afterwards).
    prefix, neighbour, shorter = f"{redis_prefix}a:", f"{redis_prefix}ab:", f"{redis_prefix}a"
    with redis_client(redis_url) as client:
        keys = [f"{prefix}{i}" for i in range(2500)]  # more than one SCAN and DEL batch
        client.mset(dict.fromkeys(keys, "x"))
        client.xadd(f"{prefix}stream", {"field": "value"})
        client.set(f"{neighbour}kept", "x")
        client.set(shorter, "x")

        assert 2501 == delete_redis_keys(redis_url, prefix)

        assert [] == list(client.scan_iter(match=f"{prefix}*"))
        assert 0 == client.exists(f"{prefix}0", f"{prefix}2499", f"{prefix}stream")
        assert 2 == client.exists(f"{neighbour}kept", shorter)
        assert 0 == delete_redis_keys(redis_url, prefix)


def test_a_prefix_is_matched_literally(redis_url: str, redis_prefix: str) -> None:
    with redis_client(redis_url) as client:
        client.set(f"{redis_prefix}[x]*?", "deleted")
        client.set(f"{redis_prefix}x", "kept: [x] is not a glob class here")
        assert 1 == delete_redis_keys(redis_url, f"{redis_prefix}[x]")
        assert {f"{redis_prefix}x".encode()} == set(client.scan_iter(match=f"{redis_prefix}*"))


def test_a_prefix_and_its_keys_are_gone_after_the_test(redis_url: str) -> None:
    # What the redis_prefix fixture does around each test: its keys are deleted afterwards,
    # also when the test fails; the keys of other prefixes stay.
    with redis_client(redis_url) as client, redis_keys_prefix(redis_url) as neighbour:
        client.set(f"{neighbour}kept", "x")
        with redis_keys_prefix(redis_url) as prefix:
            assert re.fullmatch(r"test:[0-9a-f]{32}:", prefix) and prefix != neighbour
            client.set(f"{prefix}key", "x")
            client.xadd(f"{prefix}stream", {"field": "value"})
        assert [] == list(client.scan_iter(match=f"{prefix}*"))
        with pytest.raises(RuntimeError), redis_keys_prefix(redis_url) as failing:
            client.set(f"{failing}key", "x")
            raise RuntimeError("the test failed")
        assert [] == list(client.scan_iter(match=f"{failing}*"))
        assert 1 == client.exists(f"{neighbour}kept")
