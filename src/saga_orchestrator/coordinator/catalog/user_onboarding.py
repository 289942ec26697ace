"""User onboarding (``user_onboarding``): a registered user gets a profile, a default
workspace, a welcome email and the default Airtable integration of that workspace.

Started by a ``user.registered`` event or ``POST /sagas``. Steps and their compensations:

1. ``create_profile``: user service ``POST /profiles``; undo ``DELETE /profiles/{id}``
2. ``create_workspace``: user service ``POST /workspaces``; undo ``DELETE /workspaces/{id}``
3. ``send_welcome_email``: notification service ``POST /notifications``; undo: withdraw it if
   still queued, and send a follow-up notice
4. ``setup_airtable_integration``: connector ``POST /integrations``;
   undo ``DELETE /integrations/{id}``

When a step's outcome is unknown (it was cut mid-call: a timeout, a cancel, the saga deadline),
its compensation has no result to read the id from (``ctx.result`` is ``None``). It then undoes
*by key*: ``DELETE /profiles?idempotency_key=<the action's key>`` and the like
(``docs/services.md``) undo whatever the action's call made, if anything, and revoke the key, so
a call of the action still in flight, arriving late, makes nothing. That makes every
compensation here safe when in doubt, and each step says why where it is declared.

An email cannot be unsent. When a later step fails, the welcome email's compensation withdraws
the welcome if it is still queued and sends an ``onboarding_failed`` notice instead of doing
nothing: the user may have been told the account is ready, the profile and workspace are then
deleted, and a silent rollback would leave them believing in an account that is gone.
"""

from __future__ import annotations

from typing import Any

import attrs

from ..definition import FieldError, SagaDefinition, Step, StepContext
from ..downstream import Call, downstream_of
from ._notices import withdraw_and_follow_up

__all__ = ["USER_ONBOARDING", "OnboardingInput", "non_empty"]


def non_empty(_instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    """An attrs validator: the string holds something besides spaces."""
    if not value.strip():
        raise FieldError("must not be empty", attribute)


def _email_address(_instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    local, at, domain = value.partition("@")
    if not (local and at and "." in domain) or any(c.isspace() for c in value):
        raise FieldError("is not an email address", attribute)


@attrs.frozen(kw_only=True)
class OnboardingInput:
    """The input of ``user_onboarding`` (the data of a ``user.registered`` event)."""

    user_id: str = attrs.field(validator=non_empty)
    email: str = attrs.field(validator=_email_address)
    name: str = attrs.field(validator=non_empty)


async def create_profile(ctx: StepContext) -> dict[str, Any]:
    user: OnboardingInput = ctx.input
    reply = await downstream_of(ctx).users.create_profile(
        user.user_id, user.email, user.name, Call.of(ctx)
    )
    return {"profile_id": reply["profile_id"]}


async def delete_profile(ctx: StepContext) -> None:
    users = downstream_of(ctx).users
    if ctx.result is None:  # in doubt: what the action's key made, if anything
        await users.delete_profile_by_key(ctx.idempotency_key, Call.of(ctx, "undo"))
    else:
        await users.delete_profile(ctx.result["profile_id"], Call.of(ctx, "undo"))


async def create_workspace(ctx: StepContext) -> dict[str, Any]:
    user: OnboardingInput = ctx.input
    reply = await downstream_of(ctx).users.create_workspace(
        user.user_id, f"{user.name}'s workspace", Call.of(ctx)
    )
    return {"workspace_id": reply["workspace_id"]}


async def delete_workspace(ctx: StepContext) -> None:
    users = downstream_of(ctx).users
    if ctx.result is None:  # in doubt: what the action's key made, if anything
        await users.delete_workspace_by_key(ctx.idempotency_key, Call.of(ctx, "undo"))
    else:
        await users.delete_workspace(ctx.result["workspace_id"], Call.of(ctx, "undo"))


async def send_welcome_email(ctx: StepContext) -> dict[str, Any]:
    user: OnboardingInput = ctx.input
    reply = await downstream_of(ctx).notifications.send(
        user.user_id,
        "welcome",
        Call.of(ctx),
        email=user.email,
        data={"name": user.name, "workspace_id": ctx.results["create_workspace"]["workspace_id"]},
    )
    return {"notification_id": reply["notification_id"]}


async def send_onboarding_failed_notice(ctx: StepContext) -> None:
    """Withdraw the welcome if still queued, then tell the user that setting up the account
    did not succeed."""
    user: OnboardingInput = ctx.input
    data = {"name": user.name}
    await withdraw_and_follow_up(
        ctx, user.user_id, "onboarding_failed", data=data, email=user.email
    )


async def setup_airtable_integration(ctx: StepContext) -> dict[str, Any]:
    user: OnboardingInput = ctx.input
    workspace_id = ctx.results["create_workspace"]["workspace_id"]
    reply = await downstream_of(ctx).airtable.create_integration(
        user.user_id, workspace_id, Call.of(ctx)
    )
    return {"integration_id": reply["integration_id"], "workspace_id": workspace_id}


async def remove_airtable_integration(ctx: StepContext) -> None:
    airtable = downstream_of(ctx).airtable
    if ctx.result is None:  # in doubt: what the action's key made, if anything
        await airtable.delete_integration_by_key(ctx.idempotency_key, Call.of(ctx, "undo"))
    else:
        await airtable.delete_integration(ctx.result["integration_id"], Call.of(ctx, "undo"))


USER_ONBOARDING = SagaDefinition(
    name="user_onboarding",
    version=1,
    input_type=OnboardingInput,
    triggers=["user.registered"],
    description="Profile, default workspace, welcome email and default Airtable integration "
    "for a newly registered user.",
    steps=[
        Step(
            name="create_profile",
            action=create_profile,
            compensation=delete_profile,
            # In doubt, the delete by key removes the profile the action's key made, or finds
            # none (204); it never touches a profile another key made (the user's own, when
            # the action was refused with 409); and the revoked key stops a late create.
            compensation_safe_if_unknown=True,
        ),
        Step(
            name="create_workspace",
            action=create_workspace,
            compensation=delete_workspace,
            # As for the profile: by key, only what the action's key made, if anything.
            compensation_safe_if_unknown=True,
        ),
        Step(
            name="send_welcome_email",
            action=send_welcome_email,
            compensation=send_onboarding_failed_notice,
            # The withdrawal by key stops a welcome still queued or still in flight (so none
            # can arrive after the notice), and the notice is true whether or not the welcome
            # went out: the account is being rolled back either way.
            compensation_safe_if_unknown=True,
        ),
        Step(
            name="setup_airtable_integration",
            action=setup_airtable_integration,
            compensation=remove_airtable_integration,
            # By key, as for the profile: only what the action's key made, if anything.
            compensation_safe_if_unknown=True,
        ),
    ],
)
