"""Airtable integration against the real stand-in over HTTP, with a coordinator in-process; the
connector's sync outcome reaches the saga as a reply event."""

from __future__ import annotations

from saga_orchestrator.coordinator.catalog.airtable_integration import AIRTABLE_INTEGRATION
from saga_orchestrator.devservices import Fault
from saga_orchestrator.testing import SagaTestKit

from .conftest import StandIn, orchestrating

JOB = {"user_id": "u-7", "workspace_id": "ws-7", "base_id": "appBASE"}


async def start(kit: SagaTestKit) -> str:
    return await kit.start(JOB)


async def test_the_sync_completes_by_a_reply_event_and_the_user_is_told(stand_in: StandIn):
    async with orchestrating(stand_in, [AIRTABLE_INTEGRATION]) as kit:
        saga_id = await start(kit)
        final = await kit.wait(saga_id, within=10)
    state = stand_in.state
    assert "completed" == final.status
    assert ["airtable.create_webhook", "airtable.start_sync", "notification.send"] == (
        state.operations()
    )
    [webhook] = state.webhooks.values()
    [job] = state.jobs.values()
    [notice] = state.notifications.values()
    table_ids = [t["id"] for t in final.result["fetch_schema"]["tables"]]
    assert table_ids == webhook["table_ids"] == job["table_ids"]  # the schema feeds both
    assert (webhook["webhook_id"], saga_id, "completed") == (
        final.result["setup_webhook"]["webhook_id"],
        job["saga_id"],
        job["status"],
    )
    [announced] = state.announcements
    assert ("airtable.sync.completed", saga_id) == (announced.event_type, announced.saga_id)
    assert {"accepted": {"job_id": job["job_id"]}, "reply": announced.data} == (
        final.result["initial_sync"]
    )
    assert ("airtable_integration_ready", 100) == (notice["template"], notice["data"]["records"])
    checks = ["auth.get_user", "permission.check", "airtable.check_access", "airtable.get_schema"]
    assert checks == [c.operation for c in state.calls[:4]]
    assert [f"{saga_id}:validate_access:{k}" for k in ("user", "permission", "base")] == [
        c.idempotency_key for c in state.calls[:3]
    ]


async def test_a_failed_sync_compensates_the_webhook(stand_in: StandIn):
    stand_in.state.faults.add(Fault(operation="airtable.sync_job", status=500))
    async with orchestrating(stand_in, [AIRTABLE_INTEGRATION]) as kit:
        final = await kit.wait(await start(kit), within=10)
    assert "compensated" == final.status
    assert final.error is not None and "airtable.sync.failed" in final.error
    # the refused sync wrote nothing and is not compensated; the webhook is deleted
    assert ["airtable.create_webhook", "airtable.start_sync", "airtable.delete_webhook"] == (
        stand_in.state.operations()
    )
    assert not (stand_in.state.webhooks or stand_in.state.synced)


async def test_a_failure_in_the_last_step_purges_then_deletes_the_webhook(stand_in: StandIn):
    stand_in.state.faults.add(Fault(operation="notification.send", status=422, times=None))
    async with orchestrating(stand_in, [AIRTABLE_INTEGRATION]) as kit:
        final = await kit.wait(await start(kit), within=10)
    assert "compensated" == final.status
    assert [
        "airtable.create_webhook",
        "airtable.start_sync",
        "airtable.purge_synced_data",
        "airtable.delete_webhook",
    ] == stand_in.state.operations()
    assert not (stand_in.state.webhooks or stand_in.state.synced)


async def test_a_cancel_during_the_sync_abandons_the_wait_and_compensates(stand_in: StandIn):
    stand_in.state.sync_delay = 30
    async with orchestrating(stand_in, [AIRTABLE_INTEGRATION]) as kit:
        saga_id = await start(kit)
        await kit.wait_for(saga_id, "StepAwaitingReply", within=10)
        await kit.cancel(saga_id)
        final = await kit.wait(saga_id, within=10)
    assert "cancelled" == final.status
    # the step is in doubt (the wait was cut): its start's key is revoked first
    assert [
        "airtable.cancel_sync_by_key",
        "airtable.purge_synced_data",
        "airtable.delete_webhook",
    ] == stand_in.state.operations()[2:]
    assert ["cancelled"] == [job["status"] for job in stand_in.state.jobs.values()]
    assert [] == stand_in.state.announcements


async def test_a_user_without_the_permission_fails_at_once_with_nothing_to_undo(stand_in: StandIn):
    stand_in.state.faults.add(Fault(operation="airtable.check_access", status=403))
    async with orchestrating(stand_in, [AIRTABLE_INTEGRATION]) as kit:
        final = await kit.wait(await start(kit), within=10)
    assert "compensated" == final.status
    assert "403" in (final.error or "")
    assert 1 == len(stand_in.calls("airtable.check_access"))  # a 403 is not retried
    assert [] == stand_in.state.operations()
