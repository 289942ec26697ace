"""Where the service is and which API key to send: from the environment, as the service itself
reads ``HOST`` and ``PORT``."""

from __future__ import annotations

from collections.abc import Mapping

from ._errors import UsageError

__all__ = ["API_KEY_ENVS", "DEFAULT_PORT", "URL_ENV", "api_key_of", "service_url"]

URL_ENV = "SAGA_ORCHESTRATOR_URL"
API_KEY_ENVS = ("SAGA_ORCHESTRATOR_API_KEY", "API_KEY")
"""Where the key comes from, first found first."""
DEFAULT_PORT = 8008
_WILDCARDS = ("0.0.0.0", "::", "[::]", "")


def service_url(environ: Mapping[str, str]) -> str:
    """``SAGA_ORCHESTRATOR_URL``, else where a service started with these ``HOST`` and
    ``PORT`` listens, seen from this machine.

    Raises:
        UsageError: the URL is not http(s), or ``PORT`` cannot say where the service is.
    """
    url = environ.get(URL_ENV) or None
    if url is None:
        host = environ.get("HOST", "").strip()
        port = environ.get("PORT", "").strip() or str(DEFAULT_PORT)
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(
                f"PORT={port!r} does not say where the service listens: set {URL_ENV} (or --url)"
            )
        host = "127.0.0.1" if host in _WILDCARDS else host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 address
        url = f"http://{host}:{int(port)}"
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"{url!r} is not valid: expected an http:// or https:// URL")
    return url


def api_key_of(environ: Mapping[str, str]) -> str | None:
    """The key to send: the first of :data:`API_KEY_ENVS` that is set."""
    return next((environ[name] for name in API_KEY_ENVS if environ.get(name)), None)
