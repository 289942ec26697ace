"""Who is looking at the dashboard: the signed session cookie, the proxy's header, CSRF tokens.

A browser signs in once with an API key; the service then sets a session cookie (``HttpOnly``,
``SameSite=Strict``, ``Secure`` when the request came over HTTPS, ``Path=/ui``) signed with
``SECRET_KEY``. The cookie does not hold the key itself: it holds the key's name, a keyed
fingerprint of the key (so a key taken out of ``API_KEYS`` or changed ends its sessions), and a
random nonce from which the session's CSRF token is made. A request may instead carry the key
in ``X-API-Key`` (a reverse proxy that signs users in adds it); its CSRF token is then made from
the key's name.

Without any API key configured, the sign-in form has no key field: signing in makes a session
named ``anonymous`` with full access (the service is then open to whoever reaches it anyway).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Sequence

import attrs
from itsdangerous import BadSignature, URLSafeTimedSerializer

from saga_orchestrator.api_keys import ApiKey
from saga_orchestrator.http.auth import matching_key

__all__ = [
    "ANONYMOUS",
    "COOKIE",
    "SESSION_SECONDS",
    "Sessions",
    "Viewer",
    "secret_key",
]

log = logging.getLogger(__name__)

COOKIE = "saga_ui"
"""The session cookie's name."""
SESSION_SECONDS = 12 * 3600
"""How long a session lasts after signing in."""
ANONYMOUS = "anonymous"
"""The viewer's name when the service checks no keys."""


def secret_key(configured: str | None) -> str:
    """``SECRET_KEY``, or a random key for this process (with a warning)."""
    if configured:
        return configured
    log.warning(
        "SECRET_KEY is not set: the dashboard signs its sessions with a key made for this "
        "process (sessions end when it restarts and are not shared by replicas); set SECRET_KEY"
    )
    return secrets.token_urlsafe(32)


@attrs.frozen
class Viewer:
    """A signed-in user of the dashboard."""

    name: str
    """The API key's name (``anonymous`` without keys)."""
    read_only: bool
    csrf: str
    """The token every form of this session must carry."""


class Sessions:
    """Makes and reads session cookies and CSRF tokens with one secret."""

    def __init__(self, secret: str, keys: Sequence[ApiKey]) -> None:
        self._secret = secret.encode()
        self.keys = tuple(keys)
        self._digests = [(hashlib.sha256(k.key.encode()).digest(), k) for k in self.keys]
        self._signer = URLSafeTimedSerializer(secret, salt="saga-ui-session")

    @property
    def open(self) -> bool:
        """No key is configured: anyone may sign in without one."""
        return not self.keys

    def _mac(self, *parts: str) -> str:
        return hmac.new(self._secret, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()

    def find_key(self, given: str | None) -> ApiKey | None:
        """The configured key ``given`` is (compared in constant time), else ``None``."""
        return matching_key([given], self._digests)

    def cookie_for(self, key: ApiKey | None) -> str:
        """A new session cookie's value for ``key`` (``None``: anonymous, without keys)."""
        name = key.name if key is not None else ANONYMOUS
        fingerprint = self._mac("key", key.key)[:32] if key is not None else ""
        return self._signer.dumps({"n": name, "f": fingerprint, "c": secrets.token_urlsafe(16)})

    def from_cookie(self, value: str | None) -> Viewer | None:
        """The viewer a session cookie names, or ``None`` (absent, forged, expired, or its key
        is no longer configured)."""
        if not value:
            return None
        try:
            data = self._signer.loads(value, max_age=SESSION_SECONDS)
            name, fingerprint, nonce = str(data["n"]), str(data["f"]), str(data["c"])
        except (BadSignature, KeyError, TypeError):
            return None
        if self.open:
            return Viewer(ANONYMOUS, False, self._mac("csrf", nonce)) if name == ANONYMOUS else None
        for key in self.keys:
            expected = self._mac("key", key.key)[:32]
            if key.name == name and hmac.compare_digest(expected, fingerprint):
                return Viewer(key.name, key.read_only, self._mac("csrf", nonce))
        return None

    def from_header(self, value: str | None) -> Viewer | None:
        """The viewer of an ``X-API-Key`` header a proxy added, or ``None``."""
        key = self.find_key(value) if value else None
        if key is None:
            return None
        return Viewer(key.name, key.read_only, self._mac("csrf-header", key.name))

    def login_token(self, nonce: str) -> str:
        """The sign-in form's CSRF token, bound to the browser's pre-session nonce."""
        return self._mac("login", nonce)

    @staticmethod
    def token_matches(given: str | None, expected: str) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), expected.encode())
