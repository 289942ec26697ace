"""The saga actor: the I/O loop around the pure state machine of one saga.

It asks :func:`~.state.plan` what to do, does it, and records what happened before it acts on
it (write-ahead). Cancellation and the saga deadline interrupt the forward path at once (the
running step's cancel scope is cancelled) and the completed steps are compensated.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import trio

from saga_orchestrator.actors import Envelope, Mailbox, MailboxFull
from saga_orchestrator.errors import (
    ConcurrencyError,
    SagaOrchestratorError,
    SagaStateConflict,
    StoreError,
)
from saga_orchestrator.logging_setup import bind_log_context
from saga_orchestrator.store.actor import Store
from saga_orchestrator.store.records import AppendRequest, NewEvent, SagaRecord

from . import state as sm
from .clock import Clock
from .copying import replace
from .definition import NonRetryableError, SagaDefinition, StepContext
from .messages import CancelSaga, DeliverEvent, RetrySaga, StartResult
from .observer import SagaObserver, notify
from .options import EngineOptions
from .projection import lifecycle_events, stream_id, to_record
from .transitions import (
    Interruption,
    OperatorRetried,
    ReplyReceived,
    SagaInterrupted,
    Transition,
    from_record,
)
from .transitions import (
    to_record as transition_record,
)

log = logging.getLogger(__name__)

_FORWARD = (sm.SagaStatus.PENDING, sm.SagaStatus.RUNNING)
_OPERATIONS = {CancelSaga: "cancel", RetrySaga: "retry", DeliverEvent: "deliver an event to"}


@attrs.frozen
class _Planned:
    """Transitions stamped and folded ahead of their append, and the state they lead to."""

    before: sm.SagaState
    transitions: list[Transition]
    after: sm.SagaState


@attrs.frozen
class NewSaga:
    """The append that creates a saga, and what its answer and observers need."""

    request: AppendRequest
    before: sm.SagaState
    """The state before the saga existed (the observer's ``before``)."""
    transitions: list[Transition]
    record: SagaRecord
    """The saga as the start is answered with."""


@attrs.frozen
class Creation:
    """A saga for its actor to create (its first append), and the start request to answer."""

    saga: NewSaga
    start: Envelope[Any]


class _Interruptible:
    """A saga actor's cancel scope for a step or a wait, known to the actor while entered so
    that an interruption (cancel, deadline) can cancel it. A plain class, not a generator
    context manager: it is entered for every step."""

    __slots__ = ("actor", "scope")

    def __init__(self, actor: SagaActor, scope: trio.CancelScope) -> None:
        self.actor = actor
        self.scope = scope

    def __enter__(self) -> trio.CancelScope:
        self.actor._interruptible = self.scope
        return self.scope.__enter__()

    def __exit__(self, *exc_info: Any) -> bool:
        try:
            return self.scope.__exit__(*exc_info)
        finally:
            self.actor._interruptible = None


class SagaTakenOver(Exception):
    """Another process appended to this saga's stream: this actor stops driving it."""


async def load_state(store: Store, shape: sm.SagaShape, saga_id: str) -> sm.SagaState:
    """Rebuild a saga's state from its durable history."""
    history: list[Transition] = []
    version = 1
    while True:
        events = await store.read_stream(stream_id(saga_id), from_version=version, limit=1000)
        history.extend(from_record(e.event_type, e.data) for e in events)
        if len(events) < 1000:
            return sm.replay(shape, history)
        version += len(events)


@attrs.define(eq=False)
class SagaActor:
    """Drives one saga. ``run`` is the actor body; it returns when the saga ends or parks."""

    saga_id: str
    definition: SagaDefinition
    shape: sm.SagaShape
    store: Store
    options: EngineOptions
    clock: Clock
    resources: Mapping[str, Any] = attrs.field(factory=dict)
    observer: SagaObserver = attrs.field(factory=SagaObserver)
    state: sm.SagaState | None = None
    """The saga's state when the caller already has it (a new saga); else loaded from the store."""
    on_end: Callable[[str], None] = attrs.field(default=lambda saga_id: None)
    """Called with the saga's id when the actor ends by itself (not when it crashes)."""
    creation: Creation | None = None
    """A saga that is not durable yet: the actor appends its creation first, then answers the
    start (with an error, and ends, if the append fails)."""
    _interrupt: tuple[Interruption, str] | None = None
    _interruptible: trio.CancelScope | None = None
    _retry_requested: bool = False
    _incarnations: int = 0
    _cancels: list[Envelope[Any]] = attrs.field(factory=list)
    """Cancel requests to answer once ``SagaInterrupted`` is durable (or refused)."""
    _nursery: trio.Nursery | None = None
    _deliveries_running: bool = False
    _input: Any = None
    _inbox: list[Envelope[Any]] = attrs.field(factory=list)
    """Events delivered to the saga, waiting to be recorded (answered once durable)."""
    _inbox_changed: trio.Event | None = None
    """Set when a delivery arrives; made by the deliveries task when it waits."""
    _replies_changed: trio.Event | None = None
    """Set when a reply is recorded; made by the drive loop when it waits for one."""
    _appending: bool = False
    """An append to the saga's stream is in flight: appends happen one at a time (the drive
    loop and the deliveries task); ``_append_done`` wakes the one that waits."""
    _append_done: trio.Event | None = None

    async def run(
        self,
        mailbox: Mailbox[Any],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        if self._incarnations or self.state is None:
            # A restarted incarnation reloads: its predecessor may have recorded more.
            self.state = await self._load()
        self._incarnations += 1
        if self.creation is not None and not await self._create(self.creation):
            self._close(mailbox)  # nothing durable: the saga does not exist
            self.on_end(self.saga_id)
            return
        self._interruptible = None
        if self._retry_requested and self._current().is_parked:
            self._retry_requested = False
            await self.record([OperatorRetried()])  # durable before the retry is answered
        task_status.started()
        state = self._current()
        # The saga's task is its own (the supervisor's child): the ids stay with it.
        bind_log_context(saga_id=self.saga_id, correlation_id=state.correlation_id)
        try:
            await self._run_loops(mailbox)
        except SagaTakenOver:
            log.warning("saga %s is driven by another process; this one stops", self.saga_id)
        self._close(mailbox)
        self.on_end(self.saga_id)

    async def _run_loops(self, mailbox: Mailbox[Any]) -> None:
        """Drive the saga. Its messages are handled as they are sent (``_handle`` never waits:
        it sets flags, cancels the running step's scope, queues deliveries), so no task has to
        sit on the mailbox; deliveries are recorded by a task of their own, started with the
        first one."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._deliveries_running = False
            mailbox.attach(self._handle)
            try:
                if self._inbox:
                    self._start_deliveries()
                await self._drive()
            finally:
                mailbox.detach()
            if self._deliveries_running:
                nursery.cancel_scope.cancel()

    async def _create(self, creation: Creation) -> bool:
        """Make the new saga durable, then answer its start; False when that failed (the
        start is answered with the error)."""
        self.creation = None
        start = creation.start
        try:
            await self.store.append(creation.saga.request)
        except Exception as exc:
            if not isinstance(exc, SagaOrchestratorError):
                log.exception("starting a %s saga failed", self.definition.name)
            start.respond_error(exc)
            return False
        except BaseException:
            if start.reply is not None:
                start.reply.drop()  # cancelled (shutting down): the asker gets NoReply
            raise
        notify(self.observer, creation.saga.before, self._current(), creation.saga.transitions)
        start.respond(StartResult(saga=creation.saga.record, created=True))
        return True

    def _start_deliveries(self) -> None:
        """Record deliveries in a task of their own, started with the first one."""
        if not self._deliveries_running and self._nursery is not None:
            self._deliveries_running = True
            self._nursery.start_soon(self._deliveries)

    async def _load(self) -> sm.SagaState:
        """The saga's state from the store, waiting while the store is unavailable."""
        delay = 0.05
        while True:
            try:
                return await load_state(self.store, self.shape, self.saga_id)
            except StoreError as exc:
                log.warning("saga %s waits for the store to load: %s", self.saga_id, exc)
                await trio.sleep(delay)
                delay = min(delay * 2, self.options.store_retry_max)

    # -- the loop -----------------------------------------------------------------------------

    async def _drive(self) -> None:
        while True:
            state = self._current()
            if state.status in _FORWARD and self.clock.now() >= state.deadline_at:
                self._interrupt_with(Interruption.TIMED_OUT, "the saga deadline passed")
            if self._retry_requested and state.is_parked:
                self._retry_requested = False
                await self.record([OperatorRetried()])
                continue
            if self._interrupt is not None and state.status in _FORWARD:
                reason, detail = self._interrupt
                await self.record([SagaInterrupted(reason=reason, detail=detail)])
                self._answer_cancels()
                continue
            if self._cancels:  # the saga left its forward path before the cancel was recorded
                self._answer_cancels()
            command = sm.plan(state, self.shape)
            match command:
                case sm.Record(transition=t):
                    await self.record(self._coalesce(state, t))
                case sm.Execute(step=step, attempt=attempt):
                    outcome = await self._execute(step, attempt)
                    if outcome is not None:
                        t = sm.step_outcome(state, self.shape, step, attempt, outcome)
                        await self.record(self._coalesce(state, t))
                case sm.Compensate(step=step, attempt=attempt):
                    outcome = await self._compensate(step, attempt)
                    t = sm.compensation_outcome(state, self.shape, step, attempt, outcome)
                    await self.record(self._coalesce(state, t))
                case sm.Wait(delay=delay, then=then):
                    if await self._sleep(delay, interruptible=state.status in _FORWARD):
                        await self.record([then])
                case sm.AwaitReply(step=step, until=until):
                    if await self._await_reply(until):
                        await self.record([sm.no_reply(state, self.shape, step)])
                case sm.Halt():
                    return

    def _coalesce(self, state: sm.SagaState, first: Transition) -> _Planned:
        """``first`` and the transitions that follow it with no I/O between them (the next
        ``StepStarted``, ``CompensationStarted`` or the end), stamped with the time, so they go
        to the store as one append. Write-ahead holds: they are durable before anything they
        announce runs."""
        now = self.clock.now()
        transitions = [replace(first, at=now)]
        next_state = sm.evolve(state, transitions[0])
        while next_state.status not in _FORWARD or (
            self._interrupt is None and now < next_state.deadline_at
        ):
            following = sm.plan(next_state, self.shape)
            if not isinstance(following, sm.Record):
                break
            transitions.append(replace(following.transition, at=now))
            next_state = sm.evolve(next_state, transitions[-1])
        return _Planned(before=state, transitions=transitions, after=next_state)

    def _current(self) -> sm.SagaState:
        assert self.state is not None
        return self.state

    # -- recording ----------------------------------------------------------------------------

    async def record(
        self, transitions: Sequence[Transition] | _Planned, *, unless_ended: bool = False
    ) -> bool:
        """Make ``transitions`` durable (with the projection and lifecycle events), then adopt
        them. An unavailable store is retried with backoff, never compensated for.

        ``unless_ended``: record nothing (and return False) if, by the time it is this append's
        turn, the saga has ended or parked: deliveries must not follow its last transition."""
        while self._appending:  # the other task's append first (no lock, no checkpoint)
            if self._append_done is None:
                self._append_done = trio.Event()
            await self._append_done.wait()
        state = self._current()
        if unless_ended and (state.is_terminal or state.is_parked):
            return False
        self._appending = True
        try:
            await self._append(transitions)
        finally:
            self._appending = False
            done, self._append_done = self._append_done, None
            if done is not None:
                done.set()
        return True

    async def _append(self, transitions: Sequence[Transition] | _Planned) -> None:
        before = self._current()
        if isinstance(transitions, _Planned) and transitions.before is before:
            stamped, after = transitions.transitions, transitions.after
        else:  # a delivery was recorded since it was planned: fold again from the current state
            now = self.clock.now()
            planned = transitions.transitions if isinstance(transitions, _Planned) else transitions
            stamped = [replace(t, at=now) for t in planned]
            after = before
            for t in stamped:
                after = sm.evolve(after, t)
        events = []
        for t in stamped:
            event_type, data = transition_record(t)
            events.append(NewEvent(event_type=event_type, data=data))
        request = AppendRequest(
            stream_id=stream_id(self.saga_id),
            expected_version=before.version,
            events=events,
            saga=to_record(after, self.shape, changed_since=before),
            outbox=lifecycle_events(
                after,
                self.shape,
                stamped,
                self.options.lifecycle_topic,
                event_ids=[e.event_id for e in events],
            ),
        )
        delay = 0.05
        while True:
            try:
                await self.store.append(request)
                break
            except ConcurrencyError:
                if await self._already_recorded(events[-1].event_id, after.version):
                    break
                raise SagaTakenOver(self.saga_id) from None
            except StoreError as exc:
                log.warning("saga %s waits for the store: %s", self.saga_id, exc)
                await trio.sleep(delay)
                delay = min(delay * 2, self.options.store_retry_max)
        self.state = after
        notify(self.observer, before, after, stamped)

    async def _already_recorded(self, event_id: str, version: int) -> bool:
        """Whether an append whose reply was lost did commit (same event at that version)."""
        events = await self.store.read_stream(
            stream_id(self.saga_id), from_version=version, limit=1
        )
        return bool(events) and events[0].event_id == event_id

    # -- running steps ------------------------------------------------------------------------

    def _context(self, step: int, attempt: int, result: Any = None) -> StepContext:
        state = self._current()
        results = {
            self.shape.steps[i].name: s.result
            for i, s in enumerate(state.steps)
            if s.status is sm.StepStatus.COMPLETED
        }
        name = self.shape.steps[step].name
        return StepContext(
            saga_id=self.saga_id,
            saga_type=state.saga_type,
            step=name,
            attempt=attempt,
            input=self._parsed_input(state),
            results=results,
            idempotency_key=f"{self.saga_id}:{name}",
            correlation_id=state.correlation_id,
            result=result,
            resources=self.resources,
        )

    def _parsed_input(self, state: sm.SagaState) -> Any:
        if self._input is None:
            self._input = self.definition.parse_input(state.input)
        return self._input

    def _timeout(self, step: int) -> float:
        timeout = self.definition.steps[step].timeout
        return self.options.step_timeout if timeout is None else timeout

    async def _execute(self, step: int, attempt: int) -> sm.Attempt | None:
        """Run a step's action; ``None`` when an interruption (cancel, the saga deadline) cut
        it short."""
        definition = self.definition.steps[step]
        timeout = self._timeout(step)
        ctx = self._context(step, attempt)
        outcome: sm.Attempt | None = None
        with self._interruptible_until(self.clock.now() + timeout) as scope:
            try:
                outcome = _checked_result(await definition.action(ctx))
            except NonRetryableError as exc:
                outcome = sm.Raised(_describe(exc), retryable=False)
            except Exception as exc:
                retryable = not isinstance(exc, definition.retry.non_retryable)
                outcome = sm.Raised(
                    _describe(exc), retryable=retryable, retry_after=_retry_after(exc)
                )
        if scope.cancelled_caught and outcome is None:
            return None if self._interrupted_by(scope) else sm.TimedOut(timeout)
        return outcome

    def _interruptible_until(self, until: float) -> _Interruptible:
        """A cancel scope that an interruption cancels, with a deadline at wall-clock ``until``
        or the saga deadline, whichever comes first; enter it with ``with``."""
        state = self._current()
        deadline = min(until, state.deadline_at) if state.status in _FORWARD else until
        now = self.clock.now()
        scope = trio.CancelScope(deadline=trio.current_time() + max(0.0, deadline - now))
        if self._interrupt is not None:
            scope.cancel()
        return _Interruptible(self, scope)

    def _interrupted_by(self, scope: trio.CancelScope) -> bool:
        """After ``scope`` was cancelled: whether by an interruption (the saga deadline counts:
        it is recorded as one) rather than by its own time limit."""
        if self.clock.now() >= self._current().deadline_at:
            self._interrupt_with(Interruption.TIMED_OUT, "the saga deadline passed")
        return self._interrupt is not None

    async def _compensate(self, step: int, attempt: int) -> sm.Attempt:
        """Run a step's compensation; interruptions do not reach it."""
        compensation = self.definition.steps[step].compensation
        assert compensation is not None
        timeout = self._timeout(step)
        ctx = self._context(step, attempt, result=self._current().steps[step].result)
        try:
            with trio.move_on_after(timeout) as timer:
                await compensation(ctx)
        except Exception as exc:
            return sm.Raised(_describe(exc), retry_after=_retry_after(exc))
        if timer.cancelled_caught:
            return sm.TimedOut(timeout)
        return sm.Succeeded()

    async def _sleep(self, delay: float, *, interruptible: bool) -> bool:
        """Sleep a backoff; False when an interruption ended it early."""
        if not interruptible:
            await trio.sleep(delay)
            return True
        with self._interruptible_until(self.clock.now() + delay) as scope:
            await trio.sleep_forever()
        return not self._interrupted_by(scope)

    async def _await_reply(self, until: float) -> bool:
        """Wait until a reply is recorded or wall-clock ``until``; True if the time ran out
        (an interruption ends the wait early too, returning False)."""
        self._replies_changed = trio.Event()
        with self._interruptible_until(until) as scope:
            await self._replies_changed.wait()
        return scope.cancelled_caught and not self._interrupted_by(scope)

    async def _deliveries(self) -> None:
        """Record delivered events as they come, beside whatever the saga is doing."""
        while True:
            if not self._inbox:
                self._inbox_changed = trio.Event()
                await self._inbox_changed.wait()
            await self._record_deliveries()
            if self._replies_changed is not None:
                self._replies_changed.set()

    async def _record_deliveries(self) -> None:
        """Make the delivered events durable in one append, then answer their senders."""
        envelopes, self._inbox = self._inbox, []
        state = self._current()
        known = {reply.event_id for reply in state.replies}
        fresh: dict[str, DeliverEvent] = {}
        for envelope in envelopes:
            message: DeliverEvent = envelope.message
            if message.event_id not in known:
                fresh.setdefault(message.event_id, message)
        if fresh and not await self.record(
            [
                ReplyReceived(event_id=m.event_id, event_type=m.event_type, data=m.data)
                for m in fresh.values()
            ],
            unless_ended=True,
        ):
            # The saga ended while these waited for their turn: they are refused, not recorded.
            status = self._current().status.value
            for envelope in envelopes:
                envelope.respond_error(
                    SagaStateConflict(self.saga_id, status, "deliver an event to")
                )
            return
        for envelope in envelopes:
            envelope.respond("duplicate" if envelope.message.event_id in known else "accepted")

    # -- messages and timers ------------------------------------------------------------------

    def _interrupt_with(self, reason: Interruption, detail: str) -> bool:
        if self._interrupt is not None or self._current().status not in _FORWARD:
            return False
        self._interrupt = (reason, detail)
        if self._interruptible is not None:
            self._interruptible.cancel()
        return True

    def _handle(self, envelope: Envelope[Any]) -> None:
        state = self._current()
        match envelope.message:
            case CancelSaga() if state.cause == Interruption.CANCELLED.value and (
                state.status is sm.SagaStatus.COMPENSATING
            ):
                envelope.respond(state.status.value)  # its cancellation is durable already
            case CancelSaga(reason=reason):
                if state.status in _FORWARD and self._interrupt is None:
                    self._interrupt_with(Interruption.CANCELLED, reason)
                if self._interrupt is not None and self._interrupt[0] is Interruption.CANCELLED:
                    self._cancels.append(envelope)  # answered once the cancel is durable
                else:
                    envelope.respond_error(
                        SagaStateConflict(self.saga_id, state.status.value, "cancel")
                    )
            case DeliverEvent():
                if state.is_terminal or state.is_parked:
                    envelope.respond_error(
                        SagaStateConflict(self.saga_id, state.status.value, "deliver an event to")
                    )
                    return
                if len(self._inbox) >= self.options.saga_mailbox_size:
                    envelope.respond_error(MailboxFull(self.saga_id, len(self._inbox)))
                    return
                self._inbox.append(envelope)
                if self._inbox_changed is not None:
                    self._inbox_changed.set()
                self._start_deliveries()
            case RetrySaga():
                if not state.is_parked:
                    envelope.respond_error(
                        SagaStateConflict(self.saga_id, state.status.value, "retry")
                    )
                    return
                self._retry_requested = True
                envelope.respond(state.status.value)
            case other:
                envelope.respond_error(TypeError(f"saga actor cannot handle {other!r}"))

    def _answer_cancels(self) -> None:
        """Answer the cancel requests: accepted if the saga's cancellation is durable, else
        refused with the status the saga reached first (it completed or compensates already)."""
        state = self._current()
        cancelled = state.cause == Interruption.CANCELLED.value
        for envelope in self._cancels:
            if cancelled:
                envelope.respond(state.status.value)
            else:
                envelope.respond_error(
                    SagaStateConflict(self.saga_id, state.status.value, "cancel")
                )
        self._cancels = []

    def _close(self, mailbox: Mailbox[Any]) -> None:
        """The saga ended: answer what is still queued with the final status, then close."""
        state = self._current()
        self._answer_cancels()
        for envelope in self._inbox:
            envelope.respond_error(
                SagaStateConflict(self.saga_id, state.status.value, "deliver an event to")
            )
        self._inbox = []
        while True:
            try:
                envelope = mailbox.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            operation = _OPERATIONS.get(type(envelope.message), "message")
            envelope.respond_error(SagaStateConflict(self.saga_id, state.status.value, operation))
        mailbox.close()


_JSON_SCALARS = frozenset((str, int, bool))


def _retry_after(exc: BaseException) -> float | None:
    """The delay an error asks for before a retry (its ``retry_after`` attribute, seconds)."""
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) and value >= 0 else None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _checked_result(result: Any) -> sm.Attempt:
    """``Succeeded(result)`` if the store can keep ``result`` (JSON without NaN or infinity,
    as the store encodes it), else a failure that is not retried."""
    if result is None or type(result) in _JSON_SCALARS:
        return sm.Succeeded(result)
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return sm.Raised(f"the step's result cannot be stored as JSON: {exc}", retryable=False)
    return sm.Succeeded(result)
