"""Undoing a message: it cannot be unsent, so withdraw it if still queued and follow it up."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..definition import StepContext
from ..downstream import Call, downstream_of

__all__ = ["withdraw_and_follow_up"]


async def withdraw_and_follow_up(
    ctx: StepContext,
    user_id: str,
    template: str,
    *,
    data: Mapping[str, Any],
    email: str | None = None,
) -> None:
    """The compensation of a step that sent a notification with its key: withdraw that one
    by key (if it is still queued; and none with the key goes out after this, so none can
    arrive after the follow-up), then send ``template`` to ``user_id``.

    Safe when the step's outcome is unknown: the withdrawal needs only the key and succeeds
    when nothing was sent. The follow-up's text must be true whether or not the first message
    went out.
    """
    notifications = downstream_of(ctx).notifications
    await notifications.withdraw_by_key(ctx.idempotency_key, Call.of(ctx, "undo:withdraw"))
    await notifications.send(user_id, template, Call.of(ctx, "undo"), email=email, data=data)
