"""API-key authentication: the ``X-API-Key`` header, checked against ``API_KEY``.

When ``API_KEY`` is set every route except the health and metrics routes requires it; a missing
or wrong key is a 401 (:class:`~.errors.ApiKeyRejected`). Keys are compared in constant time and
never logged.
"""

from __future__ import annotations

import hmac
import logging

from quart import Quart, request

from saga_orchestrator.config import Settings

from .errors import ApiKeyRejected

__all__ = [
    "API_KEY_HEADER",
    "PUBLIC_PATHS",
    "install_auth",
    "is_public",
    "key_matches",
    "log_auth_mode",
]

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
PUBLIC_PATHS = ("/health", "/metrics")
"""Paths (and everything below them) that need no key: probes and scrapers."""


def is_public(path: str) -> bool:
    return any(path == public or path.startswith(public + "/") for public in PUBLIC_PATHS)


def key_matches(given: str | None, expected: str) -> bool:
    """Whether ``given`` is ``expected``, compared in constant time."""
    if given is None:
        return False
    return hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )


def install_auth(app: Quart, api_key: str | None) -> None:
    """Require ``api_key`` on every non-public route of ``app``; nothing when it is ``None``."""
    if api_key is None:
        return

    async def check_api_key() -> None:
        if is_public(request.path):
            return
        if not key_matches(request.headers.get(API_KEY_HEADER), api_key):
            raise ApiKeyRejected(f"a valid {API_KEY_HEADER} header is required")

    app.before_request(check_api_key)


def log_auth_mode(settings: Settings) -> None:
    """At start-up: warn when the API is open to anyone who can reach it."""
    if settings.api_key is not None:
        log.info("API key authentication is on (header %s)", API_KEY_HEADER)
    elif settings.require_api_key:
        log.warning(
            "API_KEY is not set: the API is open to anyone who can reach it "
            "(ENVIRONMENT=%s). Set API_KEY before exposing the service.",
            settings.environment,
        )
    else:
        log.info(
            "API_KEY is not set and REQUIRE_API_KEY=false: callers are expected to be "
            "authenticated in front of the service"
        )
