"""From an event to its sagas and back, the saga list's filters and paging, and each step's last
error, through the real server (``run_service`` over HTTP): on SQLite and PostgreSQL with the
in-process bus, and with Redis for the trigger link."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from saga_orchestrator.coordinator.definition import (
    NonRetryableError,
    RetryPolicy,
    SagaDefinition,
    Step,
    StepContext,
)
from tests.support.live import open_live_server

from .test_live_api import assert_error, fields, wait_for


@attrs.frozen
class Account:
    user_id: str


async def _greet(ctx: StepContext) -> dict[str, Any]:
    return {"greeted": ctx.input.user_id}


async def _look_up(ctx: StepContext) -> dict[str, Any]:
    return {"plan": {}[ctx.input.user_id]}  # a bug: KeyError


async def _refuse(ctx: StepContext) -> None:
    raise NonRetryableError(f"the billing service refused {ctx.input.user_id}")


def _saga(name: str, *steps: Step, triggers: tuple[str, ...] = ()) -> SagaDefinition:
    return SagaDefinition(
        name=name,
        version=1,
        input_type=Account,
        description=name,
        steps=list(steps),
        triggers=list(triggers),
    )


ONCE = RetryPolicy(max_attempts=1)
SAGAS = [
    _saga("links_welcome", Step(name="greet", action=_greet), triggers=("account.opened",)),
    _saga("links_audit", Step(name="greet", action=_greet), triggers=("account.opened",)),
    _saga(
        "links_buggy",
        Step(name="greet", action=_greet),
        Step(name="look_up", action=_look_up, retry=ONCE),
    ),
    _saga("links_refused", Step(name="bill", action=_refuse)),
]
MakeDatabase = Callable[[], AbstractAsyncContextManager[str]]
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]


@pytest.fixture(params=BACKENDS)
def make_database(request: pytest.FixtureRequest) -> MakeDatabase | None:
    """How to make the PostgreSQL database of a test, or ``None`` for SQLite."""
    return request.getfixturevalue("make_pg_database") if request.param == "postgresql" else None


@pytest.fixture
async def client(
    make_database: MakeDatabase | None, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the real server on each store, with the in-process bus."""
    async with AsyncExitStack() as stack:
        settings = {}
        if make_database is not None:
            settings["database_url"] = await stack.enter_async_context(make_database())
        live = await stack.enter_async_context(open_live_server(tmp_path, sagas=SAGAS, **settings))
        client = await stack.enter_async_context(live.client())
        await ready(client)
        yield client


async def ready(client: httpx.AsyncClient) -> None:
    """Wait until the server is ready (registered in the store: it may start sagas)."""
    with trio.fail_after(20):
        while (await client.get("/health/ready")).status_code != 200:
            await trio.sleep(0.05)


def opened(user_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_type": "account.opened",
        "stream_id": f"account-{user_id}",
        "data": {"user_id": user_id},
        **extra,
    }


async def start(client: httpx.AsyncClient, saga_type: str, user_id: str, **extra: Any) -> str:
    body = {"saga_type": saga_type, "data": {"user_id": user_id}, **extra}
    response = await client.post("/sagas/start", json=body)
    assert 202 == response.status_code, response.text
    return str(response.json()["saga_id"])


def _now() -> str:
    """Now in ISO-8601, UTC without an offset (nothing to escape in a query)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat()


async def listed(client: httpx.AsyncClient, query: str) -> list[str]:
    response = await client.get(f"/sagas/?{query}")
    assert 200 == response.status_code, response.text
    return [saga["saga_id"] for saga in response.json()["items"]]


# -- from an event to its sagas and back ---------------------------------------------------------


async def test_a_published_event_names_the_sagas_it_started_and_each_names_it(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/events/publish", json=opened("u-1", event_id="evt-1"))
    assert 202 == response.status_code, response.text
    body = response.json()
    # In-process bus: the router has decided before the answer.
    assert 2 == len(body["saga_ids"])
    assert "/sagas/?trigger_event_id=evt-1" == body["sagas_link"]
    linked = (await client.get(body["sagas_link"])).json()["items"]
    assert sorted(body["saga_ids"]) == sorted(saga["saga_id"] for saga in linked)
    assert {"links_welcome", "links_audit"} == {saga["saga_type"] for saga in linked}
    for saga_id in body["saga_ids"]:
        detail = await wait_for(client, saga_id)
        assert ("evt-1", "completed") == (detail["trigger_event_id"], detail["status"])
        assert f"event:evt-1:{detail['saga_type']}" == detail["idempotency_key"]
    # The same event again: the same sagas, none new.
    again = await client.post("/events/publish", json=opened("u-1", event_id="evt-1"))
    assert (200, body["saga_ids"]) == (again.status_code, again.json()["saga_ids"])
    welcome = [saga["saga_id"] for saga in linked if saga["saga_type"] == "links_welcome"]
    assert welcome == await listed(client, "trigger_event_id=evt-1&saga_type=links_welcome")

    # An event that triggers nothing, and one the sagas' input refuses: decided, no saga.
    other = await client.post("/events/publish", json={**opened("u-2"), "event_type": "noted"})
    assert [] == other.json()["saga_ids"]
    unfit = await client.post("/events/publish", json={**opened("u-3"), "data": {}})
    assert (202, []) == (unfit.status_code, unfit.json()["saga_ids"])
    # A saga started by a request names no event.
    started = await start(client, "links_welcome", "u-4")
    assert (await client.get(f"/sagas/{started}")).json()["trigger_event_id"] is None


# -- the saga list ---------------------------------------------------------------------------------


async def test_the_saga_list_filters_by_what_names_a_saga_status_and_time(
    client: httpx.AsyncClient,
) -> None:
    before = _now()
    keyed = await start(client, "links_welcome", "k", idempotency_key="key-1", correlation_id="c")
    refused = await start(client, "links_refused", "r", correlation_id="c")
    buggy = await start(client, "links_buggy", "b")
    for saga_id in (keyed, refused, buggy):
        await wait_for(client, saga_id)
    assert [keyed] == await listed(client, "idempotency_key=key-1")
    assert [refused, keyed] == await listed(client, "correlation_id=c")
    assert [buggy] == await listed(client, "saga_type=links_buggy")
    assert {refused, buggy} == set(await listed(client, "status=compensated"))
    several = await listed(client, "status=completed&status=compensated")
    assert several == await listed(client, "status=completed,compensated")
    assert [buggy, refused, keyed] == several
    assert [refused] == await listed(client, "status=compensated&correlation_id=c")
    assert several == await listed(client, f"created_after={before}")
    assert [] == await listed(client, f"created_before={before}")
    after_all = _now()
    assert several == await listed(client, f"updated_before={after_all}")
    assert [] == await listed(client, f"updated_after={after_all}")
    assert [] == await listed(client, f"trigger_event_id={uuid.uuid4()}")

    bad = "created_after=yesterday&updated_before=x"
    error = assert_error(await client.get(f"/sagas/?{bad}"), 400, "invalid_query")
    assert ["created_after", "updated_before"] == fields(error)
    error = assert_error(await client.get("/sagas/?status=running,sleeping"), 400, "invalid_query")
    assert ["status"] == fields(error)
    assert "expected one or more of pending, running" in error["details"][0]["message"]
    error = assert_error(await client.get("/sagas/?limit=0&colour=1"), 400, "invalid_query")
    assert ["colour", "limit"] == fields(error)


async def test_a_cursor_keeps_its_place_while_sagas_are_started_and_change(
    client: httpx.AsyncClient,
) -> None:
    first = [await start(client, "links_welcome", f"p-{n}") for n in range(5)]
    expected = first[::-1]  # newest first
    seen: list[str] = []
    page = (await client.get("/sagas/?limit=2")).json()
    while True:
        seen.extend(saga["saga_id"] for saga in page["items"])
        # Meanwhile, a new saga starts and the others run on (their status, updated_at change).
        await start(client, "links_welcome", f"new-{len(seen)}")
        if page["next_cursor"] is None:
            break
        page = (await client.get(f"/sagas/?limit=2&cursor={page['next_cursor']}")).json()
    assert expected == seen  # each once, in order: the new ones are before the first page


# -- each step's last error ------------------------------------------------------------------------


async def test_the_steps_keep_their_last_error_with_the_frames_of_a_bug(
    client: httpx.AsyncClient,
) -> None:
    buggy = await start(client, "links_buggy", "nobody")
    refused = await start(client, "links_refused", "nobody")
    await wait_for(client, buggy)
    await wait_for(client, refused)
    steps = (await client.get(f"/sagas/{buggy}/steps")).json()["items"]
    greet, look_up = steps
    assert (None, []) == (greet["error_type"], greet["error_frames"])
    assert ("KeyError", "KeyError: 'nobody'") == (look_up["error_type"], look_up["error"])
    (frame,) = look_up["error_frames"]  # the step's own code only
    assert frame.startswith("http/test_saga_links.py:")
    assert frame.endswith('in _look_up: return {"plan": {}[ctx.input.user_id]}  # a bug: KeyError')
    detail = (await client.get(f"/sagas/{buggy}")).json()
    assert look_up == detail["steps"][1]
    (bill,) = (await client.get(f"/sagas/{refused}/steps")).json()["items"]
    assert (
        "NonRetryableError",
        "NonRetryableError: the billing service refused nobody",
        [],
    ) == (bill["error_type"], bill["error"], bill["error_frames"])


# -- with Redis ------------------------------------------------------------------------------------


@pytest.mark.integration
async def test_with_redis_a_publish_links_to_the_sagas_the_router_starts(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    streams = {
        "event_stream": f"{redis_prefix}events",
        "lifecycle_stream": f"{redis_prefix}lifecycle",
        "consumer_group": f"{redis_prefix}group",
    }
    async with (
        open_live_server(
            tmp_path,
            sagas=SAGAS,
            use_redis_event_bus=True,
            redis_url=redis_url,
            bus_block_ms=50,
            **streams,
        ) as live,
        live.client() as client,
    ):
        await ready(client)
        response = await client.post("/events/publish", json=opened("u-r", event_id="evt-r"))
        assert 202 == response.status_code, response.text
        body = response.json()
        # Any replica's router may take the event: the answer names what was decided by then
        # (no wait), and links to the sagas in any case.
        assert body["saga_ids"] is None or 2 == len(body["saga_ids"])
        assert "/sagas/?trigger_event_id=evt-r" == body["sagas_link"]
        with trio.fail_after(15):
            while len(linked := (await client.get(body["sagas_link"])).json()["items"]) < 2:
                await trio.sleep(0.05)
        assert {"links_welcome", "links_audit"} == {saga["saga_type"] for saga in linked}
        for saga in linked:
            detail = await wait_for(client, saga["saga_id"])
            assert ("evt-r", "completed") == (detail["trigger_event_id"], detail["status"])
        again = await client.post("/events/publish", json=opened("u-r", event_id="evt-r"))
        assert {s["saga_id"] for s in linked} == set(again.json()["saga_ids"])
