"""Correlation ids: every request has one, and every log line about the request carries it.

A request's ``X-Correlation-ID`` header is taken as its correlation id when it is a plausible id
(1 to 128 characters of ``A-Z a-z 0-9 . _ : / + = @ -``; anything else could forge log lines);
otherwise a new one is made. The id is sent back in the response's ``X-Correlation-ID`` header,
errors included, and put in the log context of the request's task with the saga id of the URL
(``/sagas/<saga_id>/...``), so every line logged while handling the request has both.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from quart import Quart, Response, g, has_request_context, request

from saga_orchestrator.logging_setup import bind_log_context

__all__ = [
    "CORRELATION_HEADER",
    "current_correlation_id",
    "install_correlation",
    "new_correlation_id",
]

CORRELATION_HEADER = "X-Correlation-ID"
_VALID_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
_G_KEY = "correlation_id"


def new_correlation_id() -> str:
    return str(uuid.uuid4())


def _accepted(given: str | None) -> str:
    if given is not None and _VALID_ID.fullmatch(given):
        return given
    return new_correlation_id()


def _saga_id(view_args: Mapping[str, Any] | None) -> str | None:
    """The saga id of the URL in its canonical form; ``None`` when there is none (or it is not
    a UUID: such a request is a 404 and names no saga)."""
    raw = (view_args or {}).get("saga_id")
    if not isinstance(raw, str):
        return None
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return None


def current_correlation_id() -> str | None:
    """The correlation id of the request being handled (``None`` outside a request)."""
    return g.get(_G_KEY) if has_request_context() else None


def install_correlation(app: Quart) -> None:
    """Give every request of ``app`` a correlation id; install it before anything that can
    reject a request (authentication), so that rejections carry it too."""

    async def begin() -> None:
        correlation_id = _accepted(request.headers.get(CORRELATION_HEADER))
        setattr(g, _G_KEY, correlation_id)
        # Not reset at the end: the request's task ends with it, and Hypercorn's access log
        # line, written after the response was sent, still has the ids.
        bind_log_context(saga_id=_saga_id(request.view_args), correlation_id=correlation_id)

    async def answer(response: Response) -> Response:
        correlation_id = g.get(_G_KEY)
        if correlation_id is not None:
            response.headers[CORRELATION_HEADER] = correlation_id
        return response

    app.before_request(begin)
    app.after_request(answer)
