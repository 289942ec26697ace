"""Airtable integration (``airtable_integration``): connect an Airtable base to a workspace.

Started by an ``airtable.base.connected`` event or ``POST /sagas``. Steps:

1. ``validate_access``  auth ``GET /users/{id}`` (active?), permission ``POST /checks``
                         (may manage the workspace's integrations?), connector
                         ``GET /bases/{id}/access`` (can the connector read the base?); reads only
2. ``fetch_schema``     connector ``GET /bases/{id}/schema``; reads only
3. ``setup_webhook``    connector ``POST /bases/{id}/webhooks``; undo ``DELETE .../webhooks/{id}``
4. ``initial_sync``     connector ``POST /bases/{id}/syncs`` (202), then waits for the event
                         ``airtable.sync.completed`` / ``airtable.sync.failed`` naming the saga;
                         undo ``DELETE /bases/{id}/synced-data?workspace_id=``
5. ``notify_success``   notification ``POST /notifications``; undo: withdraw it if still
                         queued, and send an ``airtable_integration_failed`` notice

The reads have nothing to undo: in doubt, nothing parks. Every compensation is safe when the
step's outcome is unknown (``ctx.result`` is ``None``: the step was cut mid-call, or no reply
came): what it needs is the input (base, workspace) or the step's idempotency key, never the
result, and each undo by key revokes the key so that a call still in flight makes nothing when
it arrives late. The step declarations say why for each.
"""

from __future__ import annotations

from typing import Any

import attrs

from ..definition import AwaitReply, NonRetryableError, SagaDefinition, Step, StepContext
from ..downstream import Call, downstream_of
from ._notices import withdraw_and_follow_up
from .user_onboarding import non_empty

__all__ = ["AIRTABLE_INTEGRATION", "SYNC_COMPLETED", "SYNC_FAILED", "AirtableIntegrationInput"]

SYNC_COMPLETED = "airtable.sync.completed"
SYNC_FAILED = "airtable.sync.failed"
MANAGE_INTEGRATIONS = "integrations:manage"
"""The permission a user needs on the workspace."""


@attrs.frozen(kw_only=True)
class AirtableIntegrationInput:
    """The input of ``airtable_integration`` (the data of an ``airtable.base.connected``
    event)."""

    user_id: str = attrs.field(validator=non_empty)
    workspace_id: str = attrs.field(validator=non_empty)
    base_id: str = attrs.field(validator=non_empty)


async def validate_access(ctx: StepContext) -> dict[str, Any]:
    job: AirtableIntegrationInput = ctx.input
    services = downstream_of(ctx)
    user = await services.auth.get_user(job.user_id, Call.of(ctx, "user"))
    if user["status"] != "active":
        raise NonRetryableError(f"user {job.user_id!r} is {user['status']!r}, not active")
    resource = f"workspace:{job.workspace_id}"
    call = Call.of(ctx, "permission")
    if not await services.permissions.check(job.user_id, MANAGE_INTEGRATIONS, resource, call):
        raise NonRetryableError(
            f"user {job.user_id!r} may not manage the integrations of {resource!r}"
        )
    access = await services.airtable.check_access(job.base_id, job.user_id, Call.of(ctx, "base"))
    return {"permission_level": access["permission_level"]}


async def fetch_schema(ctx: StepContext) -> dict[str, Any]:
    job: AirtableIntegrationInput = ctx.input
    schema = await downstream_of(ctx).airtable.get_schema(job.base_id, Call.of(ctx))
    return {"tables": [{"id": t["id"], "name": t.get("name", "")} for t in schema["tables"]]}


async def setup_webhook(ctx: StepContext) -> dict[str, Any]:
    job: AirtableIntegrationInput = ctx.input
    table_ids = [table["id"] for table in ctx.results["fetch_schema"]["tables"]]
    reply = await downstream_of(ctx).airtable.create_webhook(
        job.base_id, job.workspace_id, table_ids, Call.of(ctx)
    )
    return {"webhook_id": reply["webhook_id"]}


async def delete_webhook(ctx: StepContext) -> None:
    job: AirtableIntegrationInput = ctx.input
    airtable = downstream_of(ctx).airtable
    if ctx.result is None:  # in doubt: what the action's key made, if anything
        await airtable.delete_webhook_by_key(job.base_id, ctx.idempotency_key, Call.of(ctx, "undo"))
    else:
        webhook_id = ctx.result["webhook_id"]
        await airtable.delete_webhook(job.base_id, webhook_id, Call.of(ctx, "undo"))


async def start_initial_sync(ctx: StepContext) -> dict[str, Any]:
    job: AirtableIntegrationInput = ctx.input
    reply = await downstream_of(ctx).airtable.start_sync(
        job.base_id,
        saga_id=ctx.saga_id,
        workspace_id=job.workspace_id,
        webhook_id=ctx.results["setup_webhook"]["webhook_id"],
        table_ids=[table["id"] for table in ctx.results["fetch_schema"]["tables"]],
        call=Call.of(ctx),
    )
    return {"job_id": reply["job_id"]}


async def purge_synced_data(ctx: StepContext) -> None:
    """In doubt, first revoke the start's key (a start still in flight then begins no sync);
    then stop any sync of the base into the workspace and delete what was synced."""
    job: AirtableIntegrationInput = ctx.input
    airtable = downstream_of(ctx).airtable
    if ctx.result is None:
        key = ctx.idempotency_key
        await airtable.cancel_sync_by_key(job.base_id, key, Call.of(ctx, "undo:cancel"))
    await airtable.purge_synced_data(job.base_id, job.workspace_id, Call.of(ctx, "undo"))


async def notify_success(ctx: StepContext) -> dict[str, Any]:
    job: AirtableIntegrationInput = ctx.input
    synced = ctx.results["initial_sync"]["reply"]
    reply = await downstream_of(ctx).notifications.send(
        job.user_id,
        "airtable_integration_ready",
        Call.of(ctx),
        data={
            "base_id": job.base_id,
            "workspace_id": job.workspace_id,
            "tables": len(ctx.results["fetch_schema"]["tables"]),
            "records": synced.get("records"),
        },
    )
    return {"notification_id": reply["notification_id"]}


async def send_integration_failed_notice(ctx: StepContext) -> None:
    """Withdraw the "ready" notice if still queued, then tell the user that connecting the
    base did not complete."""
    job: AirtableIntegrationInput = ctx.input
    data = {"base_id": job.base_id, "workspace_id": job.workspace_id}
    await withdraw_and_follow_up(ctx, job.user_id, "airtable_integration_failed", data=data)


AIRTABLE_INTEGRATION = SagaDefinition(
    name="airtable_integration",
    version=1,
    input_type=AirtableIntegrationInput,
    triggers=["airtable.base.connected"],
    description="Validate access to an Airtable base, read its schema, set up its webhook, "
    "sync its data into the workspace, and tell the user.",
    steps=[
        Step(name="validate_access", action=validate_access),  # reads: nothing to undo
        Step(name="fetch_schema", action=fetch_schema),  # reads: nothing to undo
        Step(
            name="setup_webhook",
            action=setup_webhook,
            compensation=delete_webhook,
            # In doubt, the delete by key removes the webhook the action's key made on this
            # base, or finds none (204), never another one; the revoked key stops a late create.
            compensation_safe_if_unknown=True,
        ),
        Step(
            name="initial_sync",
            action=start_initial_sync,
            compensation=purge_synced_data,
            # The purge is addressed by base and workspace, not by job: it needs nothing from
            # the result. The cancel by key first stops a start still in flight from beginning
            # a sync later; the purge stops a sync still running (a late job writes nothing)
            # and deletes what was synced, a success also when nothing was. Both repeat safely.
            compensation_safe_if_unknown=True,
            reply=AwaitReply(success=[SYNC_COMPLETED], failure=[SYNC_FAILED]),
        ),
        Step(
            name="notify_success",
            action=notify_success,
            compensation=send_integration_failed_notice,
            # Runs only when this last step is in doubt (a timeout, a cancel mid-call): the
            # "ready" notice may be out while everything before is undone. The withdrawal by
            # key stops it if still queued or in flight, and the notice is true either way.
            compensation_safe_if_unknown=True,
        ),
    ],
)
