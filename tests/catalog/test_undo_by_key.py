"""Each built-in compensation when its action's outcome is unknown (``ctx.result`` is ``None``),
called directly against the stand-in over HTTP: it undoes by the action's idempotency key
whatever the action made, does nothing harmful when the action made nothing, ends in the same
state when run twice, and leaves a late call of the action making nothing."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest

from saga_orchestrator.coordinator.catalog.airtable_integration import (
    AIRTABLE_INTEGRATION,
    AirtableIntegrationInput,
)
from saga_orchestrator.coordinator.catalog.user_onboarding import USER_ONBOARDING, OnboardingInput
from saga_orchestrator.coordinator.definition import SagaDefinition, Step, StepContext
from saga_orchestrator.coordinator.downstream import (
    DOWNSTREAM,
    DownstreamClients,
    ServiceRejected,
    open_downstream_clients,
)

from .conftest import StandIn

USER = OnboardingInput(user_id="u-1", email="ada@example.com", name="Ada")
JOB = AirtableIntegrationInput(user_id="u-1", workspace_id="ws-1", base_id="app1")
TABLES = [{"id": "tblapp11", "name": "Contacts"}, {"id": "tblapp12", "name": "Projects"}]
RESULTS: dict[str, Any] = {
    "create_workspace": {"workspace_id": "workspace-0"},
    "fetch_schema": {"tables": TABLES},
    "setup_webhook": {"webhook_id": "webhook-0"},
    "initial_sync": {"accepted": {"job_id": "job-0"}, "reply": {"records": 100}},
}
"""What the steps before each one returned (the actions read them)."""

UNDONE = [
    (USER_ONBOARDING, "create_profile", "user.create_profile"),
    (USER_ONBOARDING, "create_workspace", "user.create_workspace"),
    (USER_ONBOARDING, "send_welcome_email", "notification.send"),
    (USER_ONBOARDING, "setup_airtable_integration", "airtable.create_integration"),
    (AIRTABLE_INTEGRATION, "setup_webhook", "airtable.create_webhook"),
    (AIRTABLE_INTEGRATION, "initial_sync", "airtable.start_sync"),
    (AIRTABLE_INTEGRATION, "notify_success", "notification.send"),
]
"""Every built-in step with a compensation, and the operation of its action."""
IDS = [step for _, step, _ in UNDONE]


@pytest.fixture
async def clients(stand_in: StandIn) -> AsyncIterator[DownstreamClients]:
    stand_in.state.sync_delay = 60  # a sync started stays running: the undo must stop it
    async with open_downstream_clients(stand_in.config()) as clients:
        yield clients


def context(saga: SagaDefinition, name: str, clients: DownstreamClients) -> StepContext:
    """The context of step ``name`` of saga ``saga-1``, its result unknown."""
    return StepContext(
        saga_id="saga-1",
        saga_type=saga.name,
        step=name,
        attempt=1,
        input=USER if saga is USER_ONBOARDING else JOB,
        results=RESULTS,
        idempotency_key=f"saga-1:{name}",
        result=None,
        resources={DOWNSTREAM: clients},
    )


def step_of(saga: SagaDefinition, name: str) -> Step:
    [step] = [s for s in saga.steps if s.name == name]
    return step


def made_by_action(stand_in: StandIn, ctx: StepContext, operation: str) -> list[dict[str, Any]]:
    """What the action's call (its operation, with its key) made that still stands: held, a
    sync still running, a notification still queued."""
    state = stand_in.state
    made = {
        e.subject
        for e in state.effects
        if (e.operation, e.idempotency_key) == (operation, ctx.idempotency_key)
    }
    standing = {
        "profile": state.profiles.values(),
        "workspace": state.workspaces.values(),
        "integration": state.integrations.values(),
        "webhook": state.webhooks.values(),
        "notification": [n for n in state.notifications.values() if n["status"] == "queued"],
        "job": [j for j in state.jobs.values() if j["status"] == "accepted"],
    }
    return [t for kind, things in standing.items() for t in things if t[f"{kind}_id"] in made]


@pytest.mark.parametrize(("saga", "name", "operation"), UNDONE, ids=IDS)
async def test_in_doubt_the_compensation_undoes_what_the_actions_key_made(
    stand_in: StandIn, clients: DownstreamClients, saga: SagaDefinition, name: str, operation: str
):
    step = step_of(saga, name)
    assert step.compensation is not None and step.compensation_safe_if_unknown
    ctx = context(saga, name, clients)
    await step.action(ctx)  # it made something; its answer was lost to the saga
    assert made_by_action(stand_in, ctx, operation)

    await step.compensation(ctx)
    first = copy.deepcopy(stand_in.state.holdings())
    await step.compensation(ctx)  # a second run (a crash, an operator's retry) changes nothing

    assert first == stand_in.state.holdings()
    assert [] == made_by_action(stand_in, ctx, operation)
    assert {} == stand_in.state.leftovers()
    with pytest.raises(ServiceRejected) as refused:  # the action's call, arriving late
        await step.action(ctx)
    assert 409 == refused.value.status
    assert first == stand_in.state.holdings()


@pytest.mark.parametrize(("saga", "name", "operation"), UNDONE, ids=IDS)
async def test_in_doubt_the_compensation_succeeds_when_the_action_made_nothing(
    stand_in: StandIn, clients: DownstreamClients, saga: SagaDefinition, name: str, operation: str
):
    step = step_of(saga, name)
    assert step.compensation is not None
    ctx = context(saga, name, clients)

    await step.compensation(ctx)  # the action's call never arrived
    await step.compensation(ctx)

    assert {} == stand_in.state.leftovers()
    with pytest.raises(ServiceRejected):  # and if it arrives now, it makes nothing
        await step.action(ctx)
    assert {} == stand_in.state.leftovers()
    assert [] == made_by_action(stand_in, ctx, operation)
    assert ctx.idempotency_key not in [e.idempotency_key for e in stand_in.state.effects]


async def test_in_doubt_an_undo_by_key_leaves_what_other_keys_made(
    stand_in: StandIn, clients: DownstreamClients
):
    step = step_of(USER_ONBOARDING, "create_workspace")
    assert step.compensation is not None
    ours = context(USER_ONBOARDING, "create_workspace", clients)
    other = attrs.evolve(ours, saga_id="saga-2", idempotency_key="saga-2:create_workspace")
    await step.action(other)  # the same user's workspace from another saga

    await step.compensation(ours)

    [workspace] = stand_in.state.workspaces.values()
    assert ("u-1", "saga-2:create_workspace") == (
        workspace["owner_id"],
        stand_in.state.effects[0].idempotency_key,
    )
