"""The driver: starts the planned sagas over HTTP, as a careful client would, and writes down
every answer the checker needs.

A request that may safely be sent again (a start with an idempotency key, a publish with an
event id, a cancel) is retried through every fault until it is answered. A start without a key
is retried only when it never reached the server (connection refused); when its answer is lost
the driver records that it does not know whether the saga exists (the checker then allows zero
or one saga for it).

With several orchestrators the driver spreads its requests over them (each to the next in
turn; one that refuses the connection is skipped), and sends each cancel to another one than
the start went to: the command must reach the saga's owner whichever instance receives it.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Sequence
from typing import Any

import attrs
import httpx
import trio

from ..support.processes import SpreadClient
from .plan import PlannedSaga

AMBIGUOUS = "ambiguous"
"""The request may or may not have had its effect (its answer was lost)."""
GAVE_UP = "gave up"
"""No answer before the driver's deadline."""
REQUEST_TIMEOUT = 15.0
RETRY_MAX = 1.0
"""Longest pause between two tries of a request."""
_ID = re.compile(r"/sagas/[0-9a-f-]{36}")


@attrs.define
class DriverRecord:
    """What the driver sent for one planned saga and what it was answered."""

    planned: PlannedSaga
    saga_ids: set[str] = attrs.field(factory=set)
    """Saga ids named by the 2xx answers to its starts."""
    acknowledged: bool = False
    """A start (or publish) was answered 2xx: the saga (or event) must exist."""
    ambiguous: bool = False
    """A start without a key lost its answer: zero or one saga may exist."""
    gave_up: bool = False
    published: list[dict[str, Any]] = attrs.field(factory=list)
    """The 2xx answers to its publishes."""
    started_via: int | None = None
    """The orchestrator (index) that acknowledged its start."""
    cancel_status: int | None = None
    """The final answer to its cancel (202: accepted; 409: it had ended or parked)."""
    problems: list[str] = attrs.field(factory=list)
    """Answers that break the API's promises."""


class Driver:
    def __init__(self, base_urls: Sequence[str], api_key: str, sagas: list[PlannedSaga]) -> None:
        self.base_urls = list(base_urls)
        self.api_key = api_key
        self.records = {planned.n: DriverRecord(planned) for planned in sagas}
        self.answers: collections.Counter[str] = collections.Counter()
        """``"POST /sagas/start 202"`` -> how many; transport errors as ``... error``."""
        self.unexpected: list[str] = []
        """5xx answers other than 503, with their bodies (the service should say 503)."""
        self._spread: SpreadClient | None = None
        self._give_up_at = 0.0

    async def run(self, start: float, give_up_at: float) -> None:
        """Start every planned saga at ``start`` + its offset (``trio.current_time()`` clock);
        requests still unanswered at ``give_up_at`` are given up."""
        self._give_up_at = give_up_at
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        async with SpreadClient(
            self.base_urls, api_key=self.api_key, timeout=REQUEST_TIMEOUT, limits=limits
        ) as spread:
            self._spread = spread
            async with trio.open_nursery() as nursery:
                for record in self.records.values():
                    nursery.start_soon(self._drive, record, start)

    async def _drive(self, record: DriverRecord, start: float) -> None:
        planned = record.planned
        await trio.sleep_until(start + planned.at)
        once = self._start_once if planned.via == "api" else self._publish_once
        if planned.repeat == "together":
            async with trio.open_nursery() as nursery:
                nursery.start_soon(once, record)
                nursery.start_soon(once, record)
        else:
            await once(record)
            if planned.repeat == "after":
                await trio.sleep(0.2)
                await once(record)
        if planned.cancel_after is not None and len(record.saga_ids) == 1:
            await trio.sleep(planned.cancel_after)
            await self._cancel(record, next(iter(record.saga_ids)))

    async def _start_once(self, record: DriverRecord) -> None:
        planned = record.planned
        body: dict[str, Any] = {
            "saga_type": planned.saga_type,
            "data": planned.data,
            "correlation_id": planned.correlation_id,
        }
        if planned.idempotency_key is not None:
            body["idempotency_key"] = planned.idempotency_key
        answer = await self._send(
            "POST", "/sagas/start", body, repeatable=planned.idempotency_key is not None
        )
        if isinstance(answer, str):
            record.ambiguous |= answer == AMBIGUOUS
            record.gave_up |= answer == GAVE_UP
            return
        answer, via = answer
        if answer.status_code in (200, 202):
            record.acknowledged = True
            record.saga_ids.add(answer.json()["saga_id"])
            record.started_via = via
        elif answer.status_code >= 500:  # a key-less start answered 5xx: it may exist
            record.ambiguous = True
        else:
            record.problems.append(f"start answered {answer.status_code}: {answer.text[:300]}")

    async def _publish_once(self, record: DriverRecord) -> None:
        planned = record.planned
        body = {
            "event_id": planned.event_id,
            "event_type": planned.event_type,
            "stream_id": planned.stream_id,
            "data": planned.data,
            "metadata": {"correlation_id": planned.correlation_id},
        }
        answer = await self._send("POST", "/events/publish", body, repeatable=True)
        if isinstance(answer, str):
            record.gave_up = True
            return
        answer, _ = answer
        if answer.status_code in (200, 202):
            record.acknowledged = True
            record.published.append(answer.json())
        else:
            record.problems.append(f"publish answered {answer.status_code}: {answer.text[:300]}")

    async def _cancel(self, record: DriverRecord, saga_id: str) -> None:
        body = {"reason": "cancelled by the chaos driver"}
        answer = await self._send(
            "POST", f"/sagas/{saga_id}/cancel", body, repeatable=True, avoid=record.started_via
        )
        if isinstance(answer, str):
            record.gave_up = True
            return
        answer, _ = answer
        record.cancel_status = answer.status_code
        if answer.status_code not in (202, 409):
            record.problems.append(f"cancel answered {answer.status_code}: {answer.text[:300]}")

    async def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any],
        *,
        repeatable: bool,
        avoid: int | None = None,
    ) -> tuple[httpx.Response, int] | str:
        """The answer and the orchestrator (index) that gave it; retried through transport
        errors and 5xx if ``repeatable``, else only while the request cannot have reached the
        server (or the service is at its limit). Each try goes to the next orchestrator that
        takes the connection (another than ``avoid`` first, when there are several)."""
        assert self._spread is not None
        route = f"{method} {_ID.sub('/sagas/{id}', path)}"
        delay = 0.05
        while True:
            try:
                response, via = await self._spread.request(method, path, json=body, avoid=avoid)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
                self.answers[f"{route} refused"] += 1  # never reached the server
            except httpx.TransportError as exc:
                self.answers[f"{route} {type(exc).__name__}"] += 1
                if not repeatable:
                    return AMBIGUOUS
            else:
                status = response.status_code
                self.answers[f"{route} {status}"] += 1
                if status >= 500 and status != 503:
                    self.unexpected.append(f"{route} {status}: {response.text[:300]}")
                if status < 500:
                    return response, via
                overloaded = status == 503 and "overloaded" in response.text
                if not (repeatable or overloaded):
                    return response, via
            if trio.current_time() >= self._give_up_at:
                return GAVE_UP
            await trio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
