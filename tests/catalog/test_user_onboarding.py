"""User onboarding against the real stand-in over HTTP, with a coordinator in-process."""

from __future__ import annotations

import pytest

from saga_orchestrator.coordinator.catalog.user_onboarding import USER_ONBOARDING
from saga_orchestrator.devservices import Fault
from saga_orchestrator.errors import ValidationError

from .conftest import StandIn, orchestrating

USER = {"user_id": "u-42", "email": "ada@example.com", "name": "Ada"}
STEPS = {
    "create_profile": ("user.create_profile", [("user.delete_profile", "undo")]),
    "create_workspace": ("user.create_workspace", [("user.delete_workspace", "undo")]),
    "send_welcome_email": (
        "notification.send",
        [("notification.withdraw_by_key", "undo:withdraw"), ("notification.send", "undo")],
    ),
    "setup_airtable_integration": (
        "airtable.create_integration",
        [("airtable.delete_integration", "undo")],
    ),
}
"""Each step's operation at the stand-in, and its compensation's (operation, key suffix)
when the step completed."""


async def test_onboarding_applies_each_effect_once_and_feeds_results_forward(stand_in: StandIn):
    async with orchestrating(stand_in, [USER_ONBOARDING]) as kit:
        saga_id = await kit.start(USER)
        final = await kit.wait(saga_id, within=10)
    state = stand_in.state
    assert "completed" == final.status
    assert [action for action, _ in STEPS.values()] == state.operations()
    [profile] = state.profiles.values()
    [workspace] = state.workspaces.values()
    [integration] = state.integrations.values()
    [welcome] = state.notifications.values()
    assert ("u-42", "ada@example.com", "Ada") == (
        profile["user_id"],
        profile["email"],
        profile["name"],
    )
    assert ("u-42", "Ada's workspace") == (workspace["owner_id"], workspace["name"])
    assert workspace["workspace_id"] == integration["workspace_id"]  # step 2 feeds step 4
    assert ("welcome", workspace["workspace_id"]) == (
        welcome["template"],
        welcome["data"]["workspace_id"],
    )
    assert {
        "create_profile": {"profile_id": profile["profile_id"]},
        "create_workspace": {"workspace_id": workspace["workspace_id"]},
        "send_welcome_email": {"notification_id": welcome["notification_id"]},
        "setup_airtable_integration": {
            "integration_id": integration["integration_id"],
            "workspace_id": workspace["workspace_id"],
        },
    } == final.result
    assert [f"{saga_id}:{step}" for step in STEPS] == [e.idempotency_key for e in state.effects]
    assert all(call.authorized and call.correlation_id == saga_id for call in state.calls)


@pytest.mark.parametrize("failing", list(STEPS))
async def test_a_refused_step_compensates_exactly_the_completed_ones_in_reverse(
    stand_in: StandIn, failing: str
):
    stand_in.state.faults.add(Fault(operation=STEPS[failing][0], status=422, times=None))
    async with orchestrating(stand_in, [USER_ONBOARDING]) as kit:
        saga_id = await kit.start(USER)
        final = await kit.wait(saga_id, within=10)
    done = list(STEPS)[: list(STEPS).index(failing)]
    undone = [(s, *undo) for s in reversed(done) for undo in STEPS[s][1]]
    assert "compensated" == final.status
    assert [STEPS[s][0] for s in done] + [op for _, op, _ in undone] == (
        stand_in.state.operations()
    )
    undo_keys = [e.idempotency_key for e in stand_in.state.effects[len(done) :]]
    assert [f"{saga_id}:{s}:{suffix}" for s, _, suffix in undone] == undo_keys
    assert not (stand_in.state.profiles or stand_in.state.workspaces)
    assert not stand_in.state.integrations


async def test_the_welcome_email_is_followed_by_a_notice_when_onboarding_fails(stand_in: StandIn):
    stand_in.state.faults.add(
        Fault(operation="airtable.create_integration", status=400, times=None)
    )
    async with orchestrating(stand_in, [USER_ONBOARDING]) as kit:
        final = await kit.wait(await kit.start(USER), within=10)
    assert "compensated" == final.status
    sent = [(n["template"], n["email"], n["status"]) for n in stand_in.state.notifications.values()]
    assert [
        ("welcome", USER["email"], "withdrawn"),  # it was still queued: it never goes out
        ("onboarding_failed", USER["email"], "queued"),
    ] == sent


async def test_a_503_is_retried_with_backoff_and_then_succeeds(stand_in: StandIn):
    stand_in.state.faults.add(Fault(operation="user.create_workspace", status=503, times=2))
    async with orchestrating(stand_in, [USER_ONBOARDING]) as kit:
        final = await kit.wait(await kit.start(USER), within=10)
    assert "completed" == final.status
    assert [503, 503, 201] == [c.status for c in stand_in.calls("user.create_workspace")]
    assert 1 == len(stand_in.state.operations("user.create_workspace"))
    assert 3 == final.steps[1].attempts


async def test_a_lost_reply_is_retried_and_the_effect_is_not_applied_twice(stand_in: StandIn):
    fault = Fault(operation="user.create_profile", status=502, times=1, when="after")
    stand_in.state.faults.add(fault)
    async with orchestrating(stand_in, [USER_ONBOARDING]) as kit:
        final = await kit.wait(await kit.start(USER), within=10)
    assert "completed" == final.status
    calls = stand_in.calls("user.create_profile")
    assert [(502, False), (201, True)] == [(c.status, c.replayed) for c in calls]
    assert 1 == len(stand_in.state.profiles)


def test_the_input_is_validated():
    with pytest.raises(ValidationError) as caught:
        USER_ONBOARDING.parse_input({**USER, "email": "not an address"})
    assert "email" in str(caught.value.errors)
    with pytest.raises(ValidationError):
        USER_ONBOARDING.parse_input({"user_id": "u-1", "email": "a@b.io"})
    assert "user.registered" in USER_ONBOARDING.triggers
