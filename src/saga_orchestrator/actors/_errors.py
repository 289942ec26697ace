"""Errors of the actor runtime."""

from __future__ import annotations

from saga_orchestrator.errors import SagaOrchestratorError


class ActorError(SagaOrchestratorError):
    """Root of the actor runtime's errors."""


class MailboxFull(ActorError):
    """``tell_nowait`` found the actor's bounded mailbox full; back off and retry."""

    def __init__(self, actor: str, capacity: int) -> None:
        super().__init__(f"mailbox of actor {actor!r} is full ({capacity} messages); retry later")
        self.actor = actor
        self.capacity = capacity


class ActorStopped(ActorError):
    """The actor has stopped and accepts no more messages."""

    def __init__(self, actor: str) -> None:
        super().__init__(f"actor {actor!r} has stopped")
        self.actor = actor


class AskTimeout(ActorError, TimeoutError):
    """No reply arrived within the ask's timeout."""

    def __init__(self, actor: str, message: object, timeout: float) -> None:
        super().__init__(
            f"actor {actor!r} did not answer {type(message).__name__} within {timeout:g} s"
        )
        self.actor = actor
        self.message_type = type(message).__name__
        self.timeout = timeout


class NoReply(ActorError):
    """The actor dropped the request without answering it (it stopped or crashed)."""

    def __init__(self, actor: str, message: object) -> None:
        super().__init__(f"actor {actor!r} dropped {type(message).__name__} without a reply")
        self.actor = actor


class SupervisorEscalation(ActorError):
    """A supervisor's children restarted more often than its intensity allows."""

    def __init__(self, supervisor: str, child: str, restarts: int, period: float) -> None:
        super().__init__(
            f"supervisor {supervisor!r} gives up: child {child!r} needed more than {restarts} "
            f"restarts within {period:g} s"
        )
        self.supervisor = supervisor
        self.child = child
