"""The coordinator actor: starts sagas, routes cancel and retry, admits, recovers, supervises.

Each running saga is a :class:`~.saga_actor.SagaActor` under the coordinator's ``sagas``
supervisor (one-for-one, transient). A saga actor that crashes is restarted from its durable
history; one that crashes more than ``crash_restarts`` times within ``crash_period`` is parked
with status ``failed`` and the error recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import attrs
import trio

from saga_orchestrator.actors import (
    ActorRef,
    ActorStopped,
    ActorSystem,
    Envelope,
    Mailbox,
    Restart,
    Supervisor,
)
from saga_orchestrator.errors import (
    DuplicateIdempotencyKey,
    OverloadedError,
    SagaNotFound,
    SagaOrchestratorError,
    SagaStateConflict,
    StoreRejected,
    UnknownSagaType,
    find_error,
)
from saga_orchestrator.store import ACTIVE_STATUSES, AppendRequest, SagaRecord, Store, new_id
from saga_orchestrator.store.retry import retry_unavailable

from . import decide as core
from . import state as sm
from .catalog import SagaCatalog
from .clock import Clock, WallClock
from .definition import SagaDefinition
from .messages import (
    CancelSaga,
    CoordinatorStatus,
    DeliverEvent,
    GetStatus,
    RetrySaga,
    StartResult,
    StartSaga,
)
from .observer import SagaObserver, notify
from .options import EngineOptions, shape_of
from .projection import stream_id
from .recording import append_request, commit, load_state
from .saga_actor import Creation, SagaActor
from .transitions import SagaParked, SagaStarted, from_record

log = logging.getLogger(__name__)

T = TypeVar("T")

PARKED_STATUSES = tuple(status.value for status in sm.PARKED)
RECOVERY_BATCH = 500
"""Sagas whose histories recovery reads in one query."""
SAGA_ASK_TIMEOUT = 5.0
"""Seconds the coordinator waits for a saga actor to answer cancel or retry."""


@attrs.define(eq=False)
class Coordinator:
    """The coordinator's state; :meth:`run` is the actor body."""

    catalog: SagaCatalog
    store: Store
    options: EngineOptions = attrs.field(factory=EngineOptions)
    clock: Clock = attrs.field(factory=WallClock)
    resources: Mapping[str, Any] = attrs.field(factory=dict)
    observer: SagaObserver = attrs.field(factory=SagaObserver)
    ready: trio.Event = attrs.field(factory=trio.Event)
    """Set once the sagas found in the store at start-up have been resumed."""
    _actors: dict[str, ActorRef[Any]] = attrs.field(factory=dict)
    _starting: int = 0
    _keys_in_flight: dict[str, trio.Event] = attrs.field(factory=dict)
    _spawning: dict[str, trio.Event] = attrs.field(factory=dict)
    _recovered_sagas: int = 0
    _shapes: dict[str, sm.SagaShape] = attrs.field(factory=dict)
    _nursery: trio.Nursery | None = None
    _sagas: Supervisor | None = None
    _mailbox: Mailbox[Any] | None = None

    @property
    def active_sagas(self) -> int:
        return len(self._actors) + self._starting

    @property
    def mailbox_depth(self) -> int:
        """Messages waiting in the coordinator's mailbox."""
        return self._mailbox.depth if self._mailbox is not None else 0

    async def run(
        self,
        mailbox: Mailbox[Any],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._actors.clear()
        self._starting = 0
        self._mailbox = mailbox
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._sagas = Supervisor("sagas", shutdown_grace=0)
            await nursery.start(self._sagas.run)
            nursery.start_soon(self._recover)
            task_status.started()
            async for envelope in mailbox:
                self._dispatch(envelope)
            nursery.cancel_scope.cancel()

    def _shape(self, definition: SagaDefinition) -> sm.SagaShape:
        shape = self._shapes.get(definition.name)
        if shape is None:
            shape = self._shapes[definition.name] = shape_of(definition, self.options)
        return shape

    def _dispatch(self, envelope: Envelope[Any]) -> None:
        assert self._nursery is not None
        match envelope.message:
            case StartSaga() as message:
                try:
                    definition = self.catalog.get(message.saga_type)
                    parsed = definition.parse_input(message.data)
                except Exception as exc:
                    envelope.respond_error(exc)
                    return
                if message.idempotency_key is None or message.key_is_new:
                    self._start_new(envelope, definition, parsed)
                    return
                self._nursery.start_soon(self._start, envelope, definition, parsed)
            case CancelSaga() | RetrySaga() | DeliverEvent():
                self._nursery.start_soon(self._forward, envelope)
            case GetStatus():
                envelope.respond(self._status())
            case other:
                envelope.respond_error(TypeError(f"coordinator cannot handle {other!r}"))

    def _admit(self) -> None:
        """Count one more starting saga, or raise ``OverloadedError`` at the limit."""
        if self.active_sagas >= self.options.max_active_sagas:
            raise OverloadedError(
                f"{self.active_sagas} sagas are active, the limit is "
                f"{self.options.max_active_sagas}: retry later",
                retry_after=1.0,
            )
        self._starting += 1

    def _status(self) -> CoordinatorStatus:
        return CoordinatorStatus(
            active_sagas=self.active_sagas,
            max_active_sagas=self.options.max_active_sagas,
            recovered=self.ready.is_set(),
            recovered_sagas=self._recovered_sagas,
            mailbox_depth=self.mailbox_depth,
            saga_types=tuple(self.catalog.names()),
        )

    # -- start --------------------------------------------------------------------------------

    def _start_new(self, envelope: Envelope[Any], definition: SagaDefinition, parsed: Any) -> None:
        """Start a saga without an idempotency key, or with one made for this start
        (``key_is_new``: no saga holds it, it is recorded with the saga): its actor is spawned
        at once and makes the saga durable itself (its first append), then answers the start
        and runs it. No task of the coordinator's waits for that append."""
        try:
            self._admit()
        except OverloadedError as exc:
            envelope.respond_error(exc)
            return
        try:
            saga_id, append, request = self._new_saga(envelope.message, definition, parsed)
            creation = Creation(append, request, request.saga, envelope)  # type: ignore[arg-type]
            self._spawn_soon(saga_id, definition, state=append.after, creation=creation)
        except Exception as exc:
            if not isinstance(exc, SagaOrchestratorError):
                log.exception("starting a %s saga failed", definition.name)
            envelope.respond_error(exc)
        finally:
            self._starting -= 1  # counted in self._actors from now on

    async def _start(
        self, envelope: Envelope[Any], definition: SagaDefinition, parsed: Any
    ) -> None:
        """Start a saga with an idempotency key: admitted only once the key is known to be new
        (a repeat returns the existing saga even at the admission limit)."""
        message: StartSaga = envelope.message
        key = message.idempotency_key
        assert key is not None
        admitted = False
        try:
            while key in self._keys_in_flight:  # one start per key at a time in this process
                await self._keys_in_flight[key].wait()
            done = self._keys_in_flight[key] = trio.Event()
            try:
                existing = await self.store.find_saga_by_key(key)
                if existing is not None:
                    envelope.respond(self._repeat(existing, definition, key))
                else:
                    self._admit()
                    admitted = True
                    envelope.respond(await self._create(message, definition, parsed))
            finally:
                del self._keys_in_flight[key]
                done.set()
        except Exception as exc:
            if not isinstance(exc, SagaOrchestratorError):
                log.exception("starting a %s saga failed", message.saga_type)
            envelope.respond_error(exc)
        finally:
            if admitted:
                self._starting -= 1

    @staticmethod
    def _repeat(existing: SagaRecord, definition: SagaDefinition, key: str) -> StartResult:
        """The answer to a start whose key an existing saga holds."""
        if existing.saga_type != definition.name:
            raise DuplicateIdempotencyKey(key, existing.saga_id)
        return StartResult(saga=existing, created=False)

    def _new_saga(
        self, message: StartSaga, definition: SagaDefinition, parsed: Any
    ) -> tuple[str, core.Append, AppendRequest]:
        """A new saga's id, the append that creates it (``SagaStarted`` and the first
        ``StepStarted``: its actor then runs the first step at once), and its store request."""
        shape = self._shape(definition)
        saga_id = new_id()
        now = self.clock.now()
        started = SagaStarted(
            saga_id=saga_id,
            saga_type=definition.name,
            saga_version=definition.version,
            input=definition.dump_input(parsed),
            deadline_at=now + self.options.saga_timeout,
            idempotency_key=message.idempotency_key,
            correlation_id=message.correlation_id,
            at=now,
        )
        append = core.creation(shape, started, sm.initial_state(shape))
        request = append_request(saga_id, append, shape, self.options.lifecycle_topic, new=True)
        return saga_id, append, request

    async def _create(
        self, message: StartSaga, definition: SagaDefinition, parsed: Any
    ) -> StartResult:
        saga_id, append, request = self._new_saga(message, definition, parsed)
        try:
            await self.store.append(request)
        except DuplicateIdempotencyKey as duplicate:
            existing = await self.store.get_saga(duplicate.saga_id)
            if existing is None:
                raise
            return self._repeat(existing, definition, duplicate.idempotency_key)
        notify(self.observer, append.before, append.after, append.transitions)
        await self._spawn(saga_id, definition, state=append.after)
        assert request.saga is not None
        return StartResult(saga=request.saga, created=True)

    # -- saga actors --------------------------------------------------------------------------

    async def _spawn(
        self,
        saga_id: str,
        definition: SagaDefinition,
        *,
        state: sm.SagaState | None = None,
        retry: bool = False,
    ) -> ActorRef[Any]:
        """The saga's actor: started now, or the one already running or being started."""
        while saga_id in self._spawning:
            await self._spawning[saga_id].wait()
        ref = self._actors.get(saga_id)
        if ref is not None:
            return ref
        spawned = self._spawning[saga_id] = trio.Event()
        try:
            return await self._spawn_actor(saga_id, definition, state=state, retry=retry)
        finally:
            del self._spawning[saga_id]
            spawned.set()

    async def _spawn_actor(
        self,
        saga_id: str,
        definition: SagaDefinition,
        *,
        state: sm.SagaState | None,
        retry: bool,
    ) -> ActorRef[Any]:
        if state is not None and not retry:
            # A saga whose state is known: nothing to load, nothing to fail on its way up.
            ref = self._spawn_soon(saga_id, definition, state=state)
            await trio.lowlevel.checkpoint()
            return ref
        assert self._sagas is not None
        actor = self._actor(saga_id, definition, state=state, retry=retry)
        ref = await self._sagas.spawn(saga_id, actor.run, **self._child_options())
        self._actors[saga_id] = ref
        return ref

    def _spawn_soon(
        self,
        saga_id: str,
        definition: SagaDefinition,
        *,
        state: sm.SagaState,
        creation: Creation | None = None,
    ) -> ActorRef[Any]:
        """Spawn the actor of a saga whose state is known, without waiting for it to run."""
        assert self._sagas is not None
        actor = self._actor(saga_id, definition, state=state, creation=creation)
        ref = self._sagas.spawn_soon(saga_id, actor.run, **self._child_options())
        self._actors[saga_id] = ref
        return ref

    def _actor(
        self,
        saga_id: str,
        definition: SagaDefinition,
        *,
        state: sm.SagaState | None,
        retry: bool = False,
        creation: Creation | None = None,
    ) -> SagaActor:
        return SagaActor(
            saga_id=saga_id,
            definition=definition,
            shape=self._shape(definition),
            store=self.store,
            options=self.options,
            clock=self.clock,
            resources=self.resources,
            observer=self.observer,
            state=state,
            retry_requested=retry,
            creation=creation,
            on_end=self._actor_ended,
        )

    def _actor_ended(self, saga_id: str) -> None:
        self._actors.pop(saga_id, None)

    def _child_options(self) -> dict[str, Any]:
        return {
            "capacity": self.options.saga_mailbox_size,
            "restart": Restart.TRANSIENT,
            "max_restarts": self.options.crash_restarts,
            "period": self.options.crash_period,
            "on_give_up": self._give_up,
            "fatal": _rejected_by_the_store,
        }

    def _give_up(self, saga_id: str, error: BaseException) -> None:
        self._actors.pop(saga_id, None)
        assert self._nursery is not None
        self._nursery.start_soon(self._park, saga_id, error)

    async def _park(self, saga_id: str, error: BaseException) -> None:
        """Record that a saga's actor crashed too often (or hit an error no restart can fix),
        so an operator sees it and can retry it."""
        record = await self.store.get_saga(saga_id)
        if record is None:
            return
        definition = self.catalog.get(record.saga_type)
        shape = self._shape(definition)
        state = await retry_unavailable(
            lambda: load_state(self.store, shape, saga_id),
            doing=f"saga {saga_id} waits for the store to be parked",
            max_delay=self.options.store_retry_max,
            log=log,
        )
        if state.is_terminal or state.is_parked:
            return
        reason = _crash_reason(error)
        parked = SagaParked(error=reason, at=self.clock.now())
        append = core.Append((parked,), state, sm.evolve(state, parked))
        request = append_request(saga_id, append, shape, self.options.lifecycle_topic)
        if await commit(self.store, request, max_delay=self.options.store_retry_max):
            notify(self.observer, append.before, append.after, append.transitions)
            log.error("saga %s parked as failed: %s", saga_id, reason)

    # -- cancel and retry ---------------------------------------------------------------------

    async def _forward(self, envelope: Envelope[Any]) -> None:
        message = envelope.message
        try:
            envelope.respond(await self._ask_saga(message))
        except Exception as exc:
            envelope.respond_error(exc)

    async def _ask_saga(self, message: CancelSaga | RetrySaga | DeliverEvent) -> str:
        operation = {CancelSaga: "cancel", RetrySaga: "retry"}.get(
            type(message), "deliver an event to"
        )
        ref = self._actors.get(message.saga_id)
        if ref is None:
            record = await self._load(message.saga_id)
            parked = record.status in PARKED_STATUSES
            if operation == "retry" and parked:
                await self._spawn(message.saga_id, self.catalog.get(record.saga_type), retry=True)
                return (await self._load(message.saga_id)).status
            if record.status not in ACTIVE_STATUSES:
                raise SagaStateConflict(message.saga_id, record.status, operation)
            ref = await self._spawn(message.saga_id, self.catalog.get(record.saga_type))
        try:
            return await ref.ask(message, timeout=SAGA_ASK_TIMEOUT)
        except ActorStopped:
            record = await self._load(message.saga_id)
            raise SagaStateConflict(message.saga_id, record.status, operation) from None

    async def _load(self, saga_id: str) -> SagaRecord:
        record = await self.store.get_saga(saga_id)
        if record is None:
            raise SagaNotFound(saga_id)
        return record

    # -- recovery -----------------------------------------------------------------------------

    async def _recover(self) -> None:
        """Resume every saga that was active when the last process stopped: histories are read
        in bulk and replayed here, then every actor starts from its state (no read of its own).
        All are read before any is started, so the reads do not queue behind resumed sagas."""
        records = await self._read("list the active sagas", self.store.active_sagas)
        found: list[tuple[str, SagaDefinition, sm.SagaState]] = []
        for start in range(0, len(records), RECOVERY_BATCH):
            batch = records[start : start + RECOVERY_BATCH]
            ids = [stream_id(r.saga_id) for r in batch]
            histories = await self._read(
                "read saga histories", lambda ids=ids: self.store.read_streams(ids)
            )
            for record in batch:
                try:
                    definition = self.catalog.get(record.saga_type)
                except UnknownSagaType:
                    log.error(
                        "saga %s has unknown type %r: not resumed",
                        record.saga_id,
                        record.saga_type,
                    )
                    continue
                history = histories.get(stream_id(record.saga_id), [])
                state = sm.replay(
                    self._shape(definition), [from_record(e.event_type, e.data) for e in history]
                )
                found.append((record.saga_id, definition, state))
        resumed = 0
        for saga_id, definition, state in found:
            if saga_id in self._actors or saga_id in self._spawning:
                continue  # a cancel or a retry got there first and started it
            # Started without waiting for each to run: the service is ready sooner.
            self._spawn_soon(saga_id, definition, state=state)
            resumed += 1
        self._recovered_sagas = resumed
        log.info("recovery done: %d sagas resumed", resumed)
        self.ready.set()

    async def _read(self, doing: str, read: Callable[[], Awaitable[T]]) -> T:
        """``read()``, waiting while the store is unavailable."""
        return await retry_unavailable(
            read,
            doing=f"recovery waits for the store to {doing}",
            max_delay=self.options.store_retry_max,
            log=log,
        )


def _rejected_by_the_store(crash: BaseException) -> bool:
    """A crash no restart can fix: the store refuses the saga's next append for good."""
    return find_error(crash, StoreRejected) is not None


def _crash_reason(error: BaseException) -> str:
    """What an operator reads on a parked saga: the store's refusal, or the crash."""
    rejected = find_error(error, StoreRejected)
    if rejected is not None:
        return f"the store refused the saga's next transitions: {rejected}"
    return f"the saga's actor kept crashing: {error!r}"


async def start_coordinator(
    system: ActorSystem,
    catalog: SagaCatalog,
    store: Store,
    *,
    options: EngineOptions | None = None,
    clock: Clock | None = None,
    resources: Mapping[str, Any] | None = None,
    observer: SagaObserver | None = None,
) -> tuple[ActorRef[Any], Coordinator]:
    """Spawn the coordinator (a permanent child of the root supervisor)."""
    options = options or EngineOptions()
    coordinator = Coordinator(
        catalog=catalog,
        store=store,
        options=options,
        clock=clock or WallClock(),
        resources=resources or {},
        observer=observer or SagaObserver(),
    )
    ref = await system.spawn(
        "coordinator", coordinator.run, capacity=options.coordinator_mailbox_size
    )
    return ref, coordinator
