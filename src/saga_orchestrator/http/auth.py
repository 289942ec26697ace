"""API-key authentication: ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``.

When keys are configured (``API_KEY``, named ``default``, and the named keys of ``API_KEYS``),
every route but the public ones (those whose :func:`~.openapi.operation` says ``public=True``:
the health probes, ``/metrics``, ``/openapi.json`` and ``/docs``) needs one of them in either
header; a missing or wrong key is a 401 (:class:`~.errors.ApiKeyRejected`), and a read-only key
(``name:key:read``) used with any method but ``GET``, ``HEAD`` and ``OPTIONS`` is a 403
(:class:`~.errors.ReadOnlyKey`), whatever the route: both in the standard error shape.

The given key is compared with *every* configured key, in constant time (SHA-256 digests
compared with :func:`hmac.compare_digest`, so neither its length nor which key it resembles
leaks through the time taken), and is never logged.

Who called: :func:`api_key_name` is the name of the key the request came with (handlers record
it, e.g. as the author of an operator action); the access log line (Hypercorn's, at ``DEBUG``:
``saga_orchestrator.service.hypercorn_config``) shows it in its user field through
:func:`key_name_of_scope`.

Without keys nothing is checked; :func:`log_auth_mode` says so at start-up, loudly when
``REQUIRE_API_KEY`` is true (development: the service then listens on loopback only, see
``Settings.bind_host``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from quart import Quart, g, has_request_context, request

from saga_orchestrator.api_keys import READ_METHODS, ApiKey
from saga_orchestrator.config import Settings

from .errors import ApiKeyRejected, ReadOnlyKey
from .openapi import is_ui_path, public_paths

__all__ = [
    "API_KEY_HEADER",
    "api_key_name",
    "bearer_token",
    "install_auth",
    "key_matches",
    "key_name_of_scope",
    "log_auth_mode",
    "matching_key",
    "remember_key_name",
]

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
_REJECTED = f"a valid API key is required ({API_KEY_HEADER} or Authorization: Bearer)"
_READ_ONLY = "this API key is read-only: it may list and inspect (GET), not {method}"
_G_NAME = "api_key_name"
_SCOPE_NAME = "saga_orchestrator.api_key_name"
"""Where the key's name is kept in the ASGI scope, for the access log."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def key_matches(given: str | None, expected: str) -> bool:
    """Whether ``given`` is ``expected``, compared in constant time."""
    if given is None:
        return False
    return hmac.compare_digest(_digest(given), _digest(expected))


def matching_key(
    given: Sequence[str | None], keys: Sequence[tuple[bytes, ApiKey]]
) -> ApiKey | None:
    """The first configured key that one of ``given`` (in order) is, else ``None``.

    ``keys`` are the configured keys with their SHA-256 digests. Every given value is compared
    with every key, whatever matched already: the time taken says nothing about which.
    """
    found: ApiKey | None = None
    for value in given:
        digest = _digest(value) if value is not None else None
        for expected, key in keys:
            same = digest is not None and hmac.compare_digest(digest, expected)
            if same and found is None:
                found = key
    return found


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme in any case)."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def api_key_name() -> str | None:
    """The name of the API key the current request came with (``default`` for ``API_KEY``).

    ``None`` outside a request, on a public route, and when the service checks no keys.
    """
    return g.get(_G_NAME) if has_request_context() else None


def remember_key_name(name: str) -> None:
    """Record the name of the key the current request came with (:func:`api_key_name`, the
    access log): for routes that authenticate their callers themselves (the dashboard)."""
    setattr(g, _G_NAME, name)
    request.scope[_SCOPE_NAME] = name


def key_name_of_scope(scope: Mapping[str, Any]) -> str | None:
    """The key name an authenticated request left in its ASGI scope (for the access log)."""
    name = scope.get(_SCOPE_NAME)
    return name if isinstance(name, str) else None


def install_auth(app: Quart, keys: Sequence[ApiKey]) -> None:
    """Require one of ``keys`` on every non-public route of ``app``; nothing when empty."""
    if not keys:
        return
    digests = [(_digest(key.key), key) for key in keys]
    public: list[frozenset[str]] = []  # computed at the first request, when every route is there

    async def check_api_key() -> None:
        if is_ui_path(request.path):
            return  # the dashboard signs its users in itself (saga_orchestrator.ui.guard)
        if not public:
            public.append(public_paths(app))
        rule = request.url_rule
        # An unmatched request (404, 405) is public only on a public route's path.
        if (rule.rule if rule is not None else request.path) in public[0]:
            return
        headers = request.headers
        given = (headers.get(API_KEY_HEADER), bearer_token(headers.get("Authorization")))
        key = matching_key(given, digests)
        if key is None:
            raise ApiKeyRejected(_REJECTED)
        remember_key_name(key.name)
        if key.read_only and request.method not in READ_METHODS:
            raise ReadOnlyKey(_READ_ONLY.format(method=request.method))

    app.before_request(check_api_key)


def log_auth_mode(settings: Settings) -> None:
    """At start-up: say how callers are authenticated; warn loudly when they are not."""
    keys = settings.named_api_keys
    if keys:
        names = ", ".join(key.name + (" (read-only)" if key.read_only else "") for key in keys)
        log.info(
            "API key authentication is on (header %s or Authorization: Bearer); keys: %s",
            API_KEY_HEADER,
            names,
        )
    elif settings.require_api_key:
        ignored = f"; HOST={settings.host} ignored" if settings.bind_host != settings.host else ""
        log.warning(
            "No API key is set (API_KEY, API_KEYS): the API is open to anyone who can reach "
            "it, so it listens on %s only (ENVIRONMENT=%s%s). Set API_KEY or API_KEYS to serve "
            "on HOST, or REQUIRE_API_KEY=false if something in front of the service "
            "authenticates callers.",
            settings.bind_host,
            settings.environment,
            ignored,
        )
    else:
        log.info(
            "No API key is set and REQUIRE_API_KEY=false: callers are expected to be "
            "authenticated in front of the service"
        )
