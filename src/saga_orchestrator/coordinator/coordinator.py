"""The coordinator actor: starts sagas, routes cancel, retry and deliveries to their actors,
admits, and owns this instance's sagas (claimed at start-up and from dead instances, released on
shutdown).

The saga actors run under :class:`~.saga_supervision.SagaSupervision`; which sagas this
instance drives is :class:`~.ownership.Ownership`'s business, on the instance's lease
(:class:`~.lease.InstanceLease`, whose heartbeat runs in the coordinator's nursery).

Near 500 lines: starting, routing and operator actions each check the saga against the same
running actors, admission and ownership; apart, each would reach into the others' state.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from saga_orchestrator.actors import ActorRef, ActorStopped, ActorSystem, Envelope, Mailbox
from saga_orchestrator.errors import (
    DuplicateIdempotencyKey,
    OverloadedError,
    SagaDefinitionMissing,
    SagaNotFound,
    SagaOrchestratorError,
    SagaOwnedElsewhere,
    SagaStateConflict,
    UnknownSagaType,
    UnknownSagaVersion,
)
from saga_orchestrator.store import ACTIVE_STATUSES, AppendRequest, SagaRecord, Store, new_id
from saga_orchestrator.store.records import Lease

from . import decide as core
from . import state as sm
from .catalog import SagaCatalog
from .clock import Clock, WallClock
from .definition import SagaDefinition
from .forwarding import Forwarding, ForwardingStats
from .lease import InstanceLease, LeaseStats
from .messages import (
    CancelSaga,
    CoordinatorStatus,
    DeliverEvent,
    GetStatus,
    OperateSaga,
    OperatorOutcome,
    RetrySaga,
    StartResult,
    StartSaga,
)
from .observer import SagaObserver, notify
from .operator import ACTIONS, Resume, Retry, merge_patch, transition_for
from .options import EngineOptions
from .ownership import Ownership
from .recording import append_request, load_state
from .saga_actor import Creation, OperatorAction
from .saga_supervision import SagaSupervision
from .transitions import SagaStarted

log = logging.getLogger(__name__)


PARKED_STATUSES = tuple(status.value for status in sm.PARKED)
SAGA_ASK_TIMEOUT = 5.0
"""Seconds the coordinator waits for a saga actor to answer cancel or retry."""
RELEASE_TIMEOUT = 5.0
"""Most seconds releasing this instance's sagas may take on shutdown."""


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
    """Set once the sagas this instance drives have been claimed and resumed at start-up."""
    lease: InstanceLease | None = None
    """This instance's membership; made from ``options`` when not given."""
    sagas: SagaSupervision | None = None
    ownership: Ownership | None = None
    forwarding: Forwarding | None = None
    _starting: int = 0
    _keys_in_flight: dict[str, trio.Event] = attrs.field(factory=dict)
    _nursery: trio.Nursery | None = None
    _mailbox: Mailbox[Any] | None = None

    @property
    def active_sagas(self) -> int:
        running = 0 if self.sagas is None else len(self.sagas.actors)
        return running + self._starting

    @property
    def mailbox_depth(self) -> int:
        """Messages waiting in the coordinator's mailbox."""
        return self._mailbox.depth if self._mailbox is not None else 0

    @property
    def instance_id(self) -> str:
        """This instance's id in the store (it changes when the lease is lost)."""
        return "" if self.lease is None else self.lease.instance_id

    async def run(
        self,
        mailbox: Mailbox[Any],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._starting = 0
        self._mailbox = mailbox
        self.ready = trio.Event()
        lease = self.lease = InstanceLease(
            store=self.store,
            name=self.options.instance_name,
            interval=self.options.heartbeat_interval,
            ttl=self.options.instance_ttl,
            on_lost=self._lease_lost,
            stats=self.lease.stats if self.lease is not None else LeaseStats(),
        )
        sagas = self.sagas = SagaSupervision(
            catalog=self.catalog,
            store=self.store,
            options=self.options,
            clock=self.clock,
            resources=self.resources,
            observer=self.observer,
            may_drive=lambda held: lease.holds and held.instance_id == lease.instance_id,
        )
        ownership = self.ownership = Ownership(
            store=self.store,
            lease=lease,
            sagas=sagas,
            options=self.options,
            capacity=lambda: self.options.max_active_sagas - self.active_sagas,
            claims=self.ownership.claims if self.ownership is not None else Counter(),
        )
        forwarding = self.forwarding = Forwarding(
            store=self.store,
            lease=lease,
            apply=lambda message: self._ask_saga(message, forward=False),
            wait=SAGA_ASK_TIMEOUT,
            stats=self.forwarding.stats if self.forwarding is not None else ForwardingStats(),
        )
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(lease.run)
                await sagas.open(nursery)
                nursery.start_soon(self._recover_then_fail_over, ownership)
                nursery.start_soon(forwarding.inbox)
                task_status.started()
                async for envelope in mailbox:
                    self._dispatch(envelope)
                nursery.cancel_scope.cancel()  # the saga actors stop here (shutdown)
        finally:
            # Hand-over: the sagas are stopped; free them for the other instances at once.
            with trio.CancelScope(shield=True), trio.move_on_after(RELEASE_TIMEOUT):
                try:
                    await lease.release()
                except Exception as exc:
                    log.warning("could not release this instance's sagas: %s", exc)

    async def _recover_then_fail_over(self, ownership: Ownership) -> None:
        await ownership.recover()
        self.ready.set()
        await ownership.failover()

    async def _lease_lost(self, instance_id: str) -> None:
        """This instance's lease is lost: stop every saga actor now (their steps are cut)
        before another instance may claim their sagas, and before this one registers again
        and claims (an actor of the new registration must not be stopped with the old ones);
        they are claimed again (by anyone) once the old registration has expired."""
        assert self.sagas is not None
        log.error("instance %s lost its lease: stopping its %d sagas", instance_id,
                  len(self.sagas.actors))  # fmt: skip
        await self.sagas.stop_all()

    def _dispatch(self, envelope: Envelope[Any]) -> None:
        assert self._nursery is not None
        match envelope.message:
            case StartSaga() as message:
                try:
                    definition = self.catalog.get(message.saga_type, message.version)
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
            case OperateSaga():
                self._nursery.start_soon(self._answer_operate, envelope)
            case GetStatus():
                envelope.respond(self._status())
            case other:
                envelope.respond_error(TypeError(f"coordinator cannot handle {other!r}"))

    def _admit(self) -> Lease:
        """Count one more starting saga, and the lease it is created with; raises
        ``OverloadedError`` at the limit, or while this instance holds no lease."""
        if self.lease is None or not self.lease.holds:
            raise OverloadedError(
                "this instance is not registered in the store (yet): retry later",
                retry_after=1.0,
            )
        if self.active_sagas >= self.options.max_active_sagas:
            raise OverloadedError(
                f"{self.active_sagas} sagas are active, the limit is "
                f"{self.options.max_active_sagas}: retry later",
                retry_after=1.0,
            )
        self._starting += 1
        return Lease(self.lease.instance_id, 1)

    def _status(self) -> CoordinatorStatus:
        return CoordinatorStatus(
            active_sagas=self.active_sagas,
            max_active_sagas=self.options.max_active_sagas,
            recovered=self.ready.is_set(),
            recovered_sagas=0 if self.ownership is None else self.ownership.recovered,
            mailbox_depth=self.mailbox_depth,
            saga_types=tuple(self.catalog.names()),
            instance_id=self.instance_id,
            lease_holds=self.lease is not None and self.lease.holds,
            live_instances=() if self.lease is None else self.lease.live,
            waiting_for_definition=()
            if self.ownership is None
            else tuple((t, v, n) for (t, v), n in sorted(self.ownership.waiting.items())),
        )

    # -- start --------------------------------------------------------------------------------

    def _start_new(self, envelope: Envelope[Any], definition: SagaDefinition, parsed: Any) -> None:
        """Start a saga without an idempotency key, or with one made for this start
        (``key_is_new``: no saga holds it, it is recorded with the saga): its actor is spawned
        at once and makes the saga durable itself (its first append), then answers the start
        and runs it. No task of the coordinator's waits for that append."""
        try:
            lease = self._admit()
        except OverloadedError as exc:
            envelope.respond_error(exc)
            return
        try:
            saga_id, append, request = self._new_saga(envelope.message, definition, parsed, lease)
            creation = Creation(append, request, request.saga, envelope)  # type: ignore[arg-type]
            assert self.sagas is not None
            self.sagas.spawn_soon(saga_id, definition, lease, state=append.after, creation=creation)
        except Exception as exc:
            if not isinstance(exc, SagaOrchestratorError):
                log.exception("starting a %s saga failed", definition.name)
            envelope.respond_error(exc)
        finally:
            self._starting -= 1  # counted in self.sagas.actors from now on

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
                    envelope.respond(self._repeat(existing, message, key))
                else:
                    lease = self._admit()
                    admitted = True
                    envelope.respond(await self._create(message, definition, parsed, lease))
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
    def _repeat(existing: SagaRecord, message: StartSaga, key: str) -> StartResult:
        """The answer to a start whose key an existing saga holds: that saga, unless it is of
        another type, or of another version than the one the start names (a start that names
        none repeats one made before a newer version was deployed)."""
        if existing.saga_type != message.saga_type or message.version not in (
            None,
            existing.saga_version,
        ):
            raise DuplicateIdempotencyKey(key, existing.saga_id)
        return StartResult(saga=existing, created=False)

    def _new_saga(
        self, message: StartSaga, definition: SagaDefinition, parsed: Any, lease: Lease
    ) -> tuple[str, core.Append, AppendRequest]:
        """A new saga's id, the append that creates it (``SagaStarted`` and the first
        ``StepStarted``: its actor then runs the first step at once), and its store request."""
        assert self.sagas is not None
        shape = self.sagas.shape(definition)
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
            trigger_event_id=message.trigger_event_id,
            at=now,
        )
        append = core.creation(shape, started, sm.initial_state(shape))
        request = append_request(
            saga_id, append, shape, self.options.lifecycle_topic, lease=lease, new=True
        )
        return saga_id, append, request

    async def _create(
        self, message: StartSaga, definition: SagaDefinition, parsed: Any, lease: Lease
    ) -> StartResult:
        saga_id, append, request = self._new_saga(message, definition, parsed, lease)
        try:
            await self.store.append(request)
        except DuplicateIdempotencyKey as duplicate:
            existing = await self.store.get_saga(duplicate.saga_id)
            if existing is None:
                raise
            return self._repeat(existing, message, duplicate.idempotency_key)
        notify(self.observer, append.before, append.after, append.transitions)
        assert self.sagas is not None
        try:
            await self.sagas.spawn(saga_id, definition, lease, state=append.after)
        except OverloadedError:  # the lease was lost meanwhile: an orphan, for any instance
            log.warning("saga %s was created as this instance lost its lease", saga_id)
        assert request.saga is not None
        return StartResult(saga=request.saga, created=True)

    # -- cancel, retry, deliver ---------------------------------------------------------------

    async def _forward(self, envelope: Envelope[Any]) -> None:
        message = envelope.message
        try:
            envelope.respond(await self._ask_saga(message))
        except Exception as exc:
            envelope.respond_error(exc)

    async def _ask_saga(
        self, message: CancelSaga | RetrySaga | DeliverEvent, *, forward: bool = True
    ) -> str:
        """Ask the saga's actor, started here if this instance may drive it; a cancel or a
        delivery for a saga another live instance drives goes to that instance (``forward``)."""
        operation = {CancelSaga: "cancel", RetrySaga: "retry"}.get(
            type(message), "deliver an event to"
        )
        assert self.sagas is not None and self.ownership is not None
        ref = self.sagas.actors.get(message.saga_id)
        if ref is None:
            record = await self._load(message.saga_id)
            if isinstance(message, RetrySaga) and record.status in PARKED_STATUSES:
                retried = OperateSaga(
                    saga_id=message.saga_id, action=Retry(), by=message.by, reason=message.reason
                )
                return (await self._operate(retried)).status
            if record.status not in ACTIVE_STATUSES or isinstance(message, RetrySaga):
                raise SagaStateConflict(message.saga_id, record.status, operation)
            loaded = (record.saga_type, record.saga_version) in self.catalog.loaded()
            lease = await self.ownership.claim_one(message.saga_id, force=False) if loaded else None
            if lease is None:
                owner, _, live = await self.store.saga_owner(message.saga_id)
                if forward and live and self.forwarding is not None:
                    return await self.forwarding.send(message, owner)
                if not live:  # no instance drives it, and this one cannot
                    self._definition_of(record)
                raise SagaOwnedElsewhere(message.saga_id, owner)
            definition = self._definition_of(record)
            ref = await self.sagas.spawn(message.saga_id, definition, lease)
        try:
            return await ref.ask(message, timeout=SAGA_ASK_TIMEOUT)
        except ActorStopped:
            record = await self._load(message.saga_id)
            if isinstance(message, RetrySaga) and record.status in PARKED_STATUSES:
                return await self._ask_saga(message, forward=forward)  # it parked meanwhile
            raise SagaStateConflict(message.saga_id, record.status, operation) from None
        except SagaStateConflict as conflict:
            # The actor had just parked the saga and was ending: an operator's retry is
            # taken from the store now, like for any parked saga.
            if (
                isinstance(message, RetrySaga)
                and conflict.status in PARKED_STATUSES
                and not self.sagas.busy(message.saga_id)
            ):
                return await self._ask_saga(message, forward=forward)
            raise

    # -- operator actions ---------------------------------------------------------------------

    async def _answer_operate(self, envelope: Envelope[Any]) -> None:
        try:
            envelope.respond(await self._operate(envelope.message))
        except Exception as exc:
            if not isinstance(exc, SagaOrchestratorError):
                log.exception("an operator action on saga %s failed", envelope.message.saga_id)
            envelope.respond_error(exc)

    async def _operate(self, message: OperateSaga) -> OperatorOutcome:
        """Check the action against the saga as it is, then (unless a dry run) claim the
        parked saga and start its actor with the action as its first append."""
        assert self.sagas is not None and self.ownership is not None
        saga_id = message.saga_id
        record = await self._load(saga_id)
        definition = self._definition_of(record)
        shape = self.sagas.shape(definition)
        operation = ACTIONS[type(message.action)]
        if record.status in PARKED_STATUSES and self.sagas.busy(saga_id):
            # its actor here has just parked it and is ending (or another action runs)
            with trio.move_on_after(SAGA_ASK_TIMEOUT / 5):
                await self.sagas.wait_ended(saga_id)
                record = await self._load(saga_id)
        if self.sagas.busy(saga_id) or record.status not in PARKED_STATUSES:
            raise SagaStateConflict(
                saga_id,
                record.status,
                operation,
                detail="only a parked saga (failed or compensation_failed) takes operator actions",
            )
        state = await load_state(self.store, shape, saga_id)
        action = message.action
        if isinstance(action, Resume):  # the patch, applied and checked like a start's input
            patched = merge_patch(state.input, action.input)
            action = Resume(
                action.from_step, definition.dump_input(definition.parse_input(patched))
            )
        now = self.clock.now()
        transition = transition_for(
            state,
            shape,
            action,
            by=message.by,
            reason=message.reason,
            now=now,
            saga_timeout=self.options.saga_timeout,
        )
        machine = core.Machine(saga=state, operator=(None, transition))
        (append,) = core.advance(machine, shape, now).commands
        assert isinstance(append, core.Append)
        names = tuple(type(t).__name__ for t in append.transitions)
        if message.dry_run:
            return OperatorOutcome(
                saga_id=saga_id, status=append.after.status.value, dry_run=True, transitions=names
            )
        lease = await self.ownership.claim_one(saga_id, force=True)
        if lease is None:
            raise OverloadedError(
                "this instance is not registered in the store (yet): retry later",
                retry_after=1.0,
            )
        if self.sagas.busy(saga_id):
            # another action was checked and claimed meanwhile and its actor runs: this one
            # was not taken (checked and spawned with no checkpoint between them)
            raise SagaStateConflict(
                saga_id, record.status, operation, detail="another operator action came first"
            )
        taken = OperatorAction(transition)
        await self.sagas.spawn(saga_id, definition, lease, operator=taken)
        after = await self._load(saga_id)
        if not taken.recorded:  # the saga was no longer parked when its actor loaded it
            raise SagaStateConflict(
                saga_id, after.status, operation, detail="another operator action came first"
            )
        return OperatorOutcome(
            saga_id=saga_id, status=after.status, dry_run=False, transitions=names
        )

    def _definition_of(self, record: SagaRecord) -> SagaDefinition:
        """The definition version ``record`` runs on; raises ``SagaDefinitionMissing`` when
        this process has not loaded it."""
        try:
            return self.catalog.get(record.saga_type, record.saga_version)
        except (UnknownSagaType, UnknownSagaVersion):
            raise SagaDefinitionMissing(
                record.saga_id, record.saga_type, record.saga_version
            ) from None

    async def _load(self, saga_id: str) -> SagaRecord:
        record = await self.store.get_saga(saga_id)
        if record is None:
            raise SagaNotFound(saga_id)
        return record


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
