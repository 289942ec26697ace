"""The web dashboard under ``/ui/``: pages rendered by the service (Jinja2), a small script and
style shipped in this package, live updates by server-sent events. See ``docs/dashboard.md``.

* :mod:`.routes` — :func:`~.routes.install_ui`, called by ``http.app.create_app``;
* :mod:`.session` — who looks: the signed session cookie or the proxy's ``X-API-Key``; CSRF;
* :mod:`.guard` — every dashboard request: sign-in, CSRF on posts, read-only keys;
* :mod:`.pages` — the sagas, saga, events and metrics pages, sign-in and sign-out;
* :mod:`.actions` — the saga page's forms: cancel and the operator's actions;
* :mod:`.stream` — the live-update stream and the static files;
* :mod:`.live` — the engine's observer that feeds the streams, bounded;
* :mod:`.ring` — the metrics page's last hour, in memory;
* :mod:`.timeline` — a saga's transitions as bars on a time axis (pure).

The dashboard's routes are not part of the JSON API: they are left out of the OpenAPI document
and of the API-key check (they sign users in themselves).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from saga_orchestrator.api_keys import ApiKey
from saga_orchestrator.http.openapi import UI_PREFIX, is_ui_path

from .live import LiveHub
from .ring import MetricsRing
from .session import Sessions, secret_key

__all__ = ["UI_PREFIX", "Dashboard", "is_ui_path", "make_dashboard"]


@attrs.frozen
class Dashboard:
    """What the dashboard keeps per process."""

    sessions: Sessions
    hub: LiveHub
    ring: MetricsRing


def make_dashboard(
    *,
    secret: str | None,
    keys: Sequence[ApiKey],
    max_streams: int,
    step_names: Mapping[Any, Sequence[str]] | None = None,
) -> Dashboard:
    """A dashboard; ``secret`` is ``SECRET_KEY`` (``None``: one is made, with a warning)."""
    return Dashboard(
        sessions=Sessions(secret_key(secret), keys),
        hub=LiveHub(max_streams=max_streams, step_names=step_names),
        ring=MetricsRing(),
    )
