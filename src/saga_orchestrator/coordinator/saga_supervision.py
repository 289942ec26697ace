"""The coordinator's saga actors: spawned under one supervisor, each with its lease, parked
when they crash too often, and all stopped at once when this instance's lease is lost.

Each running saga is a :class:`~.saga_actor.SagaActor` under the ``sagas`` supervisor
(one-for-one, transient). A saga actor that crashes is restarted from its durable history; one
that crashes more than ``crash_restarts`` times within ``crash_period`` (or whose append the
store refuses for good) is parked with status ``failed`` and the reason recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from saga_orchestrator.actors import ActorRef, Restart, Supervisor
from saga_orchestrator.errors import OverloadedError, StoreRejected, find_error
from saga_orchestrator.store import Store
from saga_orchestrator.store.records import Lease
from saga_orchestrator.store.retry import retry_unavailable

from . import decide as core
from . import state as sm
from .catalog import SagaCatalog
from .clock import Clock
from .definition import SagaDefinition
from .observer import SagaObserver, notify
from .options import EngineOptions, shape_of
from .recording import append_request, commit, load_state
from .saga_actor import Creation, OperatorAction, SagaActor
from .transitions import SagaParked

__all__ = ["SagaSupervision"]

log = logging.getLogger(__name__)


@attrs.define(eq=False)
class SagaSupervision:
    """The running saga actors of this process, by saga id, with their leases."""

    catalog: SagaCatalog
    store: Store
    options: EngineOptions
    clock: Clock
    resources: Mapping[str, Any]
    observer: SagaObserver
    may_drive: Callable[[Lease], bool] = attrs.field(default=lambda lease: True)
    """Whether a saga may be driven under ``lease`` now: this instance's current registration,
    whose leases hold. No actor starts under any other (one claimed before the lease was lost,
    or while the leases lapse, would run steps of a saga another instance may own)."""
    actors: dict[str, ActorRef[Any]] = attrs.field(factory=dict)
    leases: dict[str, Lease] = attrs.field(factory=dict)
    _spawning: dict[str, trio.Event] = attrs.field(factory=dict)
    _ends: dict[str, trio.Event] = attrs.field(factory=dict)
    _shapes: dict[tuple[str, int], sm.SagaShape] = attrs.field(factory=dict)
    _nursery: trio.Nursery | None = None
    _supervisor: Supervisor | None = None
    _scope: trio.CancelScope | None = None

    async def open(self, nursery: trio.Nursery) -> None:
        """Start the ``sagas`` supervisor in ``nursery`` (again after :meth:`stop_all`)."""
        self._nursery = nursery
        self._scope = trio.CancelScope()
        supervisor = self._supervisor = Supervisor("sagas", shutdown_grace=0)

        async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with self._scope:  # type: ignore[union-attr]
                await supervisor.run(task_status=task_status)

        await nursery.start(run)

    async def stop_all(self) -> None:
        """Stop every saga actor at once (their running steps are cut) and forget them: this
        instance lost its lease, so their sagas may be another's soon. New ones may be spawned
        after."""
        if self._scope is not None:
            self._scope.cancel()
        self.actors.clear()
        self.leases.clear()
        for end in self._ends.values():
            end.set()
        self._ends.clear()
        assert self._nursery is not None
        await self.open(self._nursery)

    def shape(self, definition: SagaDefinition) -> sm.SagaShape:
        key = (definition.name, definition.version)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = shape_of(definition, self.options)
        return shape

    def busy(self, saga_id: str) -> bool:
        """Whether the saga has an actor here, running or being started."""
        return saga_id in self.actors or saga_id in self._spawning

    async def wait_ended(self, saga_id: str) -> None:
        """Wait until the saga has no actor here (one that has just parked its saga is about
        to end); bound the wait with a cancel scope."""
        while saga_id in self.actors or saga_id in self._spawning:
            if saga_id in self._spawning:
                await self._spawning[saga_id].wait()
            else:
                await self._ends.setdefault(saga_id, trio.Event()).wait()
        await trio.lowlevel.checkpoint()

    # -- spawning -----------------------------------------------------------------------------

    async def spawn(
        self,
        saga_id: str,
        definition: SagaDefinition,
        lease: Lease,
        *,
        state: sm.SagaState | None = None,
        operator: OperatorAction | None = None,
    ) -> ActorRef[Any]:
        """The saga's actor: started now, or the one already running or being started. With
        ``operator`` (an operator's action on the parked saga) it returns once that action is
        durable. Raises ``OverloadedError`` when ``lease`` may not drive sagas now."""
        while saga_id in self._spawning:
            await self._spawning[saga_id].wait()
        ref = self.actors.get(saga_id)
        if ref is not None:
            return ref
        self._check(lease)
        spawned = self._spawning[saga_id] = trio.Event()
        try:
            if state is not None and operator is None:
                # A saga whose state is known: nothing to load, nothing to fail on its way up.
                ref = self.spawn_soon(saga_id, definition, lease, state=state)
                await trio.lowlevel.checkpoint()
                return ref
            assert self._supervisor is not None
            actor = self._actor(saga_id, definition, lease, state=state, operator=operator)
            ref = await self._supervisor.spawn(saga_id, actor.run, **self._child_options())
            self.actors[saga_id], self.leases[saga_id] = ref, lease
            return ref
        finally:
            del self._spawning[saga_id]
            spawned.set()

    def spawn_soon(
        self,
        saga_id: str,
        definition: SagaDefinition,
        lease: Lease,
        *,
        state: sm.SagaState,
        creation: Creation | None = None,
    ) -> ActorRef[Any]:
        """Spawn the actor of a saga whose state is known, without waiting for it to run.
        Raises ``OverloadedError`` when ``lease`` may not drive sagas now."""
        self._check(lease)
        assert self._supervisor is not None
        actor = self._actor(saga_id, definition, lease, state=state, creation=creation)
        ref = self._supervisor.spawn_soon(saga_id, actor.run, **self._child_options())
        self.actors[saga_id], self.leases[saga_id] = ref, lease
        return ref

    def _check(self, lease: Lease) -> None:
        if not self.may_drive(lease):
            raise OverloadedError(
                f"instance {lease.instance_id} does not hold its leases now: retry later",
                retry_after=1.0,
            )

    def _actor(
        self,
        saga_id: str,
        definition: SagaDefinition,
        lease: Lease,
        *,
        state: sm.SagaState | None,
        operator: OperatorAction | None = None,
        creation: Creation | None = None,
    ) -> SagaActor:
        return SagaActor(
            saga_id=saga_id,
            definition=definition,
            shape=self.shape(definition),
            store=self.store,
            options=self.options,
            clock=self.clock,
            lease=lease,
            resources=self.resources,
            observer=self.observer,
            state=state,
            operator=operator,
            creation=creation,
            on_end=self._ended,
        )

    def _ended(self, saga_id: str) -> None:
        self.actors.pop(saga_id, None)
        self.leases.pop(saga_id, None)
        end = self._ends.pop(saga_id, None)
        if end is not None:
            end.set()

    def _child_options(self) -> dict[str, Any]:
        return {
            "capacity": self.options.saga_mailbox_size,
            "restart": Restart.TRANSIENT,
            "max_restarts": self.options.crash_restarts,
            "period": self.options.crash_period,
            "on_give_up": self._give_up,
            "fatal": _rejected_by_the_store,
        }

    # -- giving up ----------------------------------------------------------------------------

    def _give_up(self, saga_id: str, error: BaseException) -> None:
        self.actors.pop(saga_id, None)
        lease = self.leases.pop(saga_id, None)
        assert self._nursery is not None
        if lease is not None:
            self._nursery.start_soon(self._park, saga_id, lease, error)

    async def _park(self, saga_id: str, lease: Lease, error: BaseException) -> None:
        """Record that a saga's actor crashed too often (or hit an error no restart can fix),
        so an operator sees it and can retry it. Fenced like every append of the saga: if it
        is another instance's now, nothing is recorded."""
        record = await self.store.get_saga(saga_id)
        if record is None:
            return
        shape = self.shape(self.catalog.get(record.saga_type, record.saga_version))
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
        request = append_request(saga_id, append, shape, self.options.lifecycle_topic, lease=lease)
        if await commit(self.store, request, max_delay=self.options.store_retry_max):
            notify(self.observer, append.before, append.after, append.transitions)
            log.error("saga %s parked as failed: %s", saga_id, reason)


def _rejected_by_the_store(crash: BaseException) -> bool:
    """A crash no restart can fix: the store refuses the saga's next append for good."""
    return find_error(crash, StoreRejected) is not None


def _crash_reason(error: BaseException) -> str:
    """What an operator reads on a parked saga: the store's refusal, or the crash."""
    rejected = find_error(error, StoreRejected)
    if rejected is not None:
        return f"the store refused the saga's next transitions: {rejected}"
    return f"the saga's actor kept crashing: {error!r}"
