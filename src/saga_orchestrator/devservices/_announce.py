"""Publishing the connector's events: ``POST {ORCHESTRATOR_URL}/events/publish``."""

from __future__ import annotations

import logging

import attrs
import httpx
import trio

from ._records import Announcement

__all__ = ["HttpAnnouncer"]

log = logging.getLogger("saga_orchestrator.devservices")


@attrs.frozen(kw_only=True)
class HttpAnnouncer:
    """Posts each announcement to the orchestrator as an event addressed to its saga::

        POST /events/publish
        X-API-Key: <API_KEY>            (when set)
        Idempotency-Key: <event id>
        {"event_id": ..., "event_type": "airtable.sync.completed",
         "stream_id": "airtable-base-<base id>",
         "data": {"saga_id": ..., "job_id": ..., ...}, "metadata": {"saga_id": ...}}

    Retried with backoff (``attempts`` times) on a connection error or a 5xx; given up with a
    warning after that or on a 4xx.
    """

    orchestrator_url: str
    api_key: str | None = attrs.field(default=None, repr=False)
    attempts: int = 5
    backoff: float = 0.5
    timeout: float = 10.0

    async def __call__(self, announcement: Announcement) -> None:
        body = {
            "event_id": announcement.event_id,
            "event_type": announcement.event_type,
            "stream_id": announcement.stream_id,
            "data": announcement.data,
            "metadata": {"saga_id": announcement.saga_id},
        }
        headers = {"Idempotency-Key": announcement.event_id}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        url = self.orchestrator_url.rstrip("/") + "/events/publish"
        delay = self.backoff
        problem = ""
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            for attempt in range(1, self.attempts + 1):
                try:
                    response = await client.post(url, json=body, headers=headers)
                except httpx.HTTPError as exc:
                    problem = type(exc).__name__
                else:
                    if response.status_code < 300:
                        return
                    problem = f"status {response.status_code}"
                    if response.status_code < 500:
                        break
                if attempt < self.attempts:
                    await trio.sleep(delay)
                    delay *= 2
        log.warning(
            "could not publish %s for saga %s to the orchestrator: %s",
            announcement.event_type,
            announcement.saga_id,
            problem,
        )
