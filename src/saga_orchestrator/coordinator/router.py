"""The router actor: reads the domain events stream and turns events into saga commands.

For each event of ``EVENT_STREAM`` (read with the consumer group, see
:mod:`saga_orchestrator.bus.consumer`):

* an event that names a saga (``saga_id`` in its metadata, else in its data) is a *reply*: it
  is delivered to that saga (:class:`~.messages.DeliverEvent`, answered once durable in the
  saga's history, or once kept in the store for the saga's owner on another instance when
  that one is slow to answer: it is applied from there, ``CommandPending``). A saga that does
  not exist, has ended or is parked cannot take it: the event is dropped (acknowledged) with a
  log line (one a minute per event type, with the count);
* every saga type whose definition lists the event's type in ``triggers`` is started with the
  idempotency key ``event:<event id>:<saga type>``: an event delivered twice, claimed after a
  crash or replayed starts one saga per type, never two. The saga's input is the event's data,
  restricted to the fields the saga's input type declares; its correlation id is the event's
  ``correlation_id`` metadata, else the event id.

The event is acknowledged only after that is durable. At the coordinator's admission limit (or
while the store or the coordinator cannot take more) the router waits and retries the same
event, reading nothing new meanwhile: backpressure. Input that fails the saga's schema can never
succeed: the event goes to the dead-letter stream at once. Any other failure is retried through
the bus (redelivery after the claim idle time) and dead-lettered after ``BUS_MAX_DELIVERIES``.

Lifecycle events (``saga.started``, ...) go to their own stream and are not read here.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import attrs
import trio

from saga_orchestrator.actors import (
    ActorRef,
    ActorStopped,
    ActorSystem,
    AskTimeout,
    Mailbox,
    MailboxFull,
    run_loop_actor,
)
from saga_orchestrator.bus import (
    BusMessage,
    ConsumerOptions,
    ConsumerStats,
    EventBus,
    HandlerBusy,
    RejectMessage,
    run_consumer,
)
from saga_orchestrator.errors import (
    CommandPending,
    DuplicateIdempotencyKey,
    OverloadedError,
    SagaNotFound,
    SagaStateConflict,
    StoreUnavailable,
    ValidationError,
)
from saga_orchestrator.throttled_log import ThrottledLog

from .catalog import SagaCatalog
from .definition import SagaDefinition
from .messages import DeliverEvent, StartResult, StartSaga
from .trigger_links import TriggerDecisions, trigger_key

__all__ = ["EventRouter", "RouterStats", "start_router", "target_saga", "trigger_key"]

log = logging.getLogger(__name__)

ROUTER_ASK_TIMEOUT = 10.0
"""Seconds the router waits for the coordinator to answer a start or a delivery."""


def target_saga(message: BusMessage) -> str | None:
    """The saga an event is addressed to: ``saga_id`` in its metadata, else in its data."""
    for source in (message.metadata, message.data):
        value = source.get("saga_id")
        if isinstance(value, str) and value:
            return value
    return None


def _input_of(definition: SagaDefinition, data: dict[str, Any]) -> dict[str, Any]:
    """The event's data restricted to the fields of the saga's input type (an event may carry
    more than the saga needs)."""
    if not attrs.has(definition.input_type):
        return data
    names = set()
    for field in attrs.fields(definition.input_type):
        names.add(field.name)
        names.add(getattr(field, "alias", None) or field.name)
    return {key: value for key, value in data.items() if key in names}


@attrs.define
class RouterStats:
    started: int = 0
    """Sagas started by events."""
    repeated: int = 0
    """Trigger events whose saga had been started already (redelivered or replayed)."""
    delivered: int = 0
    """Events delivered to a saga."""
    dropped: int = 0
    """Events addressed to a saga that does not exist, has ended or is parked."""


class EventRouter:
    """The router's handler (see the module doc); :func:`start_router` runs it."""

    def __init__(
        self,
        coordinator: ActorRef[Any],
        catalog: SagaCatalog,
        *,
        ask_timeout: float = ROUTER_ASK_TIMEOUT,
        decisions: TriggerDecisions | None = None,
    ) -> None:
        self.coordinator = coordinator
        self.catalog = catalog
        self.ask_timeout = ask_timeout
        self.decisions = decisions
        self.stats = RouterStats()
        self.consumer_stats = ConsumerStats()
        self._log = ThrottledLog(log)

    def order_key(self, message: BusMessage) -> str:
        return target_saga(message) or message.event_id

    async def handle(self, message: BusMessage) -> None:
        self._log.flush()  # the count of lines left out, once their minute is over
        saga_id = target_saga(message)
        if saga_id is not None:
            await self._deliver(message, saga_id)
        triggered = self.catalog.triggered_by(message.event_type)
        try:
            for definition in triggered:
                await self._start(message, definition)
        except RejectMessage:  # dead-lettered: decided, without this type's saga
            self._decided(message, triggered)
            raise
        self._decided(message, triggered)

    def _decided(self, message: BusMessage, triggered: list[SagaDefinition]) -> None:
        if triggered and self.decisions is not None:
            self.decisions.decided(message.event_id)

    async def _ask(self, message: Any) -> Any:
        try:
            return await self.coordinator.ask(message, timeout=self.ask_timeout)
        except OverloadedError as exc:
            raise HandlerBusy(str(exc), exc.retry_after) from exc
        except (MailboxFull, AskTimeout, ActorStopped, StoreUnavailable) as exc:
            raise HandlerBusy(str(exc)) from exc

    async def _deliver(self, message: BusMessage, saga_id: str) -> None:
        command = DeliverEvent(
            saga_id=saga_id,
            event_id=message.event_id,
            event_type=message.event_type,
            data=message.data,
        )
        try:
            answer = await self._ask(command)
        except CommandPending as pending:  # durable: the owner (or its successor) applies it
            self.stats.delivered += 1
            log.info("event %s for saga %s is pending at its owner: %s", message.event_id,
                     saga_id, pending)  # fmt: skip
            return
        except (SagaNotFound, SagaStateConflict) as exc:
            self.stats.dropped += 1
            self._log.info(  # a replay of old replies would log each: throttled
                "event %s (%s) for saga %s dropped: %s",
                message.event_id,
                message.event_type,
                saga_id,
                exc,
                key=("dropped", message.event_type, type(exc)),
            )
            return
        self.stats.delivered += 1
        log.debug("event %s delivered to saga %s: %s", message.event_id, saga_id, answer)

    async def _start(self, message: BusMessage, definition: SagaDefinition) -> None:
        correlation_id = message.metadata.get("correlation_id")
        command = StartSaga(
            saga_type=definition.name,
            data=_input_of(definition, message.data),
            idempotency_key=trigger_key(message.event_id, definition.name),
            correlation_id=correlation_id if isinstance(correlation_id, str) else message.event_id,
            trigger_event_id=message.event_id,
        )
        try:
            result: StartResult = await self._ask(command)
        except ValidationError as exc:
            details = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in exc.errors)
            raise RejectMessage(
                f"event {message.event_id} cannot start a {definition.name} saga: {exc}"
                + (f" ({details})" if details else "")
            ) from exc
        except DuplicateIdempotencyKey:  # the key names its saga type: only by hand
            self.stats.repeated += 1
            return
        if result.created:
            self.stats.started += 1
            log.info(
                "event %s (%s) started saga %s (%s)",
                message.event_id,
                message.event_type,
                result.saga.saga_id,
                definition.name,
            )
        else:
            self.stats.repeated += 1


async def start_router(
    system: ActorSystem,
    bus: EventBus,
    coordinator: ActorRef[Any],
    catalog: SagaCatalog,
    options: ConsumerOptions,
    *,
    ask_timeout: float = ROUTER_ASK_TIMEOUT,
    decisions: TriggerDecisions | None = None,
) -> EventRouter:
    """Spawn the router as the permanent actor ``router`` of ``system``; it tells
    ``decisions`` each trigger event it has handled."""
    router = EventRouter(coordinator, catalog, ask_timeout=ask_timeout, decisions=decisions)
    body = partial(run_consumer, bus, options, router, router.consumer_stats)

    async def behaviour(
        mailbox: Mailbox[Any], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await run_loop_actor(mailbox, body, task_status=task_status)

    await system.spawn("router", behaviour, capacity=1)
    return router
