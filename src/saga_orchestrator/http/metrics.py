"""``GET /metrics`` and the HTTP request metrics (by route template, never by raw path)."""

from __future__ import annotations

import time

from quart import Blueprint, Response, g, request
from quart_trio import QuartTrio

from saga_orchestrator.metrics import CONTENT_TYPE, ServiceMetrics

from .openapi import Reply, operation

metrics_routes = Blueprint("metrics", __name__)


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
)
async def metrics() -> Response:
    """Prometheus text format. Open like the health probes (no API key)."""
    from .app import deps

    registry = deps().metrics
    body = registry.render() if registry is not None else b""
    return Response(body, status=200, content_type=CONTENT_TYPE)


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
        route = rule.rule if rule is not None else "<unmatched>"
        started = getattr(g, "request_started", None)
        metrics.http_requests.labels(request.method, route, str(response.status_code)).inc()
        if started is not None:
            metrics.http_duration.labels(request.method, route).observe(
                time.perf_counter() - started
            )
        return response
