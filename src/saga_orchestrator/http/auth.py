"""API-key authentication: ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``.

When ``API_KEY`` is set, every route but the public ones (those whose :func:`~.openapi.operation`
says ``public=True``: the health probes, ``/metrics``, ``/openapi.json`` and ``/docs``) needs
the key in either header; a missing or wrong key is a 401 (:class:`~.errors.ApiKeyRejected`)
in the standard error shape. Keys are compared in constant time (digests of equal length, so
not even the key's length leaks) and never logged.

Without ``API_KEY`` nothing is checked; :func:`log_auth_mode` says so at start-up, loudly when
``REQUIRE_API_KEY`` is true (development: the service then listens on loopback only, see
``Settings.bind_host``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from quart import Quart, request

from saga_orchestrator.config import Settings

from .errors import ApiKeyRejected
from .openapi import public_paths

__all__ = [
    "API_KEY_HEADER",
    "bearer_token",
    "install_auth",
    "key_matches",
    "log_auth_mode",
]

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
_REJECTED = f"a valid API key is required ({API_KEY_HEADER} or Authorization: Bearer)"


def key_matches(given: str | None, expected: str) -> bool:
    """Whether ``given`` is ``expected``, compared in constant time."""
    if given is None:
        return False
    return hmac.compare_digest(_digest(given), _digest(expected))


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme in any case)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def install_auth(app: Quart, api_key: str | None) -> None:
    """Require ``api_key`` on every non-public route of ``app``; nothing when it is ``None``."""
    if api_key is None:
        return
    public: list[frozenset[str]] = []  # computed at the first request, when every route is there

    async def check_api_key() -> None:
        if not public:
            public.append(public_paths(app))
        rule = request.url_rule
        # An unmatched request (404, 405) is public only on a public route's path.
        if (rule.rule if rule is not None else request.path) in public[0]:
            return
        headers = request.headers
        given = (headers.get(API_KEY_HEADER), bearer_token(headers.get("Authorization")))
        # Both are compared, whatever the first gives: the time taken says nothing.
        matches = [key_matches(key, api_key) for key in given]
        if not any(matches):
            raise ApiKeyRejected(_REJECTED)

    app.before_request(check_api_key)


def log_auth_mode(settings: Settings) -> None:
    """At start-up: say how callers are authenticated; warn loudly when they are not."""
    if settings.api_key is not None:
        log.info(
            "API key authentication is on (header %s or Authorization: Bearer)", API_KEY_HEADER
        )
    elif settings.require_api_key:
        ignored = f"; HOST={settings.host} ignored" if settings.bind_host != settings.host else ""
        log.warning(
            "API_KEY is not set: the API is open to anyone who can reach it, so it listens on "
            "%s only (ENVIRONMENT=%s%s). Set API_KEY to serve on HOST, or REQUIRE_API_KEY=false "
            "if something in front of the service authenticates callers.",
            settings.bind_host,
            settings.environment,
            ignored,
        )
    else:
        log.info(
            "API_KEY is not set and REQUIRE_API_KEY=false: callers are expected to be "
            "authenticated in front of the service"
        )
