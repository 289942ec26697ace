"""``GET /metrics`` and the HTTP request metrics.

Every label value of the request metrics comes from a fixed set, so that no client can grow
``/metrics``: the route is the matched route's template without its converters (never the
raw path: ``/sagas/<saga_id>``, ``/events/stream/<stream_id>``), or
:data:`UNMATCHED_ROUTE` when no route matched; the method is one of :data:`METHODS`, or
:data:`OTHER_METHOD` for any other token a client sent; the status is one the app answers.
"""

from __future__ import annotations

import time

from quart import Blueprint, Response, g, request
from quart_trio import QuartTrio

from saga_orchestrator.errors import NotFoundError
from saga_orchestrator.metrics import CONTENT_TYPE, ServiceMetrics

from .openapi import Reply, operation, route_template

__all__ = [
    "METHODS",
    "OTHER_METHOD",
    "UNMATCHED_ROUTE",
    "install_request_metrics",
    "method_label",
    "metrics_routes",
]

METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
"""The standard methods (RFC 9110 and PATCH): counted under their own name."""
OTHER_METHOD = "<other>"
"""The ``method`` label of a request with any other method."""
UNMATCHED_ROUTE = "<unmatched>"
"""The ``route`` label of a request that matched no route (a 404, or a 405 on a path whose
route does not have the method)."""

metrics_routes = Blueprint("metrics", __name__)


def method_label(method: str) -> str:
    """``method`` when it is a standard method, else :data:`OTHER_METHOD`."""
    return method if method in METHODS else OTHER_METHOD


@metrics_routes.get("/metrics")
@operation(
    summary="Prometheus metrics",
    description="Sagas by type and outcome, saga and step durations, active sagas, mailbox "
    "depths, store batches, bus lag, HTTP requests by route template and status.",
    tag="Health",
    public=True,
    replies=[
        Reply(
            status=200,
            description="The Prometheus text exposition format.",
            media_type="text/plain",
        )
    ],
    errors=(404,),
)
async def metrics() -> Response:
    """Prometheus text format. Open like the health probes (no API key). An app built
    without metrics answers 404."""
    from .app import deps

    registry = deps().metrics
    if registry is None:
        raise NotFoundError("this service does not export metrics")
    return Response(registry.render(), status=200, content_type=CONTENT_TYPE)


def install_request_metrics(app: QuartTrio, metrics: ServiceMetrics | None) -> None:
    """Count and time every request by method, route template and status."""
    if metrics is None:
        return

    @app.before_request
    async def start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    async def observe(response: Response) -> Response:
        rule = request.url_rule
        route = route_template(rule) if rule is not None else UNMATCHED_ROUTE
        method = method_label(request.method)
        started = getattr(g, "request_started", None)
        metrics.http_requests.labels(method, route, str(response.status_code)).inc()
        if started is not None:
            metrics.http_duration.labels(method, route).observe(time.perf_counter() - started)
        return response
