"""The event bus: streams with consumer groups on Redis or in memory, the consumer loop, and
the outbox relay. See ``docs/events.md``."""

from __future__ import annotations

import os
import socket

from .base import BusMessage as BusMessage
from .base import Delivery as Delivery
from .base import EventBus as EventBus
from .base import GroupFigures as GroupFigures
from .base import MalformedEntry as MalformedEntry
from .base import RejectMessage as RejectMessage
from .base import SettlementCallback as SettlementCallback
from .base import StreamFigures as StreamFigures
from .base import StreamInfo as StreamInfo
from .base import bus_metadata as bus_metadata
from .base import dead_letter_stream as dead_letter_stream
from .consumer import ConsumerOptions as ConsumerOptions
from .consumer import ConsumerStats as ConsumerStats
from .consumer import Handler as Handler
from .consumer import HandlerBusy as HandlerBusy
from .consumer import run_consumer as run_consumer
from .in_process import InProcessBus as InProcessBus
from .redis_streams import RedisStreamsBus as RedisStreamsBus
from .relay import OutboxRelay as OutboxRelay
from .relay import RelayStats as RelayStats
from .relay import start_relay as start_relay
from .watcher import BusWatcher as BusWatcher
from .watcher import start_bus_watcher as start_bus_watcher

READ_TIMEOUT_MARGIN = 5.0
"""Seconds a blocking read's socket waits beyond its ``BLOCK`` time before giving up."""


def default_consumer_name() -> str:
    """``<hostname>-<pid>``: distinct for every process on every host."""
    return f"{socket.gethostname()}-{os.getpid()}"


def make_bus(
    *,
    use_redis: bool,
    redis_url: str,
    redis_password: str | None = None,
    max_length: int = 100_000,
    block_ms: int = 1000,
    prefix: str = "",
) -> EventBus:
    """A new, unopened bus: Redis Streams when ``use_redis``, else the in-process bus."""
    if use_redis:
        return RedisStreamsBus(
            redis_url,
            password=redis_password,
            prefix=prefix,
            max_length=max_length,
            read_timeout=block_ms / 1000 + READ_TIMEOUT_MARGIN,
        )
    return InProcessBus(max_length=max_length)
