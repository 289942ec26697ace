"""Bounded mailboxes, actor references, and the ask/tell protocol."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

import attrs
import trio

from ._errors import ActorStopped, AskTimeout, MailboxFull, NoReply

M = TypeVar("M")
log = logging.getLogger(__name__)


class Reply:
    """The one-shot answer slot of an ``ask``.

    Replying is best-effort and never raises: an asker that gave up (timed out, was cancelled,
    its client disconnected) must not crash the actor that answers it.
    """

    __slots__ = ("_outcome", "_waiter")

    def __init__(self) -> None:
        self._outcome: tuple[bool | None, Any] | None = None
        self._waiter: trio.lowlevel.Task | None = None

    @property
    def done(self) -> bool:
        """Whether an answer was already given."""
        return self._outcome is not None

    def send(self, value: Any) -> None:
        """Answer with a value."""
        self._deliver(True, value)

    def fail(self, error: BaseException) -> None:
        """Answer with an error; the asker raises it."""
        self._deliver(False, error)

    def drop(self) -> None:
        """Refuse to answer; the asker raises ``NoReply``."""
        self._deliver(None, None)

    def _deliver(self, ok: bool | None, payload: Any) -> None:
        if self._outcome is None:
            self._outcome = (ok, payload)
            waiter, self._waiter = self._waiter, None
            if waiter is not None:
                trio.lowlevel.reschedule(waiter)

    async def wait(self) -> None:
        """Wait until answered (a checkpoint either way). One task waits at a time: the
        asker's. Parks the task directly, which is lighter than a ``trio.Event`` per ask."""
        if self._outcome is not None:
            await trio.lowlevel.checkpoint()
            return
        self._waiter = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._waiter = None  # cancelled: a later answer finds nobody to wake
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


@attrs.frozen
class Envelope(Generic[M]):
    """A message in a mailbox, with the reply channel when it was sent by ``ask``."""

    message: M
    """The message itself."""
    reply: Reply | None = None
    """Where the answer goes; ``None`` for ``tell``."""

    def respond(self, value: Any) -> None:
        """Answer an ask (no-op for a tell)."""
        if self.reply is not None:
            self.reply.send(value)

    def respond_error(self, error: BaseException) -> None:
        """Answer an ask with an error (no-op for a tell)."""
        if self.reply is not None:
            self.reply.fail(error)


Handler = Callable[[Envelope[Any]], bool]
"""An actor's synchronous message handler: it must not block and should not raise. It returns
whether it took the message; one it declines waits in the bounded mailbox, in order, until the
actor asks for it again (:meth:`Mailbox.hand_waiting`)."""


class _Box:
    """An actor's mailbox, shared by its :class:`ActorRef` and :class:`Mailbox`: the attached
    handler, or the bounded channel, made when the first message has to wait in it (an actor
    with a handler may never need one)."""

    __slots__ = ("capacity", "closed", "handler", "held", "receive", "send")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.handler: Handler | None = None
        self.held: Envelope[Any] | None = None
        """The first waiting message, taken off the channel and declined by the handler."""
        self.closed = False
        self.send: trio.MemorySendChannel[Envelope[Any]] | None = None
        self.receive: trio.MemoryReceiveChannel[Envelope[Any]] | None = None

    def channel(self) -> tuple[trio.MemorySendChannel[Any], trio.MemoryReceiveChannel[Any]]:
        if self.send is None or self.receive is None:
            self.send, self.receive = trio.open_memory_channel[Envelope[Any]](self.capacity)
            if self.closed:
                self.send.close()
        return self.send, self.receive

    def hand(self, envelope: Envelope[Any]) -> bool:
        """Give ``envelope`` to the handler; whether it took it. An error it raises answers the
        asker (the message counts as taken)."""
        assert self.handler is not None
        try:
            return self.handler(envelope)
        except Exception as exc:
            log.exception("message handler %r failed on %r", self.handler, envelope.message)
            envelope.respond_error(exc)
            return True

    def hand_waiting(self) -> None:
        handler = self.handler
        if self.held is None and self.receive is None:
            return  # nothing ever had to wait (the usual case for an actor with a handler)
        while handler is not None and self.handler is handler:
            try:
                envelope = self.next_waiting()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            if not self.hand(envelope):
                self.held = envelope
                return

    def next_waiting(self) -> Envelope[Any]:
        """The first waiting message; raises ``trio.WouldBlock`` or ``trio.EndOfChannel``."""
        if self.held is not None:
            envelope, self.held = self.held, None
            return envelope
        if self.receive is None:
            if self.closed:
                raise trio.EndOfChannel
            raise trio.WouldBlock
        return self.receive.receive_nowait()

    def depth(self) -> int:
        waiting = 0 if self.receive is None else self.receive.statistics().current_buffer_used
        return waiting + (self.held is not None)


class Mailbox(Generic[M]):
    """The receiving end of an actor's bounded mailbox; only the owning actor reads it.

    An actor whose every message is handled at once, without waiting (it only updates its own
    state and wakes its own tasks), can :meth:`attach` a handler instead of running a task that
    receives: each message is then handled as it is sent, in the sender's task. While no handler
    is attached, messages wait in the bounded channel as usual.
    """

    def __init__(self, name: str, box: _Box) -> None:
        self.name = name
        self._box = box

    def attach(self, handler: Handler) -> None:
        """Handle messages with ``handler`` from now on: those waiting first, in order."""
        self._box.handler = handler
        self.hand_waiting()

    def hand_waiting(self) -> None:
        """Give the waiting messages to the attached handler, in order, until it declines one
        (that one stays first in line)."""
        self._box.hand_waiting()

    def detach(self) -> None:
        """Let messages wait in the channel again."""
        self._box.handler = None

    async def receive(self) -> Envelope[M]:
        """Wait for the next envelope; raises ``trio.EndOfChannel`` once closed and drained."""
        box = self._box
        if box.held is not None:
            envelope, box.held = box.held, None
            await trio.lowlevel.checkpoint()
            return envelope
        return await box.channel()[1].receive()

    def receive_nowait(self) -> Envelope[M]:
        """Take the next envelope if one is waiting, else raise ``trio.WouldBlock``."""
        return self._box.next_waiting()

    def __aiter__(self) -> AsyncIterator[Envelope[M]]:
        return self._box.channel()[1].__aiter__()

    @property
    def depth(self) -> int:
        """Messages waiting."""
        return self._box.depth()

    def close(self) -> None:
        """Stop accepting messages: later tells raise ``ActorStopped``; what is queued can
        still be received, then ``receive`` raises ``trio.EndOfChannel``."""
        box = self._box
        box.handler = None
        box.closed = True
        if box.send is not None:
            box.send.close()


class ActorRef(Generic[M]):
    """The address of an actor: send it messages with ``tell`` or ask it with ``ask``."""

    def __init__(self, name: str, box: _Box) -> None:
        self.name = name
        self._box = box

    def __repr__(self) -> str:
        return f"<ActorRef {self.name}>"

    @property
    def capacity(self) -> float:
        """How many messages the mailbox holds."""
        return self._box.capacity

    @property
    def depth(self) -> int:
        """Messages waiting in the mailbox."""
        return self._box.depth()

    async def tell(self, message: M) -> None:
        """Send without waiting for an answer; waits while the mailbox is full (backpressure)."""
        if not await self._put(Envelope(message)):
            await trio.lowlevel.checkpoint()

    def tell_nowait(self, message: M) -> None:
        """Send at once or raise ``MailboxFull``."""
        box = self._box
        envelope = Envelope(message)
        if box.handler is not None and box.hand(envelope):
            return
        try:
            box.channel()[0].send_nowait(envelope)
        except trio.WouldBlock:
            raise MailboxFull(self.name, int(self.capacity)) from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ActorStopped(self.name) from None

    async def ask(self, message: M, *, timeout: float | None = 5.0) -> Any:  # noqa: ASYNC109 (typed AskTimeout)
        """Send ``message`` and wait for the answer.

        ``timeout=None`` waits as long as it takes: for an actor whose own work is bounded (the
        store actor's commits have a command timeout), it saves a cancel scope per ask.

        Raises:
            AskTimeout: no answer within ``timeout`` seconds (waiting for mailbox room included).
            ActorStopped: the actor no longer accepts messages.
            NoReply: the actor dropped the request unanswered.
            Exception: whatever error the actor answered with.
        """
        reply = Reply()
        if timeout is None:
            await self._put(Envelope(message, reply))
            await reply.wait()
        else:
            with trio.move_on_after(timeout) as scope:
                await self._put(Envelope(message, reply))
                await reply.wait()
            if scope.cancelled_caught:
                raise AskTimeout(self.name, message, timeout)
        assert reply._outcome is not None
        ok, payload = reply._outcome
        if ok is None:
            raise NoReply(self.name, message)
        if not ok:
            raise payload
        return payload

    async def _put(self, envelope: Envelope[M]) -> bool:
        """Deliver ``envelope``; whether that waited (was a checkpoint). Room in the mailbox
        (the usual case) or an attached handler takes it at once: the asker's wait for the
        answer is its checkpoint, not this. A message the handler declines waits in the channel
        like any other."""
        box = self._box
        if box.handler is not None and box.hand(envelope):
            return False
        send = box.channel()[0]
        try:
            send.send_nowait(envelope)
            return False
        except trio.WouldBlock:
            pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ActorStopped(self.name) from None
        try:
            await send.send(envelope)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ActorStopped(self.name) from None
        if box.handler is not None:  # it waited for room: the handler may take it now
            box.hand_waiting()
        return True


def open_mailbox(name: str, capacity: int) -> tuple[ActorRef[M], Mailbox[M]]:
    """Create a bounded mailbox; returns the reference to hand out and the receiving end.

    ``capacity`` must be at least 1: an unbounded mailbox would let memory grow under load.
    """
    if capacity < 1 or math.isinf(capacity):
        raise ValueError(f"mailbox capacity must be a positive integer, not {capacity!r}")
    box = _Box(capacity)
    return ActorRef(name, box), Mailbox(name, box)
