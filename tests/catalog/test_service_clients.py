"""The service clients at the seam: ``httpx.MockTransport`` answers instead of the network."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from datetime import UTC, datetime

import attrs
import httpx
import pytest

from saga_orchestrator.coordinator.definition import NonRetryableError, StepContext
from saga_orchestrator.coordinator.downstream import (
    DOWNSTREAM,
    BadReply,
    Call,
    DownstreamClients,
    DownstreamConfig,
    ServiceNotFound,
    ServiceRejected,
    ServiceUnavailable,
    downstream_of,
    open_downstream_clients,
    parse_retry_after,
)
from saga_orchestrator.errors import SagaOrchestratorError

TOKEN = "tok-DO-NOT-LEAK-42"
CALL = Call("saga-1:create_profile", "corr-1")
CONFIG = DownstreamConfig.all_at("http://services.test/base", token=TOKEN, timeout=2)

Handler = Callable[[httpx.Request], httpx.Response]


def answering(status: int, json: object = None, **headers: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=json, headers=headers)

    return handler


def raising(error: type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error("boom", request=request)

    return handler


async def create_profile(handler: Handler, config: DownstreamConfig = CONFIG) -> dict:
    async with open_downstream_clients(config, transport=httpx.MockTransport(handler)) as clients:
        return await clients.users.create_profile("u-1", "ada@example.com", "Ada", CALL)


async def test_every_call_carries_the_key_the_correlation_id_and_the_token():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"profile_id": "p-1"})

    assert {"profile_id": "p-1"} == await create_profile(handler)
    [request] = seen
    assert ("POST", "http://services.test/base/user/profiles") == (request.method, str(request.url))
    assert "saga-1:create_profile" == request.headers["Idempotency-Key"]
    assert "corr-1" == request.headers["X-Correlation-ID"]
    assert f"Bearer {TOKEN}" == request.headers["Authorization"]
    assert request.headers["User-Agent"].startswith("saga-orchestrator/")
    assert b'{"user_id":"u-1","email":"ada@example.com","name":"Ada"}' == request.content


async def test_without_a_token_no_authorization_is_sent():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"profile_id": "p-1"})

    await create_profile(handler, DownstreamConfig.all_at("http://services.test"))
    assert "authorization" not in seen[0].headers


async def test_ids_are_quoted_into_one_path_segment():
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(204)

    async with open_downstream_clients(CONFIG, transport=httpx.MockTransport(handler)) as clients:
        assert await clients.airtable.delete_webhook("app/../x", "wh 1", CALL)
    assert ["/base/airtable/bases/app%2F..%2Fx/webhooks/wh%201"] == seen


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
async def test_5xx_408_and_429_are_retryable(status: int):
    with pytest.raises(ServiceUnavailable) as caught:
        await create_profile(answering(status, {"error": "busy"}))
    assert not isinstance(caught.value, NonRetryableError)
    assert (status, "user") == (caught.value.status, caught.value.service)


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ReadError, httpx.ReadTimeout])
async def test_connection_errors_and_timeouts_are_retryable(error: type[httpx.TransportError]):
    with pytest.raises(ServiceUnavailable) as caught:
        await create_profile(raising(error))
    assert caught.value.status is None
    assert error.__name__ in str(caught.value)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, ServiceRejected),
        (401, ServiceRejected),
        (409, ServiceRejected),
        (404, ServiceNotFound),
    ],
)
async def test_other_4xx_are_not_retryable(status: int, error: type[ServiceRejected]):
    with pytest.raises(error) as caught:
        await create_profile(answering(status, {"error": "user u-1 already has a profile"}))
    assert isinstance(caught.value, NonRetryableError)
    assert isinstance(caught.value, SagaOrchestratorError)
    assert "user u-1 already has a profile" == caught.value.detail


async def test_a_delete_of_something_already_gone_is_done():
    async with open_downstream_clients(
        CONFIG, transport=httpx.MockTransport(answering(404, {"error": "gone"}))
    ) as clients:
        assert False is await clients.users.delete_profile("p-1", CALL)


async def test_retry_after_is_carried_by_the_error():
    with pytest.raises(ServiceUnavailable) as caught:
        await create_profile(answering(503, None, **{"Retry-After": "7"}))
    assert 7.0 == caught.value.retry_after
    assert "retry after 7 s" in str(caught.value)
    with pytest.raises(ServiceUnavailable) as caught:
        await create_profile(answering(503))
    assert caught.value.retry_after is None


def test_retry_after_is_seconds_or_an_http_date():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert 120.0 == parse_retry_after("120", now=now)
    assert 30.0 == parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now=now)
    assert 0.0 == parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=now)
    assert 0.0 == parse_retry_after("-5", now=now)
    assert None is parse_retry_after("soon", now=now)
    assert None is parse_retry_after(None)


@pytest.mark.parametrize(
    "response",
    [httpx.Response(200, text="<html>"), httpx.Response(201, json=["a"]),
     httpx.Response(201, json={"id": "p-1"}), httpx.Response(302)],
)  # fmt: skip
async def test_a_reply_that_breaks_the_contract_is_not_retried(response: httpx.Response):
    with pytest.raises(BadReply) as caught:
        await create_profile(lambda request: response)
    assert isinstance(caught.value, NonRetryableError)


async def test_the_token_is_in_no_error_and_no_log_line(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    config = DownstreamConfig.all_at("http://user:pw@services.test", token=TOKEN)
    echo = answering(401, {"error": f"bad token Bearer {TOKEN}"})  # a server that echoes it
    for handler in (echo, raising(httpx.ConnectError), answering(503)):
        with pytest.raises(SagaOrchestratorError) as caught:
            await create_profile(handler, config)
        shown = "".join(traceback.format_exception(caught.value)) + repr(caught.value)
        assert TOKEN not in shown
        assert "pw" not in str(caught.value)
    assert caplog.records
    assert TOKEN not in caplog.text
    async with open_downstream_clients(config, transport=httpx.MockTransport(echo)) as clients:
        assert TOKEN not in repr(clients) + repr(config)


async def test_steps_reach_the_clients_through_the_resources():
    async with open_downstream_clients(CONFIG, transport=httpx.MockTransport(answering(204))) as c:
        ctx = StepContext(
            saga_id="s-1",
            saga_type="user_onboarding",
            step="create_profile",
            attempt=1,
            input=None,
            results={},
            idempotency_key="s-1:create_profile",
            resources={DOWNSTREAM: c},
        )
        assert c is downstream_of(ctx)
        assert Call("s-1:create_profile:undo", "s-1") == Call.of(ctx, "undo")
    with pytest.raises(NonRetryableError, match="resources"):
        downstream_of(attrs.evolve(ctx, resources={}))


async def test_the_clients_over_one_transport_share_it():
    transport = httpx.MockTransport(answering(204))
    clients = DownstreamClients.over(transport, CONFIG)
    pools = {id(getattr(clients, f.name).http._transport) for f in attrs.fields(DownstreamClients)}
    assert {id(transport)} == pools


UNDO_BY_KEY = [
    ("users", "delete_profile_by_key", (), "/user/profiles"),
    ("users", "delete_workspace_by_key", (), "/user/workspaces"),
    ("notifications", "withdraw_by_key", (), "/notification/notifications"),
    ("airtable", "delete_integration_by_key", (), "/airtable/integrations"),
    ("airtable", "delete_webhook_by_key", ("app 1",), "/airtable/bases/app%201/webhooks"),
    ("airtable", "cancel_sync_by_key", ("app 1",), "/airtable/bases/app%201/syncs"),
]
"""(client, method, arguments before the key, path under the base URL) of each undo by key."""


@pytest.mark.parametrize(("client", "method", "args", "path"), UNDO_BY_KEY)
@pytest.mark.parametrize("status", [204, 404])
async def test_an_undo_by_key_names_the_actions_key_and_nothing_there_is_done(
    client: str, method: str, args: tuple[str, ...], path: str, status: int
):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status)

    undo = Call("saga-1:create_x:undo", "corr-1")
    async with open_downstream_clients(CONFIG, transport=httpx.MockTransport(handler)) as clients:
        undo_by_key = getattr(getattr(clients, client), method)
        assert None is await undo_by_key(*args, "saga-1:create_x", undo)
    [request] = seen
    raw_path = request.url.raw_path.decode().partition("?")[0]
    assert ("DELETE", f"/base{path}") == (request.method, raw_path)
    assert {"idempotency_key": "saga-1:create_x"} == dict(request.url.params)
    assert "saga-1:create_x:undo" == request.headers["Idempotency-Key"]
    assert b"" == request.content


@pytest.mark.parametrize(("client", "method", "args", "path"), UNDO_BY_KEY[:1])
async def test_an_undo_by_key_that_cannot_be_done_now_is_retried(
    client: str, method: str, args: tuple[str, ...], path: str
):
    async with open_downstream_clients(
        CONFIG, transport=httpx.MockTransport(answering(503, {"error": "busy"}))
    ) as clients:
        with pytest.raises(ServiceUnavailable):
            await getattr(getattr(clients, client), method)(*args, "saga-1:create_x", CALL)


@pytest.mark.parametrize(
    ("answer", "in_doubt"),
    [
        (answering(500), True),  # it failed midway: the profile may exist
        (answering(502), True),
        (answering(503), False),  # the service says it did not take the request
        (answering(429), False),
        (answering(408), False),
        (raising(httpx.ConnectError), False),  # never sent
        (raising(httpx.ConnectTimeout), False),
        (raising(httpx.ReadTimeout), True),  # sent, the answer lost
        (raising(httpx.RemoteProtocolError), True),
    ],
)
async def test_an_error_says_whether_the_request_may_have_been_applied(
    answer: Handler, in_doubt: bool
):
    with pytest.raises(ServiceUnavailable) as caught:
        await create_profile(answer)
    assert in_doubt is caught.value.effect_unknown
