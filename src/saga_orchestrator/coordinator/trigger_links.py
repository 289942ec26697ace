"""From a published event to the sagas it started.

The router starts a trigger event's sagas with the idempotency key
``event:<event id>:<saga type>`` (:func:`~.router.trigger_key`) and records the event's id with
each saga (``trigger_event_id``). :func:`started_sagas` finds them by those keys: every saga
type the event triggers has its saga, or the router has decided without one (the input did not
fit the type: the event was dead-lettered), or it is not known yet.

:class:`TriggerDecisions` lets a publish in this process wait for the router of this process:
the router says when it has handled an event (``decided``), a publish waits for that, bounded
(:data:`DECISION_WAIT`), before it looks the sagas up. The service uses it with the in-process
bus, whose only reader is this process's router; with Redis the router of any replica may take
the event, so a publish answers with what is stored when it answers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from saga_orchestrator.errors import StoreError
from saga_orchestrator.store.actor import Store

from .catalog import SagaCatalog

__all__ = ["DECISION_WAIT", "TriggerDecisions", "started_sagas", "trigger_key"]

log = logging.getLogger(__name__)

DECISION_WAIT = 2.0
"""Most seconds a publish waits for this process's router to decide on its event."""


def trigger_key(event_id: str, saga_type: str) -> str:
    """The idempotency key of the saga of type ``saga_type`` that event ``event_id`` starts."""
    return f"event:{event_id}:{saga_type}"


class TriggerDecisions:
    """Events someone in this process waits for the router to decide on (no I/O)."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[trio.Event]] = {}

    @contextmanager
    def expect(self, event_id: str) -> Iterator[trio.Event]:
        """An event set once the router has decided on ``event_id`` (call before publishing
        it: the router may decide before the publish returns)."""
        done = trio.Event()
        waiting = self._waiting.setdefault(event_id, set())
        waiting.add(done)
        try:
            yield done
        finally:
            waiting.discard(done)
            if not waiting and self._waiting.get(event_id) is waiting:
                del self._waiting[event_id]

    def decided(self, event_id: str) -> None:
        """The router has handled ``event_id``: its sagas are durable, or it started none."""
        for done in self._waiting.pop(event_id, ()):
            done.set()


async def started_sagas(
    store: Store, catalog: SagaCatalog, event_id: str, event_type: str, *, decided: bool
) -> list[str] | None:
    """The ids of the sagas event ``event_id`` started, in the catalog's order of their types;
    ``None`` while the router may still start one (not every triggered type has its saga and
    ``decided`` is false), or when the store cannot be read now: the event is stored already,
    so its publish must not fail for this (its sagas are found by the link later)."""
    types = [definition.name for definition in catalog.triggered_by(event_type)]
    found = []
    try:
        for saga_type in types:
            saga = await store.find_saga_by_key(trigger_key(event_id, saga_type))
            if saga is not None:
                found.append(saga.saga_id)
    except StoreError as exc:
        log.info("the sagas of event %s are not known yet: %s", event_id, exc)
        return None
    return found if decided or len(found) == len(types) else None
