"""The saga actor: executes what the decision core (:mod:`.decide`) decides for one saga.

The actor's task loops: ask the core what to do now (:func:`~.decide.advance`), do it (an
append through :mod:`.recording`, one at a time; an attempt through :mod:`.step_runner`), and
wait until something happens or the time the core asked to be woken at. Messages (cancel, retry,
an event delivered to the saga) are handled as they are sent, in the sender's task: they go to
the core (:func:`~.decide.take`), whose answers (answer now, cut the running step short, or
leave a delivery waiting in the bounded mailbox) are executed at once, then the actor's task is
woken. Each attempt runs in a task of its own in the actor's nursery (several at once in a
parallel group) and reports how it ended to the core, waking the actor's task, which records
while attempts run. Nothing here decides what happens to the saga.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from saga_orchestrator.actors import Envelope, Mailbox
from saga_orchestrator.errors import SagaOrchestratorError, SagaStateConflict
from saga_orchestrator.logging_setup import bind_log_context
from saga_orchestrator.store import AppendRequest, SagaRecord, Store
from saga_orchestrator.store.records import Lease
from saga_orchestrator.store.retry import retry_unavailable

from . import decide as core
from .clock import Clock
from .definition import SagaDefinition
from .messages import CancelSaga, DeliverEvent, RetrySaga, StartResult
from .observer import SagaObserver, notify
from .options import EngineOptions
from .recording import append_request, commit, load_state
from .state import SagaShape, SagaState
from .step_runner import StepRunner
from .transitions import (
    CompensationAttemptFailed,
    CompensationFailed,
    OperatorRetried,
    StepAttemptFailed,
    StepFailed,
    Transition,
)

log = logging.getLogger(__name__)

_OPERATIONS = {CancelSaga: "cancel", RetrySaga: "retry", DeliverEvent: "deliver an event to"}


@attrs.frozen
class Creation:
    """A saga for its actor to create (its first append), and the start request to answer."""

    append: core.Append
    request: AppendRequest
    record: SagaRecord
    """The saga as the start is answered with."""
    start: Envelope[Any]


@attrs.define(eq=False)
class OperatorAction:
    """An operator's action for a saga's new actor to record first (``OperatorRetried``,
    ``StepResolved``...); ``recorded`` once it is durable. A saga that is no longer parked when
    the actor loads it (another action came first) records nothing."""

    transition: Transition
    recorded: bool = False


@attrs.define(eq=False)
class SagaActor:
    """Drives one saga. ``run`` is the actor body; it returns when the saga ends or parks."""

    saga_id: str
    definition: SagaDefinition
    shape: SagaShape
    store: Store
    options: EngineOptions
    clock: Clock
    lease: Lease
    """This instance's lease on the saga: every append is fenced by it."""
    resources: Mapping[str, Any] = attrs.field(factory=dict)
    observer: SagaObserver = attrs.field(factory=SagaObserver)
    state: SagaState | None = None
    """The saga's state when the caller already has it (a new saga); else loaded from the store."""
    on_end: Callable[[str], None] = attrs.field(default=lambda saga_id: None)
    """Called with the saga's id when the actor ends by itself (not when it crashes)."""
    creation: Creation | None = None
    """A saga that is not durable yet: the actor appends its creation first, then answers the
    start (with an error, and ends, if the append fails)."""
    operator: OperatorAction | None = None
    """An operator's action on the parked saga: durable (or refused) before ``run`` signals
    that it started."""
    _machine: core.Machine | None = None
    _incarnations: int = 0
    _wake: trio.Event | None = None
    _runner: StepRunner | None = None
    _mailbox: Mailbox[Any] | None = None
    _nursery: trio.Nursery | None = None
    _deferred: bool = False
    """A delivery waits in the mailbox for the append in flight."""
    _taken_over: bool = False

    async def run(
        self,
        mailbox: Mailbox[Any],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        if self._incarnations or self.state is None:
            # A restarted incarnation reloads: its predecessor may have recorded more.
            self.state = await retry_unavailable(
                lambda: load_state(self.store, self.shape, self.saga_id),
                doing=f"saga {self.saga_id} waits for the store to load its history",
                max_delay=self.options.store_retry_max,
                log=log,
            )
        self._incarnations += 1
        if self.creation is not None and not await self._create(self.creation):
            self._close(mailbox)  # nothing durable: the saga does not exist
            self.on_end(self.saga_id)
            return
        self._machine = core.Machine(saga=self.state)
        self._mailbox = mailbox
        self._taken_over = False
        self._runner = StepRunner(
            saga_id=self.saga_id,
            definition=self.definition,
            resources=self.resources,
            clock=self.clock,
        )
        bind_log_context(saga_id=self.saga_id, correlation_id=self.state.correlation_id)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self.operator is not None:  # durable before the action is answered
                    await self._record_operator(self.operator)
                    self.operator = None
                task_status.started()
                if not self._taken_over:
                    mailbox.attach(self._on_message)
                    await self._loop()
                    mailbox.detach()  # from here messages wait in line: ``_close`` answers them
                nursery.cancel_scope.cancel()  # attempts still running (taken over)
        finally:
            self._nursery = None
            mailbox.detach()
            self._drop_waiting()
        if self._taken_over:
            log.warning("saga %s is driven by another process; this one stops", self.saga_id)
        self._close(mailbox)
        self.on_end(self.saga_id)

    @property
    def machine(self) -> core.Machine:
        """The core's machine: the saga's durable state and the actor's work in progress."""
        assert self._machine is not None
        return self._machine

    # -- the loop -----------------------------------------------------------------------------

    async def _loop(self) -> None:
        """Execute the core's decisions until it says stop or another process took the saga
        over (an append found the stream moved on)."""
        machine, shape, clock = self.machine, self.shape, self.clock
        while not self._taken_over:
            decided = core.advance(machine, shape, clock.now())
            acted = False
            for command in decided.commands:
                match command:
                    case core.Append():
                        acted = await self._append(command)
                        if not acted:
                            return
                    case core.Run():
                        assert self._nursery is not None
                        self._nursery.start_soon(self._attempt, command)
                    case core.Stop():
                        return
                    case _:
                        self._execute(command)
            if not acted:
                await self._wait(decided.wake_at)

    async def _attempt(self, run: core.Run) -> None:
        """Run an attempt (in a task of its own) and tell the core how it ended."""
        assert self._runner is not None and self._machine is not None
        ended = await self._runner.run(run, self._machine.saga)
        if self._machine is not None and not self._taken_over:
            self._take(ended)

    async def _wait(self, wake_at: float | None) -> None:
        """Until an input arrives (``_take`` wakes this task) or wall-clock ``wake_at``."""
        self._wake = wake = trio.Event()
        try:
            if wake_at is None:
                await wake.wait()
            else:
                with trio.move_on_at(trio.current_time() + max(0.0, wake_at - self.clock.now())):
                    await wake.wait()
        finally:
            self._wake = None

    async def _record_operator(self, action: OperatorAction) -> None:
        """Record an operator's action on the parked saga (its first append). A saga that is
        not parked (any more) records nothing; the loop goes on."""
        self._take(core.Operate(None, action.transition))
        if self.machine.operator is None:
            return
        decided = core.advance(self.machine, self.shape, self.clock.now())
        (append,) = decided.commands  # the action and what follows it without I/O
        assert isinstance(append, core.Append)
        action.recorded = await self._append(append)

    # -- inputs and commands ------------------------------------------------------------------

    def _take(self, event: core.Input) -> bool:
        """Give ``event`` to the core and execute its immediate answers; False when the core
        defers it (a delivery that waits in the mailbox)."""
        machine = self._machine
        assert machine is not None
        commands = core.take(machine, event, deliveries_limit=self.options.saga_mailbox_size)
        if commands is core.DEFERRED:
            self._deferred = True
            return False
        for command in commands:
            self._execute(command)
        if self._wake is not None:
            self._wake.set()
        return True

    def _execute(self, command: core.Command) -> None:
        match command:
            case core.Answer(ref=ref, value=value):
                if ref is not None:
                    ref.respond(value)
            case core.Refuse(ref=ref, status=status, operation=operation):
                if ref is not None:
                    ref.respond_error(SagaStateConflict(self.saga_id, status, operation))
            case core.Cut(step=step):
                assert self._runner is not None
                self._runner.cut(step)
            case _:
                raise AssertionError(f"not an immediate command: {command!r}")

    def _on_message(self, envelope: Envelope[Any]) -> bool:
        """The mailbox handler (runs in the sender's task); False leaves the message waiting."""
        match envelope.message:
            case CancelSaga(reason=reason):
                return self._take(core.Cancel(envelope, reason))
            case RetrySaga(by=by, reason=reason):
                retried = OperatorRetried(by=by, reason=reason)
                return self._take(core.Operate(envelope, retried))
            case DeliverEvent(event_id=event_id, event_type=event_type, data=data):
                return self._take(core.Deliver(envelope, event_id, event_type, data))
            case other:
                envelope.respond_error(TypeError(f"saga actor cannot handle {other!r}"))
                return True

    # -- appends ------------------------------------------------------------------------------

    async def _append(self, append: core.Append) -> bool:
        """Make ``append`` durable and tell the core; False (and nothing more) when another
        process appended to the saga first."""
        request = append_request(
            self.saga_id, append, self.shape, self.options.lifecycle_topic, lease=self.lease
        )
        if not await commit(self.store, request, max_delay=self.options.store_retry_max):
            self._taken_over = True
            return False
        notify(self.observer, append.before, append.after, append.transitions)
        self._log_failures(append)
        self._take(core.DURABLE)
        if self._deferred and self._mailbox is not None:
            self._deferred = False
            self._mailbox.hand_waiting()  # deliveries that waited for this append
        return True

    def _log_failures(self, append: core.Append) -> None:
        """One line per failed attempt: WARNING while retries remain, ERROR when the step (or
        its compensation) gives up; a bug in the step's own code (an error that is not one of
        ours, e.g. ``KeyError``) with its traceback."""
        for t in append.transitions:
            match t:
                case StepAttemptFailed() | CompensationAttemptFailed():
                    level, what = logging.WARNING, f"retrying in {t.retry_in:.1f} s"
                case StepFailed():
                    level, what = logging.ERROR, f"the step gives up (outcome {t.outcome.value})"
                case CompensationFailed() if t.attempt > 0:
                    level, what = logging.ERROR, "the compensation gives up: the saga parks"
                case _:
                    continue
            kind = "compensation of step" if "Compensation" in type(t).__name__ else "step"
            error = self._runner.last_error.get(t.step) if self._runner is not None else None
            bug = error is not None and not isinstance(error, SagaOrchestratorError)
            log.log(
                level,
                "saga %s (%s) %s %r attempt %d failed: %s [%s]; %s",
                self.saga_id,
                append.after.saga_type,
                kind,
                self.shape.steps[t.step].name,
                t.attempt,
                t.error,
                t.error_type or "no error type",
                what,
                exc_info=error if bug and t.error_type == type(error).__name__ else None,
            )

    async def _create(self, creation: Creation) -> bool:
        """Make the new saga durable, then answer its start; False when that failed (the
        start is answered with the error)."""
        self.creation = None
        start = creation.start
        try:
            await self.store.append(creation.request)
        except Exception as exc:
            if not isinstance(exc, SagaOrchestratorError):
                log.exception("starting a %s saga failed", self.definition.name)
            start.respond_error(exc)
            return False
        except BaseException:
            if start.reply is not None:
                start.reply.drop()  # cancelled (shutting down): the asker gets NoReply
            raise
        append = creation.append
        notify(self.observer, append.before, append.after, append.transitions)
        start.respond(StartResult(saga=creation.record, created=True))
        return True

    # -- the end ------------------------------------------------------------------------------

    def _drop_waiting(self) -> None:
        """Requests the core holds when the actor stops early (crashed, cancelled, taken over):
        their askers get ``NoReply`` (a 503 at the API: retry) rather than waiting."""
        machine = self._machine
        if machine is None:
            return
        held = [*machine.cancels, *(d.ref for d in machine.deliveries)]
        if machine.operator is not None:
            held.append(machine.operator[0])
        if machine.in_flight is not None:
            held += [d.ref for d in machine.in_flight.deliveries]
        for ref in held:
            if ref is not None and ref.reply is not None:
                ref.reply.drop()  # a no-op for a request answered already
        self.state = machine.saga
        self._machine = None  # a restarted incarnation starts from the store

    def _close(self, mailbox: Mailbox[Any]) -> None:
        """The saga ended: answer what is still queued with the final status, then close."""
        assert self.state is not None
        status = self.state.status.value
        while True:
            try:
                envelope = mailbox.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            operation = _OPERATIONS.get(type(envelope.message), "message")
            envelope.respond_error(SagaStateConflict(self.saga_id, status, operation))
        mailbox.close()
