"""One downstream service over its connection pool: headers, the bound on requests in flight,
and the one place where httpx exceptions and unwanted statuses are translated into
``ServiceError`` s."""

from __future__ import annotations

import email.utils
import logging
import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import attrs
import httpx
import trio

from saga_orchestrator import __version__

from ._errors import BadReply, ServiceError, ServiceNotFound, ServiceRejected, ServiceUnavailable

if TYPE_CHECKING:
    from ..definition import StepContext

__all__ = [
    "CORRELATION_HEADER",
    "IDEMPOTENCY_HEADER",
    "RETRYABLE_STATUSES",
    "Call",
    "ServiceClient",
    "parse_retry_after",
    "segment",
]

log = logging.getLogger("saga_orchestrator.services")

IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = f"saga-orchestrator/{__version__}"
"""Who calls, in the downstream services' logs."""
CORRELATION_HEADER = "X-Correlation-ID"
RETRYABLE_STATUSES = frozenset({408, 429})
"""4xx statuses that are retried (every 5xx is too)."""
_DETAIL_LIMIT = 200
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]+")


@attrs.frozen
class Call:
    """What identifies one call: its idempotency key and the correlation id sent with it."""

    idempotency_key: str
    correlation_id: str

    @classmethod
    def of(cls, ctx: StepContext, operation: str | None = None) -> Call:
        """The call a step makes: the step's key (``<saga_id>:<step>``), suffixed with
        ``:<operation>`` when the step (or its compensation) makes more than one kind of call.
        The correlation id is the saga's, or its id when it has none."""
        key = ctx.idempotency_key if operation is None else f"{ctx.idempotency_key}:{operation}"
        return cls(key, ctx.correlation_id or ctx.saga_id)


def segment(value: str) -> str:
    """``value`` quoted to be one path segment (ids come from saga inputs)."""
    return quote(value, safe="")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait: delta-seconds or an HTTP date.

    ``None`` when the header is absent or unreadable; a date in the past gives ``0``.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class ServiceClient:
    """Calls one downstream service over an httpx transport (no redirects followed, no
    cookies kept; ``timeout`` seconds for each of connecting, sending and answering).

    At most ``max_in_flight`` requests are in the client at once (``None``: no bound); the
    others wait, first come first served, before they reach its pool. Every request carries
    ``Idempotency-Key``, ``X-Correlation-ID`` and, when a token is configured,
    ``Authorization: Bearer <token>``; the token is never logged nor put in an error message.
    """

    def __init__(
        self,
        service: str,
        base_url: str,
        transport: httpx.AsyncBaseTransport,
        *,
        token: str | None = None,
        max_in_flight: int | None = None,
        timeout: float | None = None,
    ) -> None:
        self.service = service
        self._base_url = base_url.rstrip("/")
        self._transport = transport
        self._token = token
        self._timeouts = (
            None
            if timeout is None
            else {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        )
        self._turns = None if max_in_flight is None else trio.Semaphore(max_in_flight)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.service}>"

    async def request(
        self,
        method: str,
        path: str,
        call: Call,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        absent_ok: bool = False,
    ) -> dict[str, Any] | None:
        """Send one request; the JSON object answered (``{}`` for an empty body).

        ``absent_ok`` makes a 404 answer ``None`` (deleting what is not there is done).

        Raises:
            ServiceUnavailable: 5xx, 408, 429 (with ``retry_after``), connection error, timeout.
            ServiceNotFound: 404 (unless ``absent_ok``).
            ServiceRejected: any other 4xx.
            BadReply: a 2xx whose body is not a JSON object, or an unexpected status.
        """
        what = f"{self.service} service: {method} {path}"
        headers = {
            IDEMPOTENCY_HEADER: call.idempotency_key,
            CORRELATION_HEADER: call.correlation_id,
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        started = time.monotonic()
        try:
            if self._turns is None:
                response = await self._send(method, path, json, params, headers)
            else:
                async with self._turns:
                    response = await self._send(method, path, json, params, headers)
        except httpx.TimeoutException as exc:
            raise self._logged(
                ServiceUnavailable(
                    f"{what} timed out ({type(exc).__name__})",
                    service=self.service,
                    effect_unknown=not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout),
                )
            ) from None
        except httpx.TransportError as exc:
            raise self._logged(
                ServiceUnavailable(
                    f"{what} could not be sent or answered ({type(exc).__name__}: "
                    f"{self._clean(str(exc))})",
                    service=self.service,
                    effect_unknown=not isinstance(exc, httpx.ConnectError),
                )
            ) from None
        except httpx.HTTPError as exc:
            raise self._logged(
                BadReply(f"{what} failed ({type(exc).__name__})", service=self.service)
            ) from None
        elapsed_ms = (time.monotonic() - started) * 1000
        log.debug("%s -> %d in %.0f ms", what, response.status_code, elapsed_ms)
        if response.status_code == 404 and absent_ok:
            return None
        if 200 <= response.status_code < 300:
            return self._body(what, response)
        raise self._logged(self._status_error(what, response))

    async def _send(
        self,
        method: str,
        path: str,
        json: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
        headers: dict[str, str],
    ) -> httpx.Response:
        request = httpx.Request(
            method,
            self._base_url + path,
            json=dict(json) if json is not None else None,
            params=dict(params) if params is not None else None,
            headers=headers,
        )
        if self._timeouts is not None:
            request.extensions["timeout"] = self._timeouts
        response = await self._transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    def _body(self, what: str, response: httpx.Response) -> dict[str, Any]:
        if not response.content:
            return {}
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise self._logged(
                BadReply(
                    f"{what} answered {response.status_code} without a JSON object",
                    service=self.service,
                    status=response.status_code,
                )
            )
        return body

    def _status_error(self, what: str, response: httpx.Response) -> ServiceError:
        status = response.status_code
        detail = self._detail(response)
        said = f"{what} answered {status} {response.reason_phrase}".rstrip()
        if status >= 500 or status in RETRYABLE_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None:
                said += f" (retry after {retry_after:g} s)"
            return ServiceUnavailable(
                f"{said}: {detail}" if detail else said,
                service=self.service,
                status=status,
                retry_after=retry_after,
                # 503, 429, 408: the service says it did not take the request; other 5xx may
                # have failed midway
                effect_unknown=status >= 500 and status != 503,
            )
        if 400 <= status < 500:
            if status == 401:
                said += " (check SERVICE_AUTH_TOKEN)"
            error = ServiceNotFound if status == 404 else ServiceRejected
            return error(
                f"{said}: {detail}" if detail else said,
                service=self.service,
                status=status,
                detail=detail,
            )
        return BadReply(f"{said}: not a status the contract allows", service=self.service)

    def _detail(self, response: httpx.Response) -> str:
        """What the service said: ``error``, ``detail`` or ``message`` of a JSON body, or the
        text; shortened, control characters and the token removed."""
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if isinstance(body, dict):
            body = body.get("error") or body.get("detail") or body.get("message") or ""
        return self._clean(str(body))[:_DETAIL_LIMIT]

    def _clean(self, text: str) -> str:
        text = _UNPRINTABLE.sub(" ", text).strip()
        if self._token:
            text = text.replace(self._token, "***")
        return text

    def _logged(self, error: ServiceError) -> ServiceError:
        log.info("%s", error)
        return error
