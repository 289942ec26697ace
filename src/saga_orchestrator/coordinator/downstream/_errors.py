"""What a call to a downstream service can fail with.

Every httpx exception and every unwanted status is translated into one of these where the call
is made (``_http.ServiceClient.request``), so step code sees only this hierarchy::

    SagaOrchestratorError
    └── ServiceError                  a call to a downstream service failed
        ├── ServiceUnavailable        retry: 5xx, 408, 429, connection error, timeout
        ├── ServiceRejected           do not retry: any other 4xx (also a NonRetryableError)
        │   └── ServiceNotFound       404
        └── BadReply                  a 2xx whose body breaks the contract (NonRetryableError)

A ``NonRetryableError`` fails the step at once; any other exception is retried by the engine
with backoff. Messages name the service, the method and the path, never the base URL (it may
hold credentials) nor any header.
"""

from __future__ import annotations

from saga_orchestrator.errors import SagaOrchestratorError

from ..definition import NonRetryableError

__all__ = [
    "BadReply",
    "ServiceError",
    "ServiceNotFound",
    "ServiceRejected",
    "ServiceUnavailable",
]


class ServiceError(SagaOrchestratorError):
    """A call to a downstream service failed."""

    def __init__(self, message: str, *, service: str, status: int | None = None) -> None:
        super().__init__(message)
        self.service = service
        """Which service: ``auth``, ``user``, ``permission``, ``notification``, ``airtable``."""
        self.status = status
        """The HTTP status answered, ``None`` when no answer came."""


class ServiceUnavailable(ServiceError):
    """The service cannot answer now (5xx, 408, 429, connection error, timeout): retry later.

    ``retry_after`` is the delay the service asked for with ``Retry-After``, in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        service: str,
        status: int | None = None,
        retry_after: float | None = None,
        effect_unknown: bool = False,
    ) -> None:
        super().__init__(message, service=service, status=status)
        self.retry_after = retry_after
        self.effect_unknown = effect_unknown
        """The request may have been applied (it was sent and the answer was lost, or the
        service failed midway): if the step gives up on it, its outcome is unknown, not failed,
        so its compensation runs when declared safe for that."""


class ServiceRejected(ServiceError, NonRetryableError):
    """The service refused the request (a 4xx other than 408 and 429): retrying cannot help."""

    def __init__(self, message: str, *, service: str, status: int, detail: str = "") -> None:
        super().__init__(message, service=service, status=status)
        self.detail = detail
        """What the service said, shortened, secrets removed."""


class ServiceNotFound(ServiceRejected):
    """The resource does not exist (404)."""


class BadReply(ServiceError, NonRetryableError):
    """The service answered success with a body the contract does not allow."""
