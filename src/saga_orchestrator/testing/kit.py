"""``SagaTestKit``: run saga definitions in-process on the memory store, fake their steps,
crash and resume them, cancel them, reply to them, and read what happened.

    async def test_a_failed_charge_deletes_the_account(autojump_clock):
        async with SagaTestKit(OPEN_ACCOUNT, actions={
            "create_account": succeed({"account_id": "a-1"}),
            "charge": fail(NonRetryableError("card declined")),
        }) as kit:
            saga_id = await kit.start({"user_id": "u-1"})
            record = await kit.wait(saga_id)
        assert record.status == "compensated"
        assert kit.compensated(saga_id) == ["create_account"]

The engine is the service's own (coordinator, saga actors, store actor) on the memory backend,
with trio's clock as its wall clock: under ``MockClock`` (pytest-trio's ``autojump_clock``)
timeouts, backoffs and deadlines pass in virtual time, so a test runs in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import attrs
import trio

from saga_orchestrator.actors import ActorRef, open_actor_system
from saga_orchestrator.coordinator.catalog import SagaCatalog
from saga_orchestrator.coordinator.clock import TrioClock
from saga_orchestrator.coordinator.coordinator import Coordinator, start_coordinator
from saga_orchestrator.coordinator.definition import SagaDefinition
from saga_orchestrator.coordinator.messages import (
    CancelSaga,
    DeliverEvent,
    OperateSaga,
    OperatorOutcome,
    StartSaga,
)
from saga_orchestrator.coordinator.operator import Action
from saga_orchestrator.coordinator.options import EngineOptions
from saga_orchestrator.store.actor import start_store
from saga_orchestrator.store.records import SagaRecord, new_id

from .calls import CallLog
from .history import History
from .memory import CrashableBackend
from .outcomes import Outcome

__all__ = ["SagaTestKit"]

ENDED = frozenset({"completed", "compensated", "cancelled", "timed_out", "compensation_failed",
                   "failed"})  # fmt: skip
"""Statuses :meth:`SagaTestKit.wait` waits for by default: terminal, or parked."""


@attrs.frozen
class _CrashPoint:
    transition: str
    step: str | None
    saga_id: str | None

    def matches(self, saga_id: str, name: str, step: str | None) -> bool:
        return (
            name == self.transition
            and self.step in (None, step)
            and self.saga_id in (None, saga_id)
        )


class SagaTestKit:
    """An async context manager: the engine runs while it is open.

    Args:
        definitions: the saga definitions to run (one or more).
        actions: fake outcomes of steps' actions, by step name (see ``outcomes``); steps not
            named run their real code, with ``resources``.
        compensations: fake outcomes of steps' compensations, by step name.
        options: engine settings (timeouts, retries, backoffs); the service's defaults if
            ``None``.
        resources: what steps find in ``ctx.resources`` (the service's HTTP clients, say).
    """

    def __init__(
        self,
        *definitions: SagaDefinition,
        actions: Mapping[str, Outcome] | None = None,
        compensations: Mapping[str, Outcome] | None = None,
        options: EngineOptions | None = None,
        resources: Mapping[str, Any] | None = None,
    ) -> None:
        if not definitions:
            raise ValueError("SagaTestKit needs at least one saga definition")
        self.calls = CallLog()
        """Every action and compensation attempt, real or faked, in the order they began."""
        self.definitions = _faked(self.calls, definitions, actions or {}, compensations or {})
        self.options = options or EngineOptions()
        self.resources = dict(resources or {})
        self.clock = TrioClock()
        self.backend = CrashableBackend(clock=self.clock.now)
        """The memory store every engine of this kit writes to (a crash keeps it)."""
        self.history = History({d.name: d for d in self.definitions})
        self.restarts = 0
        """How many times the engine crashed and was started again on the same store."""
        self._crash_points: list[_CrashPoint] = []
        self._crashed = trio.Event()
        self._stopping = False
        self._engine: tuple[ActorRef[Any], Coordinator] | None = None
        self._ready = trio.Event()
        self._restarted = trio.Event()
        self._stack = AsyncExitStack()
        self.history.on_recorded = self._check_crash

    # ---- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> SagaTestKit:
        nursery = await self._stack.enter_async_context(trio.open_nursery())
        await nursery.start(self._run_engines)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._stopping = True
        self._crashed.set()  # wakes the engine loop, which then shuts the engine down
        return await self._stack.__aexit__(exc_type, exc, tb)

    async def _run_engines(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        started = False
        while not self._stopping:
            with trio.CancelScope() as scope:
                async with open_actor_system(shutdown_grace=1.0) as system:
                    store = await start_store(system, self.backend)
                    ref, coordinator = await start_coordinator(
                        system,
                        SagaCatalog(self.definitions),
                        store,
                        options=self.options,
                        clock=self.clock,
                        resources=self.resources,
                        observer=self.history,
                    )
                    await coordinator.ready.wait()
                    self._engine = (ref, coordinator)
                    self._ready.set()
                    if not started:
                        started = True
                        task_status.started()
                    await self._crashed.wait()
                    if not self._stopping:
                        scope.cancel()  # a crash: this engine does nothing more, not even stop
            if self._stopping:
                return
            # The next engine takes the dead one's sagas over at once, as it would once the
            # dead instance's lease expired.
            await self.backend.deregister_instance(coordinator.instance_id)
            self.backend.thaw()
            self.restarts += 1
            self._crashed = trio.Event()
            restarted, self._restarted = self._restarted, trio.Event()
            restarted.set()

    async def _ref(self) -> ActorRef[Any]:
        await self._ready.wait()
        assert self._engine is not None
        return self._engine[0]

    # ---- driving sagas ------------------------------------------------------------------

    async def start(
        self,
        data: Mapping[str, Any],
        *,
        saga_type: str | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> str:
        """Start a saga with input ``data`` and return its id. ``saga_type`` may be left out
        when the kit runs one definition. Raises the service's errors (``ValidationError`` for
        input that does not fit the input type, ``IdempotencyConflict``, ...)."""
        if saga_type is None:
            if len(self.definitions) != 1:
                names = ", ".join(d.name for d in self.definitions)
                raise ValueError(f"name the saga_type: this kit runs {names}")
            saga_type = self.definitions[0].name
        message = StartSaga(
            saga_type=saga_type,
            data=dict(data),
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )
        result = await (await self._ref()).ask(message)
        return result.saga.saga_id

    async def cancel(self, saga_id: str, reason: str = "cancelled by a test") -> SagaRecord:
        """Cancel the saga as ``POST /sagas/{id}/cancel`` does: its running step is interrupted
        and its completed steps compensated. Raises ``SagaStateConflict`` if it has ended."""
        return await (await self._ref()).ask(CancelSaga(saga_id=saga_id, reason=reason))

    async def deliver(
        self,
        saga_id: str,
        event_type: str,
        data: Mapping[str, Any] | None = None,
        *,
        event_id: str | None = None,
    ) -> None:
        """Deliver a reply event to the saga's reply-driven step (as the router would)."""
        message = DeliverEvent(
            saga_id=saga_id,
            event_id=event_id or new_id(),
            event_type=event_type,
            data=dict(data or {}),
        )
        await (await self._ref()).ask(message)

    async def operate(
        self, saga_id: str, action: Action, *, reason: str = "a test", dry_run: bool = False
    ) -> OperatorOutcome:
        """Take an operator action (``Retry``, ``Resolve``, ``SkipCompensation``, ``Resume``
        from :mod:`saga_orchestrator.coordinator.operator`) on a parked saga, recorded as by
        ``"test"``."""
        message = OperateSaga(saga_id=saga_id, action=action, by="test", reason=reason,
                              dry_run=dry_run)  # fmt: skip
        return await (await self._ref()).ask(message)

    # ---- crashes ------------------------------------------------------------------------

    def crash_after(
        self, transition: str, *, step: str | None = None, saga_id: str | None = None
    ) -> None:
        """Crash the engine right after the next ``transition`` (a name such as
        ``"StepStarted"``; of ``step`` and of ``saga_id`` when given) is durable: nothing
        more is recorded, then a new engine starts on the same store and resumes the saga from
        its history, as after a crash of the process. One crash per call."""
        names = {step.name for d in self.definitions for step in d.steps}
        if step is not None and step not in names:
            raise ValueError(f"no saga of this kit has a step {step!r}")
        self._crash_points.append(_CrashPoint(transition, step, saga_id))

    async def crash(self) -> None:
        """Crash the engine now and wait until a new one has resumed the sagas."""
        restarted = self._restarted
        self._crash_now()
        await restarted.wait()
        await self._ready.wait()

    def _check_crash(self, saga_id: str, name: str, step: str | None) -> None:
        for point in self._crash_points:
            if point.matches(saga_id, name, step):
                self._crash_points.remove(point)
                self._crash_now()
                return

    def _crash_now(self) -> None:
        """Nothing more becomes durable; whoever asks the engine from now on waits for the
        next one."""
        self.backend.freeze()
        self._ready = trio.Event()
        self._crashed.set()

    # ---- reading what happened -----------------------------------------------------------

    async def wait(
        self, saga_id: str, *, statuses: Iterable[str] = ENDED, within: float = 3600.0
    ) -> SagaRecord:
        """Wait until the saga's status is one of ``statuses`` (terminal or parked by
        default) and return its record. Raises ``trio.TooSlowError`` after ``within`` seconds
        (virtual ones under ``MockClock``), naming where the saga is."""
        wanted = frozenset(statuses)
        await self.history.wait(
            lambda: self.history.status(saga_id) in wanted,
            within,
            lambda: (
                f"saga {saga_id} is {self.history.status(saga_id)}, not one of "
                f"{sorted(wanted)}; its history: {self.history.trace(saga_id)}"
            ),
        )
        await self._ready.wait()
        record = await self.backend.get_saga(saga_id)
        assert record is not None
        return record

    async def wait_for(
        self, saga_id: str, transition: str, *, step: str | None = None, within: float = 3600.0
    ) -> None:
        """Wait until ``transition`` (of ``step`` when given) is durable for the saga."""
        await self.history.wait(
            lambda: self.history.count(saga_id, transition, step) > 0,
            within,
            lambda: (
                f"saga {saga_id} recorded no {transition}"
                + (f" of step {step!r}" if step else "")
                + f"; its history: {self.history.trace(saga_id)}"
            ),
        )

    def trace(self, saga_id: str) -> list[str]:
        """The saga's transitions in order, each as ``"<name>"`` or ``"<name> <step>"``:
        ``["SagaStarted", "StepStarted create_account", "StepCompleted create_account", …]``."""
        return self.history.trace(saga_id)

    def transitions(self, saga_id: str) -> Sequence[Any]:
        """The saga's transitions in order, as the engine recorded them."""
        return self.history.transitions(saga_id)

    def compensated(self, saga_id: str) -> list[str]:
        """The steps whose compensation completed, in the order they did."""
        return [line.split(" ", 1)[1] for line in self.trace(saga_id)
                if line.startswith("CompensationCompleted ")]  # fmt: skip


def _faked(
    calls: CallLog,
    definitions: Sequence[SagaDefinition],
    actions: Mapping[str, Outcome],
    compensations: Mapping[str, Outcome],
) -> list[SagaDefinition]:
    steps = {step.name for d in definitions for step in d.steps}
    unknown = [name for name in (*actions, *compensations) if name not in steps]
    if unknown:
        raise ValueError(f"no saga of this kit has a step {unknown[0]!r} (steps: "
                         f"{', '.join(sorted(steps))})")  # fmt: skip
    out = []
    for definition in definitions:
        own = {s.name for s in definition.steps}
        out.append(calls.wrap(
            definition,
            {k: v for k, v in actions.items() if k in own},
            {k: v for k, v in compensations.items() if k in own},
        ))  # fmt: skip
    return out
