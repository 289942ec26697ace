"""The error hierarchy of the service.

Every error the service raises on purpose derives from :class:`SagaOrchestratorError`.
Foreign errors (asyncpg, sqlite3, redis, httpx) are translated where they enter. The HTTP
status of each error is decided in one place: ``saga_orchestrator.http.errors``.

    SagaOrchestratorError
    ├── ConfigError                    a setting is missing or has a bad value
    ├── ValidationError                input that fails a schema (field-level details)
    ├── NotFoundError
    │   ├── SagaNotFound
    │   ├── UnknownSagaType
    │   └── UnknownSagaVersion         a known type, but not that version
    ├── ConflictError
    │   ├── ConcurrencyError           an append expected another stream version
    │   ├── DuplicateEventId           an event id is taken
    │   ├── LeaseLost                  another instance owns the saga now: stop driving it
    │   ├── SagaStateConflict          e.g. cancelling a saga that has ended
    │   └── SagaDefinitionMissing      no live owner, and its version is not loaded here
    ├── OverloadedError                admission limit reached, retry later
    ├── SagaOwnedElsewhere             another instance drives the saga: retry later
    │   └── CommandPending             handed to the owner through the store, not answered yet
    ├── StoreError                     the store failed
    │   ├── StoreUnavailable           the database cannot be reached now: retry with backoff
    │   └── StoreRejected              this request can never succeed: do not retry it
    ├── BusError                       the event bus failed
    │   └── BusUnavailable             the bus cannot be reached now: retry with backoff
    └── ActorError                     (saga_orchestrator.actors) mailbox, ask, supervision
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

E = TypeVar("E", bound=BaseException)


def find_error(error: BaseException, kind: type[E]) -> E | None:
    """The first ``kind`` error in ``error``, alone or inside (nested) exception groups: trio
    wraps what a task of a nursery raises in an ``ExceptionGroup``."""
    if isinstance(error, kind):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = find_error(inner, kind)
            if found is not None:
                return found
    return None


class SagaOrchestratorError(Exception):
    """Root of every error the service raises on purpose."""


class ConfigError(SagaOrchestratorError, ValueError):
    """A setting is missing or has a value that is not allowed."""


class ValidationError(SagaOrchestratorError, ValueError):
    """Input failed validation; ``errors`` names each bad field."""

    def __init__(self, message: str, errors: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.errors = list(errors)


class NotFoundError(SagaOrchestratorError, LookupError):
    """Something named by the caller does not exist."""


class SagaNotFound(NotFoundError):
    def __init__(self, saga_id: str) -> None:
        super().__init__(f"saga {saga_id!r} does not exist")
        self.saga_id = saga_id


class UnknownSagaType(NotFoundError):
    def __init__(self, saga_type: str, available: Sequence[str]) -> None:
        names = ", ".join(sorted(available)) or "none"
        super().__init__(f"unknown saga type {saga_type!r}; available types: {names}")
        self.saga_type = saga_type
        self.available = sorted(available)


class UnknownSagaVersion(NotFoundError):
    """The saga type is known, but not in the version asked for."""

    def __init__(self, saga_type: str, version: int, available: Sequence[int]) -> None:
        loaded = ", ".join(str(v) for v in sorted(available)) or "none"
        super().__init__(
            f"saga type {saga_type!r} has no version {version}; loaded versions: {loaded}"
        )
        self.saga_type = saga_type
        self.version = version
        self.available = sorted(available)


class ConflictError(SagaOrchestratorError):
    """The request conflicts with the current state."""


class ConcurrencyError(ConflictError):
    """An append named a stream version that is no longer the current one."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, not the expected {expected}; "
            "reload the stream and retry"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class SagaOwnedElsewhere(SagaOrchestratorError):
    """The saga is driven by another live instance, and the command could not reach it."""

    def __init__(self, saga_id: str, owner: str | None) -> None:
        super().__init__(
            f"saga {saga_id!r} is driven by instance {owner!r}, which did not answer: retry later"
        )
        self.saga_id = saga_id
        self.owner = owner
        self.retry_after = 1.0


class CommandPending(SagaOwnedElsewhere):
    """The command was kept in the store for the saga's owner, which did not answer in time: it
    is pending there and will be applied (by that owner, or by the next one after a failover).
    Answered like :class:`SagaOwnedElsewhere`; a caller that only needs it durable (the event
    router delivering a reply) may take it as done."""


class LeaseLost(ConflictError):
    """An append was fenced: the saga is owned by another instance (or at another epoch) now,
    so this one must stop driving it."""

    def __init__(self, saga_id: str, instance_id: str, owner: str | None) -> None:
        super().__init__(
            f"saga {saga_id!r} is no longer owned by instance {instance_id!r} "
            f"(its owner is {owner!r}): this instance stops driving it"
        )
        self.saga_id = saga_id
        self.instance_id = instance_id
        self.owner = owner


class SagaStateConflict(ConflictError):
    """The saga's status does not allow the operation (``detail`` says why, when more than the
    status stands in the way)."""

    def __init__(self, saga_id: str, status: str, operation: str, *, detail: str = "") -> None:
        text = f"cannot {operation} saga {saga_id!r}: its status is {status!r}"
        super().__init__(f"{text}; {detail}" if detail else text)
        self.saga_id = saga_id
        self.status = status
        self.operation = operation
        self.detail = detail


class SagaDefinitionMissing(ConflictError):
    """No live instance drives the saga, and this process has not loaded its definition's
    version: it cannot drive it either."""

    def __init__(self, saga_id: str, saga_type: str, version: int) -> None:
        super().__init__(
            f"saga {saga_id!r} runs on {saga_type} version {version}, which this process has "
            "not loaded; start a process that has it"
        )
        self.saga_id = saga_id
        self.saga_type = saga_type
        self.version = version


class OverloadedError(SagaOrchestratorError):
    """The service is at its admission limit; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreError(SagaOrchestratorError):
    """The store failed to read or write."""


class StoreUnavailable(StoreError):
    """The database cannot be reached right now; the operation may be retried."""


class StoreRejected(StoreError):
    """The store refused this request for good (a value it cannot hold, a constraint it
    breaks): retrying the same request can never succeed."""


class BusError(SagaOrchestratorError):
    """The event bus (Redis Streams or the in-process bus) failed."""


class BusUnavailable(BusError):
    """The event bus cannot be reached right now; the operation may be retried."""


class DuplicateIdempotencyKey(ConflictError):
    """A saga was started with an idempotency key that an existing saga already holds."""

    def __init__(self, idempotency_key: str, saga_id: str) -> None:
        super().__init__(f"idempotency key {idempotency_key!r} belongs to saga {saga_id!r}")
        self.idempotency_key = idempotency_key
        self.saga_id = saga_id


class DuplicateEventId(ConflictError):
    """An appended event's id is already used by a stored event (event ids are unique)."""

    def __init__(self, event_ids: list[str]) -> None:
        names = ", ".join(repr(i) for i in event_ids)
        super().__init__(f"event id {names} is already used by a stored event")
        self.event_ids = event_ids
