"""What to do with an answer (or its absence): the retry policy both clients share.

Sent again, with backoff (``Retry-After`` honoured): a request that never reached the service
(no connection), a 503 ``overloaded`` (refused before anything was done), and any failure of
a request that is safe to replay (:attr:`~._operations.Call.replayable`). Everything else is
raised as the :class:`~._errors.ClientError` of its answer.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import httpx

from ._errors import ClientError, ServiceError, error_for
from ._operations import Call

__all__ = ["Retry", "Settled", "settle"]


@attrs.frozen
class Retry:
    after: float
    error: ClientError
    """What the attempt came to."""


@attrs.frozen
class Settled:
    value: Any


def settle(
    call: Call,
    outcome: httpx.Response | httpx.HTTPError,
    attempt: int,
    *,
    retries: int,
    backoff: float,
    base_url: str,
) -> Retry | Settled:
    """``Settled`` with the decoded body, or ``Retry`` after some seconds; raises the
    ``ClientError`` when the call has failed for good (``attempt`` counts from 1)."""
    error = _error(call, outcome, base_url)
    if error is None:
        assert isinstance(outcome, httpx.Response)
        return Settled(_decoded(call, outcome))
    if attempt > retries or not _may_resend(call, outcome, error):
        raise error
    delay = min(backoff * 2 ** (attempt - 1), 5.0)
    after = error.retry_after if isinstance(error, ServiceError) else None
    return Retry(max(delay, after or 0.0), error)


def _error(
    call: Call, outcome: httpx.Response | httpx.HTTPError, base_url: str
) -> ClientError | None:
    where = f"{call.method} {call.path}"
    if isinstance(outcome, httpx.TimeoutException):
        return ServiceError(f"{base_url} did not answer {where} in time", retryable=True)
    if isinstance(outcome, httpx.HTTPError):
        return ServiceError(
            f"cannot reach {base_url} for {where} ({type(outcome).__name__}: {outcome})",
            retryable=True,
        )
    if outcome.is_success or outcome.status_code in call.accept:
        return None
    return error_for(outcome)


def _may_resend(call: Call, outcome: httpx.Response | httpx.HTTPError, error: ClientError) -> bool:
    if isinstance(outcome, httpx.ConnectError | httpx.ConnectTimeout):
        return True  # nothing was sent
    if isinstance(outcome, httpx.Response):
        if outcome.status_code != 503:
            return False
        if error.code == "overloaded":
            return True  # refused before anything was done
    return call.replayable


def _decoded(call: Call, response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except json.JSONDecodeError:
        raise ServiceError(
            f"{call.method} {call.path} answered {response.status_code} with a body that is "
            "not JSON"
        ) from None
