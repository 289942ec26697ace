"""The client's errors: the API's error answers and network failures, translated at the one
place where they enter into :class:`ClientError` subclasses that carry the HTTP ``status``, the
API's ``code`` and, for the command line, an exit code::

    ClientError               (exit 1)
     ├── ServiceError         (exit 1) a 5xx answer, or a network problem
     ├── UsageError           (exit 2) bad arguments, a 4xx the caller can fix, a rejected key
     ├── NotFound             (exit 3) a 404
     ├── Conflict             (exit 4) a 409
     ├── SagaNotCompleted     (exit 5) ``--wait``: the saga ended without completing
     └── WaitTimedOut         (exit 6) ``--wait``: the saga was still going at --wait-timeout
"""

from __future__ import annotations

from typing import Any

import httpx

from saga_orchestrator.errors import SagaOrchestratorError

__all__ = [
    "API_KEY_HEADER",
    "EXIT_CONFLICT",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_COMPLETED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_WAIT_TIMEOUT",
    "ClientError",
    "Conflict",
    "NotFound",
    "SagaNotCompleted",
    "ServiceError",
    "UsageError",
    "WaitTimedOut",
    "error_for",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_NOT_COMPLETED = 5
EXIT_WAIT_TIMEOUT = 6
EXIT_INTERRUPTED = 130

API_KEY_HEADER = "X-API-Key"
_KEY_SOURCES = "the API key comes from --api-key, SAGA_ORCHESTRATOR_API_KEY or API_KEY"


class ClientError(SagaOrchestratorError):
    """A command failed; ``exit_code`` says how, ``str()`` says what for a person."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        """The API's ``error.code`` when the error is an answer of the service."""
        self.status = status
        """The answer's HTTP status (``None``: no answer)."""


class ServiceError(ClientError):
    """The service answered 5xx, or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.retryable = retryable
        """A 503, or no answer: the same request may succeed later (send it again with the
        same idempotency key, if it creates something)."""
        self.retry_after = retry_after
        """The answer's ``Retry-After`` seconds, if it gave one."""


class UsageError(ClientError, ValueError):
    """The request was wrong: arguments, body, or the API key."""

    exit_code = EXIT_USAGE


class NotFound(ClientError, LookupError):
    exit_code = EXIT_NOT_FOUND


class Conflict(ClientError):
    """The saga (or stream) is not in a state that allows the request."""

    exit_code = EXIT_CONFLICT


class SagaNotCompleted(ClientError):
    exit_code = EXIT_NOT_COMPLETED


class WaitTimedOut(ClientError, TimeoutError):
    exit_code = EXIT_WAIT_TIMEOUT


def _error_of(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of an error body (empty when the body has none)."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def _describe(response: httpx.Response) -> str:
    """``HTTP 409 saga_state_conflict: message`` and one line per field error."""
    code, message, details = "", response.reason_phrase, []
    error = _error_of(response)
    if error:
        code = str(error.get("code") or "")
        message = str(error.get("message") or message)
        details = error.get("details") or []
    lines = [f"HTTP {response.status_code}{' ' + code if code else ''}: {message}"]
    for item in details if isinstance(details, list) else []:
        if isinstance(item, dict):
            lines.append(f"  {item.get('field', '')}: {item.get('message', '')}")
    available = error.get("available_types")
    if available:
        lines.append(f"  available saga types: {', '.join(map(str, available))}")
    key = error.get("idempotency_key")
    if key:
        lines.append(f"  idempotency key: {key}")
    retry_after = response.headers.get("Retry-After")
    if retry_after:
        lines.append(f"  retry after {retry_after} s")
    return "\n".join(lines)


def error_for(response: httpx.Response) -> ClientError:
    """The error for an answer that is not a success."""
    text = _describe(response)
    code = _error_of(response).get("code")
    code = code if isinstance(code, str) else None
    status = response.status_code
    if status == 404:
        return NotFound(text, code=code, status=status)
    if status == 409:
        return Conflict(text, code=code, status=status)
    if status in (401, 403):
        return UsageError(f"{text}\n  ({_KEY_SOURCES})", code=code, status=status)
    if 400 <= status < 500:
        return UsageError(text, code=code, status=status)
    return ServiceError(
        text,
        code=code,
        status=status,
        retryable=status == 503,
        retry_after=_seconds(response.headers.get("Retry-After")),
    )


def _seconds(text: str | None) -> float | None:
    """A ``Retry-After`` in seconds (an HTTP date is not used here), else ``None``."""
    try:
        seconds = float(text) if text is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 3600 else None
