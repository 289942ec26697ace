"""One-for-one supervision with restart intensity, in the vocabulary of OTP.

A :class:`Supervisor` runs its children in its own nursery. A child that crashes (raises) is
restarted according to its :class:`Restart` type. More than ``max_restarts`` restarts within
``period`` seconds (a sliding window on ``trio.current_time()``) escalates: the supervisor stops
its children and raises :class:`SupervisorEscalation`. A child spec may carry its own intensity
and an ``on_give_up`` hook instead: that child alone is then given up and the supervisor goes on
(the choice for many independent dynamic children).
"""

from __future__ import annotations

import enum
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from ._errors import ActorStopped, SupervisorEscalation
from ._mailbox import ActorRef, open_mailbox

log = logging.getLogger(__name__)

ChildMain = Callable[..., Awaitable[None]]
"""``async def main(*, task_status)``: signals readiness with ``task_status.started(value)``."""


class Restart(enum.Enum):
    """When a stopped child is started again."""

    PERMANENT = "permanent"
    """Always: whether it crashed or returned."""
    TRANSIENT = "transient"
    """Only after a crash; returning normally ends it."""
    TEMPORARY = "temporary"
    """Never."""


@attrs.frozen(kw_only=True)
class ChildSpec:
    """How to start, restart and stop one child."""

    name: str
    """Unique among the supervisor's children."""
    main: ChildMain
    """The child's body; it signals readiness with ``task_status.started(value)``."""
    restart: Restart = Restart.PERMANENT
    """When to restart it."""
    stop: Callable[[], None] | None = None
    """Asks the child to finish by itself (for example, close its mailbox); then it is cancelled
    if it has not ended within the supervisor's grace period."""
    max_restarts: int | None = None
    """This child's own intensity; ``None`` counts its restarts against the supervisor's."""
    period: float | None = None
    """The window of ``max_restarts``, in seconds."""
    on_give_up: Callable[[str, BaseException], None] | None = None
    """Called when the child's own intensity is exceeded; the child then stays down."""
    fatal: Callable[[BaseException], bool] | None = None
    """A crash this says no restart can fix: the child is given up at once (``on_give_up`` is
    called), whatever its intensity. Only for children with ``on_give_up``."""


class _Child:
    """A running child: its spec, the scope it runs in, and when it ended and restarted
    (what only a stop or a crash needs is made then: a supervisor may hold many children)."""

    __slots__ = ("_done", "_ended", "_restarts", "scope", "spec")

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.scope = trio.CancelScope()
        self._ended = False
        self._done: trio.Event | None = None
        self._restarts: deque[float] | None = None

    @property
    def restarts(self) -> deque[float]:
        if self._restarts is None:
            self._restarts = deque()
        return self._restarts

    def end(self) -> None:
        self._ended = True
        if self._done is not None:
            self._done.set()

    async def wait_ended(self) -> None:
        if self._ended:
            await trio.lowlevel.checkpoint()
            return
        if self._done is None:
            self._done = trio.Event()
        await self._done.wait()


def _too_many(history: deque[float], limit: int, period: float) -> bool:
    """Record a restart now; say whether the window now holds more than ``limit``."""
    now = trio.current_time()
    history.append(now)
    while history and history[0] <= now - period:
        history.popleft()
    return len(history) > limit


class Supervisor:
    """Supervises children one-for-one. Start it with ``await nursery.start(sup.run)``."""

    def __init__(
        self,
        name: str,
        *,
        max_restarts: int = 3,
        period: float = 5.0,
        shutdown_grace: float = 5.0,
    ) -> None:
        self.name = name
        self.max_restarts = max_restarts
        self.period = period
        self.shutdown_grace = shutdown_grace
        self._children: dict[str, _Child] = {}
        self._restarts: deque[float] = deque()
        self._nursery: trio.Nursery | None = None
        self._closing = False

    @property
    def children(self) -> list[str]:
        """Names of the running children, in start order."""
        return list(self._children)

    async def run(
        self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled (children stopped in reverse order) or until escalation."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self._closing = True
            self._nursery = None

    async def start_child(self, spec: ChildSpec) -> Any:
        """Start a child and return what it passed to ``task_status.started``.

        Raises:
            ValueError: a child of that name is running.
            ActorStopped: the supervisor is not running.
            Exception: what the child raised before it was started.
        """
        nursery, child = self._register(spec)
        try:
            return await nursery.start(self._supervise, child)
        except BaseException:
            self._forget(child)
            raise

    def start_child_soon(self, spec: ChildSpec) -> None:
        """Start a child without waiting for it to signal readiness: for a child with nothing
        to fail on its way up. What it raises before ``task_status.started`` then counts as a
        crash (restarted or given up as its spec says), not as an error of the caller.

        Raises:
            ValueError: a child of that name is running.
            ActorStopped: the supervisor is not running.
        """
        nursery, child = self._register(spec)
        nursery.start_soon(self._supervise, child, False)

    def _register(self, spec: ChildSpec) -> tuple[trio.Nursery, _Child]:
        """A new child of ``spec``, known by its name; the nursery to run it in."""
        if self._nursery is None or self._closing:
            raise ActorStopped(self.name)
        if spec.name in self._children:
            raise ValueError(f"supervisor {self.name!r} already has a child {spec.name!r}")
        child = self._children[spec.name] = _Child(spec)
        return self._nursery, child

    async def spawn(
        self,
        name: str,
        behaviour: Callable[..., Awaitable[None]],
        *,
        capacity: int,
        restart: Restart = Restart.PERMANENT,
        **spec_options: Any,
    ) -> ActorRef[Any]:
        """Start an actor: ``behaviour(mailbox, task_status=...)`` with a new bounded mailbox,
        once it has signalled that it started.

        The mailbox outlives restarts, so the returned reference stays valid. Stopping the child
        closes the mailbox; the behaviour drains it and returns.
        """
        ref, spec = self._actor_spec(name, behaviour, capacity, restart, spec_options)
        await self.start_child(spec)
        return ref

    def spawn_soon(
        self,
        name: str,
        behaviour: Callable[..., Awaitable[None]],
        *,
        capacity: int,
        restart: Restart = Restart.PERMANENT,
        **spec_options: Any,
    ) -> ActorRef[Any]:
        """:meth:`spawn` without waiting for the actor to run (see :meth:`start_child_soon`);
        messages sent meanwhile wait in its mailbox."""
        ref, spec = self._actor_spec(name, behaviour, capacity, restart, spec_options)
        self.start_child_soon(spec)
        return ref

    @staticmethod
    def _actor_spec(
        name: str,
        behaviour: Callable[..., Awaitable[None]],
        capacity: int,
        restart: Restart,
        spec_options: dict[str, Any],
    ) -> tuple[ActorRef[Any], ChildSpec]:
        ref, mailbox = open_mailbox(name, capacity)
        main = functools.partial(behaviour, mailbox)  # no wrapper coroutine: one frame less
        spec = ChildSpec(name=name, main=main, restart=restart, stop=mailbox.close, **spec_options)
        return ref, spec

    async def stop(self) -> None:
        """Stop every child in reverse start order, then return (``run`` keeps running)."""
        self._closing = True
        for child in reversed(list(self._children.values())):
            await self._stop(child)

    async def _stop(self, child: _Child) -> None:
        if child.spec.stop is not None:
            child.spec.stop()
            with trio.move_on_after(self.shutdown_grace):
                await child.wait_ended()
        child.scope.cancel()
        await child.wait_ended()

    def _forget(self, child: _Child) -> None:
        if self._children.get(child.spec.name) is child:
            del self._children[child.spec.name]
        child.end()

    async def _supervise(
        self,
        child: _Child,
        caller_waits: bool = True,
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        spec = child.spec
        status: _TrackedStatus | trio.TaskStatus[Any] = (
            _TrackedStatus(task_status) if caller_waits else trio.TASK_STATUS_IGNORED
        )
        try:
            with child.scope:
                while True:
                    try:
                        await spec.main(task_status=status)
                    except Exception as exc:  # a crash; Cancelled is BaseException and passes
                        if isinstance(status, _TrackedStatus) and not status.called:
                            raise  # failed before it started: the caller of start_child sees it
                        crash: BaseException | None = exc
                        log.exception("child %r of %r crashed", spec.name, self.name)
                    else:
                        crash = None
                    status = trio.TASK_STATUS_IGNORED
                    if self._closing or spec.restart is Restart.TEMPORARY:
                        return
                    if crash is None and spec.restart is Restart.TRANSIENT:
                        return
                    if not self._may_restart(child, crash):
                        return
                    log.warning("restarting child %r of %r", spec.name, self.name)
        finally:
            self._forget(child)

    def _may_restart(self, child: _Child, crash: BaseException | None) -> bool:
        spec = child.spec
        if crash is not None and spec.fatal is not None and spec.fatal(crash):
            if spec.on_give_up is not None:
                spec.on_give_up(spec.name, crash)
            log.error("giving up on child %r of %r: no restart can fix it", spec.name, self.name)
            return False
        if spec.max_restarts is not None:
            period = spec.period if spec.period is not None else self.period
            if _too_many(child.restarts, spec.max_restarts, period):
                if spec.on_give_up is not None:
                    spec.on_give_up(spec.name, crash or RuntimeError("child kept returning"))
                log.error("giving up on child %r of %r", spec.name, self.name)
                return False
            return True
        if _too_many(self._restarts, self.max_restarts, self.period):
            raise SupervisorEscalation(self.name, spec.name, self.max_restarts, self.period)
        return True


class _TrackedStatus:
    """Passes ``started`` through and remembers that it was called."""

    def __init__(self, inner: trio.TaskStatus[Any]) -> None:
        self.inner = inner
        self.called = False

    def started(self, value: Any = None) -> None:
        self.called = True
        self.inner.started(value)
