"""Commands for a saga another live instance drives: sent to its owner through the store,
applied there exactly as a local command, and answered with the owner's outcome.

* The receiving instance keeps the command in the store (durable) and wakes the owner
  (PostgreSQL ``NOTIFY``), then waits for the outcome and answers its caller with it: the HTTP
  answer is the same whichever instance received the request.
* Each instance's inbox takes the pending commands of the sagas it owns, applies each as the
  local command it is (a cancel cuts the running step at once), and records the outcome.
* If the owner dies first, the command stays pending until the instance that claims the saga
  next applies it: it is durable, not lost with a message.

Why the store and not a per-instance Redis stream: the command must survive the owner's death
with the saga it is about (same database, same claims), and the store is there on every
deployment, Redis only with ``USE_REDIS_EVENT_BUS``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from saga_orchestrator.errors import (
    CommandPending,
    SagaNotFound,
    SagaOrchestratorError,
    SagaOwnedElsewhere,
    SagaStateConflict,
)
from saga_orchestrator.store import Store
from saga_orchestrator.store.records import SagaCommand

from .lease import InstanceLease
from .messages import CancelSaga, DeliverEvent

__all__ = ["Forwarding", "decode_outcome", "encode_outcome"]

log = logging.getLogger(__name__)

Command = CancelSaga | DeliverEvent

INBOX_LOOK_EVERY = 1.0
"""Most seconds between looks at the inbox when no notification comes."""
INBOX_BATCH = 100
KEEP_COMMANDS = 24 * 3600.0
"""Seconds commands are kept (applied or not) before they are forgotten."""
PURGE_EVERY = 600.0


def encode_outcome(value: str | None = None, error: BaseException | None = None) -> dict[str, Any]:
    """A command's outcome as JSON: the owner's answer, or its error."""
    match error:
        case None:
            return {"ok": True, "value": value}
        case SagaStateConflict():
            return {
                "ok": False,
                "error": "state_conflict",
                "status": error.status,
                "operation": error.operation,
            }
        case SagaNotFound():
            return {"ok": False, "error": "not_found"}
        case _:
            return {"ok": False, "error": "unavailable", "message": str(error)}


def decode_outcome(saga_id: str, owner: str | None, outcome: dict[str, Any]) -> str:
    """The owner's answer, or its error raised here as the same error."""
    if outcome.get("ok"):
        return str(outcome.get("value"))
    match outcome.get("error"):
        case "state_conflict":
            raise SagaStateConflict(saga_id, str(outcome["status"]), str(outcome["operation"]))
        case "not_found":
            raise SagaNotFound(saga_id)
        case _:
            raise SagaOwnedElsewhere(saga_id, owner)


def _command_of(message: Command) -> SagaCommand:
    match message:
        case CancelSaga(saga_id=saga_id, reason=reason):
            return SagaCommand(saga_id=saga_id, kind="cancel", payload={"reason": reason})
        case DeliverEvent(saga_id=saga_id):
            payload = {
                "event_id": message.event_id,
                "event_type": message.event_type,
                "data": message.data,
            }
            return SagaCommand(saga_id=saga_id, kind="deliver", payload=payload)
    raise TypeError(f"not a command that is forwarded: {message!r}")


def message_of(command: SagaCommand) -> Command:
    """The local message a forwarded command is applied as."""
    payload = command.payload
    if command.kind == "cancel":
        return CancelSaga(saga_id=command.saga_id, reason=str(payload.get("reason", "")))
    return DeliverEvent(
        saga_id=command.saga_id,
        event_id=str(payload["event_id"]),
        event_type=str(payload["event_type"]),
        data=dict(payload.get("data") or {}),
    )


@attrs.define
class ForwardingStats:
    sent: int = 0
    """Commands this instance sent to another's inbox."""
    applied: int = 0
    """Commands from other instances this instance applied."""
    unanswered: int = 0
    """Sent commands whose outcome did not come in time (they stay pending)."""


@attrs.define(eq=False)
class Forwarding:
    """This instance's end of command forwarding: send, and the inbox."""

    store: Store
    lease: InstanceLease
    apply: Callable[[Command], Awaitable[str]]
    """Applies a command here, as a local one (never forwarding it again)."""
    wait: float = 5.0
    """Most seconds a sent command waits for its outcome."""
    stats: ForwardingStats = attrs.field(factory=ForwardingStats)
    _applying: set[str] = attrs.field(factory=set)

    async def send(self, message: Command, owner: str | None) -> str:
        """Have ``owner`` apply ``message``; its answer (or its error, raised here).

        Raises:
            CommandPending: the outcome did not come within ``wait`` seconds (the command
                stays pending and is applied by the saga's owner, now or after a failover).
        """
        command = _command_of(message)
        await self.store.send_command(command, owner)
        self.stats.sent += 1
        pause = 0.01
        with trio.move_on_after(self.wait):
            while True:
                outcome = await self.store.command_outcome(command.command_id)
                if outcome is not None:
                    return decode_outcome(message.saga_id, owner, outcome)
                await trio.sleep(pause)
                pause = min(pause * 2, 0.2)
        self.stats.unanswered += 1
        raise CommandPending(message.saga_id, owner)

    async def inbox(self) -> None:
        """Apply the commands sent to this instance's sagas, as they come, forever."""
        purged_at = trio.current_time()
        async with trio.open_nursery() as nursery:
            while True:
                await self.lease.registered.wait()
                instance_id = self.lease.instance_id
                try:
                    for command in await self.store.pending_commands(instance_id, INBOX_BATCH):
                        if command.command_id not in self._applying:
                            self._applying.add(command.command_id)
                            nursery.start_soon(self._apply, command)
                    if trio.current_time() - purged_at > PURGE_EVERY:
                        purged_at = trio.current_time()
                        await self.store.purge_commands(KEEP_COMMANDS)
                    await self.store.wait_for_commands(instance_id, INBOX_LOOK_EVERY)
                except SagaOrchestratorError as exc:
                    log.warning("the command inbox waits for the store: %s", exc)
                    await trio.sleep(INBOX_LOOK_EVERY)

    async def _apply(self, command: SagaCommand) -> None:
        try:
            await self._apply_once(command)
        finally:
            self._applying.discard(command.command_id)

    async def _apply_once(self, command: SagaCommand) -> None:
        try:
            outcome = encode_outcome(await self.apply(message_of(command)))
        except Exception as exc:
            if not isinstance(exc, SagaOrchestratorError):
                log.exception("applying a forwarded %s command failed", command.kind)
            outcome = encode_outcome(error=exc)
        try:
            await self.store.finish_command(command.command_id, outcome)
            self.stats.applied += 1
        except SagaOrchestratorError as exc:  # it is pending still: applied again, same answer
            log.warning("could not record a forwarded command's outcome: %s", exc)
