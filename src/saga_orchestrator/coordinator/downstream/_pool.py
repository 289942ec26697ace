"""The five service clients, each over a connection pool of its own, and how steps reach them.

Each service gets a transport of its own and at most ``max_connections`` requests in flight:
the others wait their turn in a FIFO in front of it (:class:`~._http.ServiceClient`, which
hands each request to the transport itself: httpx's client layers, cookies, auth hooks and
redirects, cost as much CPU as the transport and serve no purpose here). The transport is
:class:`~._transport.LeanTransport` (plain HTTP/1.1 on trio sockets, every
connection kept alive, so at most ``max_connections`` of them); ``https://`` goes through
httpx's own pool of the same size, every connection kept alive too (a keep-alive limit below
the pool size closes and reopens connections under load), never with requests queued inside
it, where httpcore 1.0 re-scans every queued request against every connection on each change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs
import httpx

from ..definition import NonRetryableError
from ._clients import AirtableClient, AuthClient, NotificationClient, PermissionClient, UserClient
from ._http import ServiceClient
from ._transport import LeanTransport

if TYPE_CHECKING:
    from ..definition import StepContext

__all__ = [
    "DOWNSTREAM",
    "DownstreamClients",
    "DownstreamConfig",
    "downstream_of",
    "open_downstream_clients",
]

DOWNSTREAM = "downstream"
"""The key of :class:`DownstreamClients` in the coordinator's ``resources``."""


@attrs.frozen(kw_only=True)
class DownstreamConfig:
    """Where the downstream services are and how to call them."""

    auth_url: str
    user_url: str
    permission_url: str
    notification_url: str
    airtable_url: str
    token: str | None = attrs.field(default=None, repr=lambda v: "None" if v is None else "***")
    """Sent as ``Authorization: Bearer <token>``; ``None`` sends no ``Authorization``."""
    timeout: float = 300.0
    """Seconds one request may take (the step timeout)."""
    max_connections: int = 100
    """Connections of each service's pool, and its requests in flight at most (the others
    wait their turn, first come first served)."""

    @classmethod
    def from_settings(cls, settings: Any) -> DownstreamConfig:
        """From ``*_SERVICE_URL``, ``AIRTABLE_CONNECTOR_URL``, ``SERVICE_AUTH_TOKEN`` and
        ``SAGA_STEP_TIMEOUT_SECONDS``."""
        return cls(
            auth_url=settings.auth_service_url,
            user_url=settings.user_service_url,
            permission_url=settings.permission_service_url,
            notification_url=settings.notification_service_url,
            airtable_url=settings.airtable_connector_url,
            token=settings.service_auth_token,
            timeout=settings.saga_step_timeout_seconds,
        )

    @classmethod
    def all_at(cls, url: str, **options: Any) -> DownstreamConfig:
        """Every service under one base URL, one path each (``/auth``, ``/user``, ...): how
        ``saga-orchestrator devservices`` serves them."""
        base = url.rstrip("/")
        return cls(
            auth_url=f"{base}/auth",
            user_url=f"{base}/user",
            permission_url=f"{base}/permission",
            notification_url=f"{base}/notification",
            airtable_url=f"{base}/airtable",
            **options,
        )


@attrs.frozen(kw_only=True)
class DownstreamClients:
    """The clients a step uses: ``downstream_of(ctx).users.create_profile(...)``."""

    auth: AuthClient
    users: UserClient
    permissions: PermissionClient
    notifications: NotificationClient
    airtable: AirtableClient

    @classmethod
    def over(
        cls,
        transport: httpx.AsyncBaseTransport | Callable[[str], httpx.AsyncBaseTransport],
        config: DownstreamConfig,
    ) -> DownstreamClients:
        """The clients over ``transport``, or over the one ``transport(service)`` gives each
        service; each lets ``config.max_connections`` requests in flight at once, each with
        ``config.timeout``."""
        pool_of = transport if callable(transport) else (lambda _service: transport)

        def on(service: str, url: str) -> ServiceClient:
            return ServiceClient(
                service,
                url,
                pool_of(service),
                token=config.token,
                max_in_flight=config.max_connections,
                timeout=config.timeout,
            )

        return cls(
            auth=AuthClient(on("auth", config.auth_url)),
            users=UserClient(on("user", config.user_url)),
            permissions=PermissionClient(on("permission", config.permission_url)),
            notifications=NotificationClient(on("notification", config.notification_url)),
            airtable=AirtableClient(on("airtable", config.airtable_url)),
        )


@asynccontextmanager
async def open_downstream_clients(
    config: DownstreamConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[DownstreamClients]:
    """A transport (its connections) per service for the body of the ``async with``, closed
    on exit. ``transport`` replaces the network for all (``httpx.MockTransport`` in tests)."""
    limits = httpx.Limits(
        max_connections=config.max_connections,
        max_keepalive_connections=config.max_connections,
    )
    async with AsyncExitStack() as stack:
        pools: list[httpx.AsyncBaseTransport] = []

        def pool_of(service: str) -> httpx.AsyncBaseTransport:
            if transport is not None:
                return transport
            pools.append(LeanTransport(partial(httpx.AsyncHTTPTransport, limits=limits)))
            return pools[-1]

        clients = DownstreamClients.over(pool_of, config)
        for pool in pools:
            stack.push_async_callback(pool.aclose)
        yield clients


def downstream_of(ctx: StepContext) -> DownstreamClients:
    """The service clients handed to the coordinator as ``resources={DOWNSTREAM: clients}``.

    Raises:
        NonRetryableError: the coordinator was started without them.
    """
    clients = ctx.resources.get(DOWNSTREAM)
    if not isinstance(clients, DownstreamClients):
        raise NonRetryableError(
            f"saga {ctx.saga_type!r} needs the downstream service clients: start the "
            f"coordinator with resources={{{DOWNSTREAM!r}: DownstreamClients}}"
        )
    return clients
