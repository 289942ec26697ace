"""The operator actions through the real server (``retry``, ``resolve``, ``skip-compensation``,
``resume``): each repairs a parked saga and is recorded with the API key's name and the reason;
a dry run answers 200 and records nothing; an action that does not apply is a 409 naming the
saga's status; of concurrent actions on one saga exactly one is taken; a read-only key gets 403;
a resume whose patched input does not fit gets 422 and changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio

from tests.support.live import LiveServer, live_server_thread
from tests.support.sagas import IN_DOUBT, PARKS, SAGAS

from .test_live_api import assert_error, fields, start, wait_for

OPS_KEY = "ops-0123456789abcdefghijklmnop"
AUDIT_KEY = "audit-0123456789abcdefghijklmn"
ACTIONS = {
    "retry": {"reason": "r"},
    "resolve": {"step": "charge", "outcome": "applied", "reason": "r"},
    "skip-compensation": {"step": "charge", "reason": "r"},
    "resume": {"from_step": "prepare", "reason": "r"},
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The service with an ``ops`` key and a read-only ``auditor`` key; one compensation
    attempt (``test_parks`` parks at once)."""
    with live_server_thread(
        tmp_path_factory.mktemp("operator"),
        api_key=None,
        api_keys=f"ops:{OPS_KEY},auditor:{AUDIT_KEY}:read",
        sagas=[*SAGAS, PARKS, IN_DOUBT],
        compensation_retry_attempts=1,
        saga_retry_backoff_seconds=0.01,
        saga_retry_backoff_max_seconds=0.01,
    ) as server:
        yield server


def ops(live: LiveServer) -> httpx.AsyncClient:
    return live.client(headers={"X-API-Key": OPS_KEY})


async def parked_in_doubt(client: httpx.AsyncClient) -> dict[str, Any]:
    """A ``test_in_doubt`` saga cancelled during its charge: parked on it, its outcome unknown."""
    saga = await start(client, "test_in_doubt", {"seconds": 60})
    await wait_for(client, saga["saga_id"], ("running",))
    with trio.fail_after(10):
        while (await client.get(f"/sagas/{saga['saga_id']}")).json()["current_step"] != "charge":
            await trio.sleep(0.02)
    response = await client.post(f"/sagas/{saga['saga_id']}/cancel", json={"reason": "stop"})
    assert 202 == response.status_code, response.text
    parked = await wait_for(client, saga["saga_id"])
    assert "compensation_failed" == parked["status"]
    steps = {step["name"]: step for step in parked["steps"]}
    assert ("completed", "completed") == (
        steps["prepare"]["status"],
        steps["prepare"]["compensation_status"],
    )
    assert "unknown" == steps["charge"]["status"]
    return parked


async def history(client: httpx.AsyncClient, saga_id: str) -> list[dict[str, Any]]:
    return (await client.get(f"/sagas/{saga_id}/events")).json()["items"]


async def act(
    client: httpx.AsyncClient, saga_id: str, action: str, body: dict[str, Any]
) -> httpx.Response:
    return await client.post(f"/sagas/{saga_id}/{action}", json=body)


async def test_a_step_in_doubt_resolved_not_applied_is_not_compensated(live: LiveServer) -> None:
    async with ops(live) as client:
        saga_id = (await parked_in_doubt(client))["saga_id"]
        body = {"step": "charge", "outcome": "not_applied", "reason": "no charge at the bank"}
        response = await act(client, saga_id, "resolve", body)
        assert 202 == response.status_code, response.text
        assert {"saga_id": saga_id, "action": "resolve", "dry_run": False} == {
            k: response.json()[k] for k in ("saga_id", "action", "dry_run")
        }
        ended = await wait_for(client, saga_id, ("cancelled",))
        charge = ended["steps"][1]
        assert ("unknown", "skipped") == (charge["status"], charge["compensation_status"])
        (resolved,) = [e for e in await history(client, saga_id) if e["type"] == "StepResolved"]
    assert ("ops", "no charge at the bank", "not_applied") == (
        resolved["data"]["by"],
        resolved["data"]["reason"],
        resolved["data"]["resolution"],
    )


async def test_a_step_in_doubt_resolved_applied_is_compensated(live: LiveServer) -> None:
    async with ops(live) as client:
        saga_id = (await parked_in_doubt(client))["saga_id"]
        body = {"step": "charge", "outcome": "applied", "reason": "the bank shows the charge"}
        assert 202 == (await act(client, saga_id, "resolve", body)).status_code
        ended = await wait_for(client, saga_id, ("cancelled",))
        assert "completed" == ended["steps"][1]["compensation_status"]


async def test_a_dry_run_says_what_would_happen_and_records_nothing(live: LiveServer) -> None:
    async with ops(live) as client:
        saga_id = (await parked_in_doubt(client))["saga_id"]
        before = await history(client, saga_id)
        body = {"step": "charge", "outcome": "applied", "reason": "r", "dry_run": True}
        response = await act(client, saga_id, "resolve", body)
        assert 200 == response.status_code, response.text
        answer = response.json()
        assert (True, "compensating") == (answer["dry_run"], answer["status"])
        assert "StepResolved" == answer["would_record"][0]
        retry = await act(client, saga_id, "retry", {"dry_run": True})
        assert (200, True) == (retry.status_code, retry.json()["dry_run"])
        assert before == await history(client, saga_id)
        assert "compensation_failed" == (await client.get(f"/sagas/{saga_id}")).json()["status"]


async def test_a_compensation_undone_by_hand_is_skipped(live: LiveServer) -> None:
    async with ops(live) as client:
        saga = await start(client, "test_parks", {})
        saga_id = saga["saga_id"]
        assert "compensation_failed" == (await wait_for(client, saga_id))["status"]
        error = assert_error(
            await act(client, saga_id, "skip-compensation", {"step": "hold"}),
            422,
            "validation_error",
        )
        assert ["reason"] == fields(error)
        error = assert_error(
            await act(client, saga_id, "skip-compensation", {"step": "refuse", "reason": "r"}),
            409,
            "saga_state_conflict",
        )
        assert "compensation_failed" == error["saga_status"]
        body = {"step": "hold", "reason": "released by hand, ticket OPS-1"}
        assert 202 == (await act(client, saga_id, "skip-compensation", body)).status_code
        ended = await wait_for(client, saga_id, ("compensated",))
        assert "skipped" == ended["steps"][0]["compensation_status"]
        (skipped,) = [
            e for e in await history(client, saga_id) if e["type"] == "CompensationSkipped"
        ]
    assert ("ops", "released by hand, ticket OPS-1") == (
        skipped["data"]["by"],
        skipped["data"]["reason"],
    )


async def test_a_resume_with_a_patch_that_does_not_fit_is_422_and_changes_nothing(
    live: LiveServer,
) -> None:
    async with ops(live) as client:
        saga_id = (await parked_in_doubt(client))["saga_id"]
        before = await history(client, saga_id)
        body = {"from_step": "prepare", "input": {"seconds": "soon"}, "reason": "r"}
        error = assert_error(await act(client, saga_id, "resume", body), 422, "validation_error")
        assert ["input.seconds"] == fields(error)
        error = assert_error(
            await act(client, saga_id, "resume", {"from_step": "confirm", "reason": "r"}),
            409,
            "saga_state_conflict",
        )
        assert "compensation_failed" == error["saga_status"]
        assert before == await history(client, saga_id)
        body = {"from_step": "prepare", "input": {"seconds": 0}, "reason": "charge at once"}
        response = await act(client, saga_id, "resume", body)
        assert 202 == response.status_code, response.text
        ended = await wait_for(client, saga_id, ("completed",))
        assert 0 == ended["input"]["seconds"]
        (resumed,) = [e for e in await history(client, saga_id) if e["type"] == "SagaResumed"]
    assert ("ops", "charge at once") == (resumed["data"]["by"], resumed["data"]["reason"])


async def test_a_retry_is_recorded_with_who_and_why(live: LiveServer) -> None:
    async with ops(live) as client:
        saga_id = (await start(client, "test_parks", {}))["saga_id"]
        assert "compensation_failed" == (await wait_for(client, saga_id))["status"]
        response = await act(client, saga_id, "retry", {"reason": "the service is back"})
        assert 202 == response.status_code, response.text
        assert "compensated" == (await wait_for(client, saga_id, ("compensated",)))["status"]
        (retried,) = [e for e in await history(client, saga_id) if e["type"] == "OperatorRetried"]
    assert ("ops", "the service is back") == (retried["data"]["by"], retried["data"]["reason"])


async def test_concurrent_actions_on_one_saga_one_wins_the_others_are_409(
    live: LiveServer,
) -> None:
    async with ops(live) as client:
        saga_id = (await parked_in_doubt(client))["saga_id"]
        answers: list[httpx.Response] = []

        async def resolve(outcome: str) -> None:
            body = {"step": "charge", "outcome": outcome, "reason": f"said {outcome}"}
            answers.append(await act(client, saga_id, "resolve", body))

        async with trio.open_nursery() as nursery:
            for outcome in ("applied", "not_applied", "applied", "not_applied"):
                nursery.start_soon(resolve, outcome)
        await wait_for(client, saga_id, ("cancelled",))
        events = await history(client, saga_id)
    assert [202, 409, 409, 409] == sorted(a.status_code for a in answers), [a.text for a in answers]
    for answer in answers:
        if answer.status_code == 409:
            assert assert_error(answer, 409, "saga_state_conflict")["saga_status"]
    assert 1 == sum(e["type"] == "StepResolved" for e in events)


async def test_an_action_that_does_not_apply_is_409_with_the_saga_status(
    live: LiveServer,
) -> None:
    async with ops(live) as client:
        saga_id = (await start(client, "test_slow", {"seconds": 60}))["saga_id"]
        await wait_for(client, saga_id, ("running",))
        for action, body in ACTIONS.items():
            for dry_run in (False, True):
                response = await act(client, saga_id, action, {**body, "dry_run": dry_run})
                error = assert_error(response, 409, "saga_state_conflict")
                assert "running" == error["saga_status"], action
            assert_error(await act(client, str(uuid.uuid4()), action, body), 404, "saga_not_found")
        await client.post(f"/sagas/{saga_id}/cancel")
        bad = {"step": "charge", "outcome": "maybe", "reason": "r"}
        error = assert_error(await act(client, saga_id, "resolve", bad), 422, "validation_error")
        assert ["outcome"] == fields(error)


async def test_a_read_only_key_may_not_act(live: LiveServer) -> None:
    async with live.client(headers={"X-API-Key": AUDIT_KEY}) as client:
        for action, body in ACTIONS.items():
            response = await act(client, str(uuid.uuid4()), action, body)
            assert_error(response, 403, "forbidden")
