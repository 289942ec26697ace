"""The httpx clients of the downstream services (auth, user, permission, notification and the
Airtable connector), over one shared connection pool.

    async with open_service_clients(ServicesConfig.from_settings(settings)) as clients:
        await start_coordinator(..., resources={SERVICES: clients})

A step reaches them with ``services_of(ctx)`` and identifies each call with ``Call.of(ctx)``
(idempotency key and correlation id). Failures are ``ServiceError`` s: ``ServiceUnavailable``
is retried by the engine, ``ServiceRejected`` and ``BadReply`` are not. The contract each
service must keep is ``docs/services.md``.
"""

from ._clients import AirtableClient as AirtableClient
from ._clients import AuthClient as AuthClient
from ._clients import NotificationClient as NotificationClient
from ._clients import PermissionClient as PermissionClient
from ._clients import UserClient as UserClient
from ._errors import BadReply as BadReply
from ._errors import ServiceError as ServiceError
from ._errors import ServiceNotFound as ServiceNotFound
from ._errors import ServiceRejected as ServiceRejected
from ._errors import ServiceUnavailable as ServiceUnavailable
from ._http import CORRELATION_HEADER as CORRELATION_HEADER
from ._http import IDEMPOTENCY_HEADER as IDEMPOTENCY_HEADER
from ._http import Call as Call
from ._http import ServiceClient as ServiceClient
from ._http import parse_retry_after as parse_retry_after
from ._pool import SERVICES as SERVICES
from ._pool import ServiceClients as ServiceClients
from ._pool import ServicesConfig as ServicesConfig
from ._pool import open_service_clients as open_service_clients
from ._pool import services_of as services_of
