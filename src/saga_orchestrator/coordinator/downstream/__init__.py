"""The httpx clients of the downstream services (auth, user, permission, notification and the
Airtable connector), each over a connection pool of its own.

    async with open_downstream_clients(DownstreamConfig.from_settings(settings)) as clients:
        await start_coordinator(..., resources={DOWNSTREAM: clients})

A step reaches them with ``downstream_of(ctx)`` and identifies each call with ``Call.of(ctx)``
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
from ._pool import DOWNSTREAM as DOWNSTREAM
from ._pool import DownstreamClients as DownstreamClients
from ._pool import DownstreamConfig as DownstreamConfig
from ._pool import downstream_of as downstream_of
from ._pool import open_downstream_clients as open_downstream_clients
