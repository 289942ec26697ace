"""The Quart-Trio application: built around references to actors that someone else runs.

The app owns nothing long-lived. The composition root (``saga_orchestrator.service``) runs the
actor system and hands the app a :class:`ApiDeps` with the references it needs; route handlers
reach it with :func:`deps`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from quart import Quart, current_app
from quart_trio import QuartTrio

from saga_orchestrator.actors import ActorRef
from saga_orchestrator.bus import EventBus, OutboxRelay
from saga_orchestrator.config import Settings
from saga_orchestrator.coordinator.catalog import SagaCatalog
from saga_orchestrator.coordinator.saga_waiters import SagaWaiters
from saga_orchestrator.coordinator.trigger_links import TriggerDecisions
from saga_orchestrator.metrics import ServiceMetrics
from saga_orchestrator.store.actor import Store

from .asgi_guard import guard_connections
from .auth import install_auth
from .boundary import install_boundary_check
from .correlation import install_correlation
from .draining import Draining
from .errors import install_error_handlers
from .limits import install_request_limits
from .metrics import install_request_metrics, metrics_routes
from .openapi import check_documented, docs_routes

if TYPE_CHECKING:
    from saga_orchestrator.ui import Dashboard

__all__ = ["MAX_BODY_BYTES", "ApiDeps", "create_app", "deps"]

MAX_BODY_BYTES = 1024 * 1024
"""Largest request body accepted; a larger one gets 413."""

_EXTENSION = "saga_orchestrator"


@attrs.frozen(kw_only=True)
class ApiDeps:
    """What the HTTP layer talks to."""

    coordinator: ActorRef[Any]
    """The coordinator actor: commands (start, cancel, retry, status) are asked here."""
    store: Store
    """Reads go straight to the store (not through its actor's mailbox)."""
    catalog: SagaCatalog
    settings: Settings = attrs.field(factory=Settings)
    store_kind: str = "memory"
    """Shown by ``/health``: ``sqlite``, ``postgresql`` or ``memory``."""
    command_timeout: float = 10.0
    """Seconds a command asked of the coordinator may take before the request gets 503."""
    health_timeout: float = 2.0
    """Seconds each health probe waits for the store or the coordinator."""
    bus: EventBus | None = None
    """The event bus, shown by the health check; ``None``: not configured."""
    metrics: ServiceMetrics | None = None
    """Prometheus metrics served at ``/metrics``; ``None``: an empty page."""
    draining: Draining = attrs.field(factory=Draining)
    """Starts in flight are answered before shutdown cuts them (the composition root calls
    ``draining.begin`` when the service begins to stop)."""
    relay: OutboxRelay | None = None
    """The outbox relay: ``/health`` shows whether it leads; ``None``: not running."""
    trigger_decisions: TriggerDecisions | None = None
    """Set when this process's router decides on every published event (the in-process bus):
    a publish waits for its decision to answer with the sagas it started."""
    waiters: SagaWaiters = attrs.field(factory=SagaWaiters)
    """Wakes the long polls of ``GET /sagas/{id}/wait`` (the engine's observer feeds it)."""
    dashboard: Dashboard | None = None
    """The web dashboard's sessions, live hub and metrics ring (``saga_orchestrator.ui``);
    ``None``: one is made here, fed by no engine (no live updates, no figures)."""


def create_app(app_deps: ApiDeps, *, max_body_bytes: int = MAX_BODY_BYTES) -> QuartTrio:
    """A Quart-Trio app serving the health, saga, event and documentation routes over
    ``app_deps``.

    Raises:
        LookupError: a route declares no OpenAPI operation (see :mod:`.openapi`).
    """
    from saga_orchestrator.ui.routes import install_ui

    from .routes_events import events
    from .routes_health import health  # the routes import deps() from here
    from .routes_operator import operator
    from .routes_sagas import sagas

    app = QuartTrio("saga_orchestrator", static_folder=None)  # an API: no static files
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.url_map.strict_slashes = False
    app.extensions[_EXTENSION] = app_deps
    install_error_handlers(app)
    install_correlation(app)  # before auth: a rejected request has its id too
    install_request_limits(app, max_header_bytes=app_deps.settings.http_max_header_bytes)
    install_auth(app, app_deps.settings.named_api_keys)
    install_boundary_check(app)  # after auth: a caller without the key learns nothing
    install_request_metrics(app, app_deps.metrics)
    app.register_blueprint(health)
    app.register_blueprint(metrics_routes)
    app.register_blueprint(sagas)
    app.register_blueprint(operator)
    app.register_blueprint(events)
    app.register_blueprint(docs_routes)
    install_ui(app, app_deps.dashboard or _unfed_dashboard(app_deps))
    check_documented(app)
    app.asgi_app = guard_connections(app.asgi_app)  # type: ignore[method-assign]
    return app


def _unfed_dashboard(app_deps: ApiDeps) -> Dashboard:
    from saga_orchestrator.ui import make_dashboard

    settings = app_deps.settings
    return make_dashboard(
        secret=settings.secret_key,
        keys=settings.named_api_keys,
        max_streams=settings.ui_live_connections,
    )


def deps(app: Quart | None = None) -> ApiDeps:
    """The :class:`ApiDeps` of ``app`` (default: the app handling the current request)."""
    return (app or current_app).extensions[_EXTENSION]
