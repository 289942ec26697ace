"""The event bus on Redis Streams, with redis-py's synchronous client in worker threads.

Why threads and not ``redis.asyncio`` through trio-asyncio: measured on our machine class,
pipelined XADD of 100 entries ran at ~55,000 entries/s through ``trio.to_thread`` against
~21,000/s through trio-asyncio, and XREADGROUP of 100 + XACK at ~57,000/s against ~20,000/s
(see docs/events.md). The price of threads is that a call cannot be cancelled while it runs,
so:

* every call runs with ``abandon_on_cancel=False``: a cancel waits for the call to return, and
  a connection is never left half-way through a command (nothing is abandoned);
* a blocking read waits on the server (``XREADGROUP ... BLOCK block_ms``), so a call returns
  within ``block_ms`` plus a round trip, and stopping the router takes at most that long;
* entries read by a call whose caller was cancelled stay pending in the group and are claimed
  again (``XAUTOCLAIM``) after the idle time: nothing is lost.

Blocking reads use their own client, whose socket timeout is longer than the longest block;
every other command uses a client with a short timeout. redis-py errors are translated here:
``ConnectionError``/``TimeoutError`` (Redis down, restarting, loading) -> ``BusUnavailable``,
anything else -> ``BusError``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import redis
import trio
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from saga_orchestrator.errors import BusError, BusUnavailable

from .base import (
    DEAD_LETTER_MEMORY_SECONDS,
    BusMessage,
    Delivery,
    GroupFigures,
    SettlementCallback,
    StreamFigures,
    StreamInfo,
    dead_letter_fields,
    dead_letter_memory_key,
    dead_letter_stream,
    stream_info,
)

__all__ = ["RedisStreamsBus"]

log = logging.getLogger(__name__)

T = TypeVar("T")

CLAIM_ROUNDS = 10
"""Most XAUTOCLAIM calls one :meth:`RedisStreamsBus.claim` makes to fill its count."""

DEAD_LETTER_SCRIPT = """
-- KEYS: the stream, its dead-letter stream, the group's memory of dead-lettered event ids (a
-- sorted set scored by when). ARGV: group, entry id, event id ('' for none), now, memory
-- seconds, max length, then the dead-letter entry's fields and values.
local group, entry_id, event_id = ARGV[1], ARGV[2], ARGV[3]
local now, memory, max_length = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if event_id ~= '' then
    local since = redis.call('ZSCORE', KEYS[3], event_id)
    if since and tonumber(since) > now - memory then
        redis.call('XACK', KEYS[1], group, entry_id)
        return 0
    end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', max_length, '*', unpack(ARGV, 7))
redis.call('XACK', KEYS[1], group, entry_id)
if event_id ~= '' then
    redis.call('ZADD', KEYS[3], now, event_id)
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - memory)
    redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(max_length + 1))
    redis.call('PEXPIRE', KEYS[3], math.ceil(memory * 1000))
end
return 1
"""
"""Dead-letter an entry once per event and group, atomically (a script runs alone): copy it to
the dead-letter stream and acknowledge it, unless the group's memory holds its event id (then
only acknowledge it). The memory keeps the last ``max_length`` ids for ``memory`` seconds."""


def _translate(exc: redis.RedisError) -> BusError:
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return BusUnavailable(f"Redis cannot be reached: {type(exc).__name__}: {exc}")
    return BusError(f"Redis failed: {type(exc).__name__}: {exc}")


def _is_nogroup(exc: redis.ResponseError) -> bool:
    return str(exc).startswith("NOGROUP")


def _stream_entries(reply: Any, key: str) -> list[tuple[str, dict[str, str] | None]]:
    """The entries of ``key`` in an XREADGROUP reply (RESP2 list or RESP3 dict)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        found = reply.get(key)
        return list(found[0]) if found and isinstance(found[0], list) else list(found or [])
    for name, entries in reply:
        if name == key:
            return list(entries)
    return []


class RedisStreamsBus:
    """Streams on one Redis server; every key is ``prefix + stream``."""

    kind = "redis"
    durable = True

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        prefix: str = "",
        max_length: int = 100_000,
        read_timeout: float = 10.0,
        command_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        max_connections: int = 16,
        dead_letter_memory: float = DEAD_LETTER_MEMORY_SECONDS,
    ) -> None:
        """``read_timeout`` must exceed the longest ``block_ms`` given to :meth:`read`."""
        self.url = url
        self.prefix = prefix
        self.max_length = max_length
        self.dead_letter_memory = dead_letter_memory
        self._password = password
        self._read_timeout = read_timeout
        self._command_timeout = command_timeout
        self._connect_timeout = connect_timeout
        self._max_connections = max_connections
        self._client: redis.Redis | None = None
        self._reader: redis.Redis | None = None
        self._dead_letter_script: Any = None
        self._limiter = trio.CapacityLimiter(max_connections)
        self._read_limiter = trio.CapacityLimiter(max_connections)

    # -- connections ----------------------------------------------------------------------------

    def _make_client(self, socket_timeout: float) -> redis.Redis:
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": self._connect_timeout,
            "max_connections": self._max_connections,
            "health_check_interval": 30,
            # One quick retry on a broken connection (Redis restarted: the pooled connection is
            # stale); longer outages are the callers' business (they back off).
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 1),
            "client_name": "saga-orchestrator",
        }
        if self._password is not None:
            options["password"] = self._password  # a password in the URL wins
        return redis.Redis.from_url(self.url, **options)

    async def open(self) -> None:
        """Create the clients; connections are made on first use (Redis may be down now)."""
        if self._client is None:
            self._client = self._make_client(self._command_timeout)
            self._reader = self._make_client(self._read_timeout)
            # Sent by its digest (EVALSHA), loaded again when Redis lost it (a restart).
            self._dead_letter_script = self._client.register_script(DEAD_LETTER_SCRIPT)

    async def close(self) -> None:
        clients = [c for c in (self._client, self._reader) if c is not None]
        self._client = self._reader = None
        for client in clients:
            with trio.move_on_after(self._command_timeout, shield=True):
                await trio.to_thread.run_sync(client.close)

    def watch_settlements(self, callback: SettlementCallback) -> None:
        """Entries are settled once published (Redis keeps them): never called."""

    def _key(self, stream: str) -> str:
        return self.prefix + stream

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            raise BusUnavailable("the Redis bus is not open")
        return self._client

    async def _run(self, fn: Callable[..., T], *args: Any, reading: bool = False) -> T:
        """``fn(*args)`` in a worker thread, never abandoned; redis errors translated."""
        limiter = self._read_limiter if reading else self._limiter
        try:
            return await trio.to_thread.run_sync(partial(fn, *args), limiter=limiter)
        except redis.RedisError as exc:
            raise _translate(exc) from None

    # -- the protocol ---------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._run(self.client.ping)

    async def publish(self, stream: str, messages: Sequence[BusMessage]) -> list[str]:
        if not messages:
            return []
        return await self._run(self._publish, self._key(stream), [m.to_fields() for m in messages])

    def _publish(self, key: str, all_fields: Sequence[dict[str, str]]) -> list[str]:
        pipe = self.client.pipeline(transaction=False)
        for fields in all_fields:
            pipe.xadd(key, fields, maxlen=self.max_length, approximate=True)
        return list(pipe.execute())

    async def ensure_group(self, stream: str, group: str) -> None:
        await self._run(self._ensure_group, self._key(stream), group)

    def _ensure_group(self, key: str, group: str) -> None:
        try:
            self.client.xgroup_create(key, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    async def read(
        self, stream: str, group: str, consumer: str, *, count: int, block_ms: int
    ) -> list[Delivery]:
        key = self._key(stream)
        entries = await self._run(self._read, key, group, consumer, count, block_ms, reading=True)
        return [
            Delivery(stream=stream, entry_id=entry_id, fields=fields)
            for entry_id, fields in entries
            if fields is not None
        ]

    def _read(
        self, key: str, group: str, consumer: str, count: int, block_ms: int
    ) -> list[tuple[str, dict[str, str] | None]]:
        assert self._reader is not None
        try:
            reply = self._reader.xreadgroup(
                group, consumer, {key: ">"}, count=count, block=block_ms
            )
        except redis.ResponseError as exc:
            if not _is_nogroup(exc):
                raise
            # The stream or the group is gone (Redis restarted without persistence, or the
            # key was deleted): make the group again and read from there.
            log.warning("consumer group %r of %r was missing: created again", group, key)
            self._ensure_group(key, group)
            reply = self._reader.xreadgroup(
                group, consumer, {key: ">"}, count=count, block=block_ms
            )
        return _stream_entries(reply, key)

    async def claim(
        self, stream: str, group: str, consumer: str, *, min_idle: float, count: int
    ) -> list[Delivery]:
        key = self._key(stream)
        claimed = await self._run(self._claim, key, group, consumer, int(min_idle * 1000), count)
        return [
            Delivery(stream=stream, entry_id=entry_id, fields=fields, deliveries=deliveries)
            for entry_id, fields, deliveries in claimed
        ]

    def _claim(
        self, key: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[tuple[str, dict[str, str], int]]:
        client = self.client
        entries: list[tuple[str, dict[str, str]]] = []
        start = "0-0"
        try:
            for _ in range(CLAIM_ROUNDS):
                reply = client.xautoclaim(
                    key, group, consumer, min_idle_ms, start_id=start, count=count - len(entries)
                )
                start = reply[0]
                entries.extend((i, f) for i, f in reply[1] if f is not None)
                if len(reply) > 2 and reply[2]:
                    log.warning(
                        "%d entries of %r were trimmed while pending in group %r: lost from "
                        "the bus (the store still has them; replay them if needed)",
                        len(reply[2]),
                        key,
                        group,
                    )
                if start == "0-0" or len(entries) >= count:
                    break
        except redis.ResponseError as exc:
            if _is_nogroup(exc):
                return []
            raise
        if not entries:
            return []
        # The delivery count of each claimed entry (XAUTOCLAIM does not return it).
        pipe = client.pipeline(transaction=False)
        for entry_id, _ in entries:
            pipe.xpending_range(key, group, entry_id, entry_id, 1, consumer)
        counts = {}
        for rows in pipe.execute():
            for row in rows:
                counts[row["message_id"]] = int(row["times_delivered"])
        return [(i, f, counts.get(i, 1)) for i, f in entries if i in counts]

    async def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            await self._run(self.client.xack, self._key(stream), group, *entry_ids)

    async def dead_letter(
        self, group: str, delivery: Delivery, reason: str, *, event_id: str | None = None
    ) -> bool:
        fields = dead_letter_fields(group, delivery, reason)
        keys = [
            self._key(delivery.stream),
            self._key(dead_letter_stream(delivery.stream)),
            self._key(dead_letter_memory_key(delivery.stream, group)),
        ]
        args: list[str | float | int] = [
            group,
            delivery.entry_id,
            event_id or "",
            time.time(),
            self.dead_letter_memory,
            self.max_length,
        ]
        for name, value in fields.items():
            args += [name, value]
        written = await self._run(self._run_dead_letter_script, keys, args)
        return bool(written)

    def _run_dead_letter_script(self, keys: list[str], args: list[str | float | int]) -> Any:
        if self._dead_letter_script is None:
            raise BusUnavailable("the Redis bus is not open")
        return self._dead_letter_script(keys=keys, args=args, client=self.client)

    async def entries(self, stream: str, *, count: int = 100) -> list[Delivery]:
        rows = await self._run(self.client.xrange, self._key(stream), "-", "+", count)
        return [
            Delivery(stream=stream, entry_id=entry_id, fields=fields, deliveries=0)
            for entry_id, fields in rows
        ]

    async def info(self, stream: str, group: str) -> StreamInfo:
        return stream_info(await self.figures(stream), group)

    async def figures(self, stream: str) -> StreamFigures:
        key = self._key(stream)
        dead_key = self._key(dead_letter_stream(stream))
        return await self._run(self._figures, stream, key, dead_key)

    def _figures(self, stream: str, key: str, dead_key: str) -> StreamFigures:
        """Two round trips: the lengths, the server's time and the groups (XINFO GROUPS), then
        each group's pending summary (XPENDING: its count and oldest entry id)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.xlen(key)
        pipe.xlen(dead_key)
        pipe.time()
        pipe.xinfo_groups(key)
        length, dead, (seconds, micros), groups = pipe.execute(raise_on_error=False)
        if isinstance(groups, redis.ResponseError):  # no such key (yet)
            groups = []
        elif isinstance(groups, Exception):
            raise groups
        summaries: list[Any] = []
        if groups:
            pipe = self.client.pipeline(transaction=False)
            for found in groups:
                pipe.xpending(key, found["name"])
            summaries = pipe.execute()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        return StreamFigures(
            stream=stream,
            length=int(length),
            dead_letters=int(dead),
            groups=tuple(
                sorted(
                    (
                        _group_figures(found, summary, now_ms)
                        for found, summary in zip(groups, summaries, strict=True)
                    ),
                    key=lambda g: g.group,
                )
            ),
        )


def _group_figures(found: dict[str, Any], summary: dict[str, Any], now_ms: int) -> GroupFigures:
    """A group's figures from its XINFO GROUPS row and its XPENDING summary."""
    pending = int(summary.get("pending") or 0)
    oldest = summary.get("min") if pending else None
    age = None
    if oldest:
        added_ms = int(str(oldest).partition("-")[0])
        age = max(0, now_ms - added_ms) / 1000
    lag = found.get("lag")
    return GroupFigures(
        group=str(found["name"]),
        pending=pending,
        oldest_pending_age=age,
        lag=int(lag) if lag is not None else None,
        consumers=int(found.get("consumers") or 0),
    )
