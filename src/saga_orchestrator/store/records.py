"""The values the store reads and writes. Plain frozen data: no I/O, no saga logic."""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Collection
from typing import Any

import attrs

ANY_VERSION = -1
"""``expected_version`` that accepts whatever the stream's version is."""

TERMINAL_STATUSES = ("completed", "compensated", "cancelled", "timed_out")
ACTIVE_STATUSES = ("pending", "running", "compensating")
"""Sagas with an actor to (re)start; parked sagas (``compensation_failed``, ``failed``) wait."""

Loaded = Collection[tuple[str, int]]
"""The (saga type, version) pairs of the definitions a process has loaded: the sagas it may
claim and drive."""


def new_id() -> str:
    """A random (version 4) UUID as text, like ``str(uuid.uuid4())`` at a fraction of its cost:
    the random bytes are read from the OS 256 ids at a time. Every event, outbox message and
    saga gets one, so this is on the hot path."""
    global _random, _offset
    if _offset >= len(_random):
        _random, _offset = os.urandom(16 * 256).hex(), 0
    h = _random[_offset : _offset + 32]
    _offset += 32
    variant = _VARIANT[h[16]]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


_VARIANT = {f"{n:x}": f"{8 | (n & 3):x}" for n in range(16)}
"""The RFC 4122 variant (binary 10xx) in the first hex digit of the fourth group."""
_random = ""
_offset = 0


def _reseed_after_fork() -> None:
    """A forked child must not hand out the ids its parent has buffered."""
    global _random, _offset
    _random, _offset = "", 0


os.register_at_fork(after_in_child=_reseed_after_fork)


@attrs.frozen(kw_only=True)
class NewEvent:
    """An event to append."""

    event_type: str
    data: dict[str, Any] = attrs.field(factory=dict)
    metadata: dict[str, Any] = attrs.field(factory=dict)
    event_id: str = attrs.field(factory=new_id)


@attrs.frozen(kw_only=True)
class RecordedEvent:
    """An event as stored."""

    position: int
    """Global position: strictly increasing in commit order across all streams."""
    stream_id: str
    version: int
    """1 for a stream's first event."""
    event_id: str
    event_type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: float


@attrs.frozen(kw_only=True)
class StepRecord:
    """A saga step in the queryable projection."""

    index: int
    name: str
    status: str
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    """The class of the step's last error (``KeyError``, ``ServiceUnavailable``...)."""
    error_frames: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    """The last frames of its traceback, newest last, for an error raised by the step's own code
    (none for a downstream service's answer): at most ``FRAMES_KEPT`` frames of at most
    ``FRAME_BYTES`` bytes each (``coordinator/step_runner.py``)."""
    compensation_status: str = "not_run"
    compensation_attempts: int = 0
    compensation_error: str | None = None


@attrs.frozen(kw_only=True)
class SagaRecord:
    """A saga in the queryable projection; ``version`` is its stream's version."""

    saga_id: str
    saga_type: str
    saga_version: int
    status: str
    current_step: str | None
    input: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    deadline_at: float
    created_at: float
    updated_at: float
    version: int
    idempotency_key: str | None = None
    correlation_id: str | None = None
    trigger_event_id: str | None = None
    """The event that started the saga (set by the router), else ``None``."""
    steps: tuple[StepRecord, ...] = ()


@attrs.frozen(kw_only=True)
class OutboxMessage:
    """An event to relay to the bus after the transaction that produced it commits."""

    topic: str
    """The bus stream to publish on."""
    event: NewEvent
    occurred_at: float | None = None
    """When the event happened (the bus envelope's ``occurred_at``); ``None``: when this
    message commits, which is when a new event is recorded. An event recorded earlier and
    published again (a replay) carries its ``recorded_at``."""


@attrs.frozen(kw_only=True)
class OutboxRecord:
    id: int
    topic: str
    event: NewEvent
    created_at: float
    """When the message was committed."""
    occurred_at: float
    """The message's ``occurred_at``, else ``created_at``."""


@attrs.frozen
class Lease:
    """An instance's claim on a saga: the saga row names ``instance_id`` as its owner at
    ``epoch``, which grows by one with every claim (the fencing token)."""

    instance_id: str
    epoch: int


@attrs.frozen(kw_only=True)
class InstanceRecord:
    """A process registered in the store, live while ``expires_at`` is ahead."""

    instance_id: str
    started_at: float
    heartbeat_at: float
    expires_at: float
    """Database time the instance's leases end unless it renews them."""
    info: dict[str, Any] = attrs.field(factory=dict)
    """What it says of itself: host, pid, version, address."""


@attrs.frozen(kw_only=True)
class ClaimedSaga:
    """A saga an instance has just claimed."""

    saga_id: str
    saga_type: str
    saga_version: int
    """The definition version it runs on."""
    epoch: int
    """The new lease's fencing token."""
    previous_owner: str | None
    """The instance that owned it (gone, expired or released), or ``None``."""


@attrs.frozen(kw_only=True)
class SagaCommand:
    """A command for a saga owned by another instance, kept until its owner applies it."""

    command_id: str = attrs.field(factory=lambda: new_id())
    saga_id: str
    kind: str
    """``cancel`` or ``deliver``."""
    payload: dict[str, Any] = attrs.field(factory=dict)
    created_at: float = 0.0


@attrs.frozen(kw_only=True)
class AppendRequest:
    """One unit of a group commit: events for one stream, with what must commit alongside them."""

    stream_id: str
    expected_version: int
    """The stream's version before these events (0 for a new stream), or ``ANY_VERSION``."""
    events: tuple[NewEvent, ...] = attrs.field(converter=tuple)
    saga: SagaRecord | None = None
    """Projection row to upsert in the same transaction, with step rows to write.

    ``saga.steps`` lists the step rows to write, not necessarily all of the saga's: each is
    upserted by (saga id, ``index``) and the saga's steps it does not list are left as they are
    (an empty ``steps`` writes no step). When several accepted requests of one batch carry the
    same saga and step index, the last one's row is stored; a refused request writes nothing.
    ``get_saga`` returns all the saga's stored steps, sorted by index."""
    outbox: tuple[OutboxMessage, ...] = attrs.field(default=(), converter=tuple)
    lease: Lease | None = None
    """The appender's lease on ``saga``: the append fails with ``LeaseLost`` unless the stored
    saga is owned by this instance at this epoch; a new saga is created owned by it. ``None``:
    not fenced (events that are not a saga's)."""


@attrs.frozen(kw_only=True)
class AppendResult:
    stream_id: str
    version: int
    """The stream's version after the append."""
    positions: tuple[int, ...]
    """Global positions of the appended events, in order."""


@attrs.frozen(kw_only=True)
class SagaQuery:
    """Filters and a page of the saga list (newest first, by ``(created_at, saga_id)``: a
    cursor keeps its place while sagas are written, since neither ever changes).

    Every filter given must hold; ``statuses``: any of them. Times are epoch seconds: ``*_after``
    is inclusive, ``*_before`` exclusive."""

    statuses: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    saga_type: str | None = None
    saga_version: int | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None
    trigger_event_id: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    updated_after: float | None = None
    updated_before: float | None = None
    cursor: str | None = None
    limit: int = 50

    def matches(self, saga: SagaRecord) -> bool:
        """Whether ``saga`` passes the filters (the cursor aside): the memory backend's rule,
        which the SQL of the other backends spells out."""
        return (
            (not self.statuses or saga.status in self.statuses)
            and _equal(self.saga_type, saga.saga_type)
            and _equal(self.saga_version, saga.saga_version)
            and _equal(self.correlation_id, saga.correlation_id)
            and _equal(self.idempotency_key, saga.idempotency_key)
            and _equal(self.trigger_event_id, saga.trigger_event_id)
            and _within(saga.created_at, self.created_after, self.created_before)
            and _within(saga.updated_at, self.updated_after, self.updated_before)
        )


def _equal(wanted: object, value: object) -> bool:
    return wanted is None or wanted == value


def _within(value: float, after: float | None, before: float | None) -> bool:
    return (after is None or value >= after) and (before is None or value < before)


@attrs.frozen(kw_only=True)
class SagaPage:
    items: tuple[SagaRecord, ...]
    next_cursor: str | None


def encode_cursor(created_at: float, saga_id: str) -> str:
    """Opaque cursor after the saga ``(created_at, saga_id)`` in newest-first order."""
    raw = json.dumps([created_at, saga_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Inverse of :func:`encode_cursor`; raises ``ValueError`` for a cursor it did not make
    (one that is not a finite time and a saga id)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, saga_id = json.loads(raw)
        created_at = float(created_at)
        if not math.isfinite(created_at) or not isinstance(saga_id, str):
            raise ValueError("not a time and a saga id")
        return created_at, saga_id
    except Exception as exc:
        raise ValueError(f"invalid cursor {cursor!r}") from exc
