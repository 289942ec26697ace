"""Live updates for the dashboard: the engine's observer fans each transition out to the
browsers that watch, without a query per browser.

:class:`LiveHub` is a :class:`~saga_orchestrator.coordinator.observer.SagaObserver`: the engine
calls it (in the service's trio run) right after transitions are durable, and it puts one small
message per transition into the bounded queue of each subscriber (one per server-sent-events
stream). A subscriber whose queue is full is a slow consumer: it is dropped (its queue closed,
its stream ends and the browser reconnects and reloads) rather than buffered without bound.
At most ``max_streams`` subscribers exist at once (``LiveStreamsFull`` beyond, a 503);
:meth:`LiveHub.close` ends every stream when the service stops, so that Hypercorn's graceful
shutdown is not held up by open browsers.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import trio

from saga_orchestrator.coordinator.observer import SagaObserver, step_names_of
from saga_orchestrator.coordinator.state import SagaState
from saga_orchestrator.coordinator.transitions import Transition
from saga_orchestrator.http.errors import LiveStreamsFull, ServiceStopping

__all__ = ["QUEUE_SIZE", "LiveHub", "Subscriber", "message_of"]

log = logging.getLogger(__name__)

QUEUE_SIZE = 256
"""Messages one stream may have waiting before it counts as a slow consumer and is dropped."""


def message_of(
    seq: int, after: SagaState, transition: Transition, step_names: Sequence[str]
) -> dict[str, Any]:
    """What a browser is told of one transition (JSON-ready)."""
    step = getattr(transition, "step", None)
    name = None
    if isinstance(step, int):
        name = step_names[step] if step < len(step_names) else str(step)
    return {
        "seq": seq,
        "saga_id": after.saga_id,
        "saga_type": after.saga_type,
        "status": after.status.value,
        "transition": type(transition).__name__,
        "step": name,
        "at": transition.at,
    }


class Subscriber:
    """One live stream: its queue, and whether it was dropped for falling behind."""

    def __init__(self, saga_id: str | None, size: int) -> None:
        self.saga_id = saga_id
        """Only this saga's messages (``None``: every saga's)."""
        self.send, self.receive = trio.open_memory_channel[dict[str, Any]](size)
        self.dropped = False


class LiveHub(SagaObserver):
    """Fans transitions out to the live streams; bounded in streams and in queued messages."""

    def __init__(
        self,
        *,
        max_streams: int,
        step_names: Mapping[Any, Sequence[str]] | None = None,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.max_streams = max_streams
        self.queue_size = queue_size
        self.step_names = dict(step_names or {})
        self.subscribers: set[Subscriber] = set()
        self.closed = False
        self.dropped = 0
        """Streams dropped so far for falling behind."""
        self._seq = itertools.count(1)

    def open(self, saga_id: str | None = None) -> Subscriber:
        """A new stream (``saga_id``: that saga's transitions only); :meth:`release` it.

        Raises:
            LiveStreamsFull: ``max_streams`` streams are open.
            ServiceStopping: the hub is closed (the service stops).
        """
        if self.closed:
            raise ServiceStopping("the service is stopping")
        if len(self.subscribers) >= self.max_streams:
            raise LiveStreamsFull(
                f"this process serves {self.max_streams} live streams already "
                "(UI_LIVE_CONNECTIONS); retry later"
            )
        subscriber = Subscriber(saga_id, self.queue_size)
        self.subscribers.add(subscriber)
        return subscriber

    def release(self, subscriber: Subscriber) -> None:
        """The stream has ended (its browser went, or it was dropped or closed)."""
        self.subscribers.discard(subscriber)
        subscriber.send.close()
        subscriber.receive.close()

    @contextmanager
    def subscribe(self, saga_id: str | None = None) -> Iterator[Subscriber]:
        """:meth:`open` for the body of the ``with``, then :meth:`release`."""
        subscriber = self.open(saga_id)
        try:
            yield subscriber
        finally:
            self.release(subscriber)

    def transitions_recorded(
        self, before: SagaState, after: SagaState, transitions: Sequence[Transition]
    ) -> None:
        if not self.subscribers:
            return
        names = step_names_of(self.step_names, after)
        messages = [message_of(next(self._seq), after, t, names) for t in transitions]
        for subscriber in list(self.subscribers):
            if subscriber.saga_id is not None and subscriber.saga_id != after.saga_id:
                continue
            for message in messages:
                try:
                    subscriber.send.send_nowait(message)
                except trio.WouldBlock:
                    self._drop(subscriber)
                    break
                except trio.ClosedResourceError:
                    break

    def _drop(self, subscriber: Subscriber) -> None:
        subscriber.dropped = True
        subscriber.send.close()
        self.subscribers.discard(subscriber)
        self.dropped += 1
        log.info("a live stream fell %d messages behind: dropped", self.queue_size)

    def close(self) -> None:
        """End every stream and refuse new ones (the service stops)."""
        self.closed = True
        for subscriber in list(self.subscribers):
            subscriber.send.close()
