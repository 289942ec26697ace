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
5. ``notify_success``   notification ``POST /notifications``

The purge is declared safe when the sync's outcome is unknown (a timeout, a cancel during the
wait, a crash): it is addressed by base and workspace, not by job, so it needs nothing from the
step's result; the connector stops any sync of that base into that workspace still running
before deleting, so a job that finishes late writes nothing; and deleting data that was never
synced (the job never started) is a success. Repeating it changes nothing.

The webhook's deletion needs the webhook id, so an unknown outcome of ``setup_webhook`` parks
the saga for an operator (the engine's default) rather than guessing.
"""

from __future__ import annotations

from typing import Any

import attrs

from ..definition import AwaitReply, NonRetryableError, SagaDefinition, Step, StepContext
from ..downstream import Call, downstream_of
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
    webhook_id = ctx.result["webhook_id"]
    await downstream_of(ctx).airtable.delete_webhook(job.base_id, webhook_id, Call.of(ctx, "undo"))


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
    job: AirtableIntegrationInput = ctx.input
    await downstream_of(ctx).airtable.purge_synced_data(
        job.base_id, job.workspace_id, Call.of(ctx, "undo")
    )


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


AIRTABLE_INTEGRATION = SagaDefinition(
    name="airtable_integration",
    version=1,
    input_type=AirtableIntegrationInput,
    triggers=["airtable.base.connected"],
    description="Validate access to an Airtable base, read its schema, set up its webhook, "
    "sync its data into the workspace, and tell the user.",
    steps=[
        Step(name="validate_access", action=validate_access),
        Step(name="fetch_schema", action=fetch_schema),
        Step(name="setup_webhook", action=setup_webhook, compensation=delete_webhook),
        Step(
            name="initial_sync",
            action=start_initial_sync,
            compensation=purge_synced_data,
            compensation_safe_if_unknown=True,
            reply=AwaitReply(success=[SYNC_COMPLETED], failure=[SYNC_FAILED]),
        ),
        Step(name="notify_success", action=notify_success),
    ],
)
