"""The ``open_account`` saga of docs/sagas.md, as a saga author would write it, with the two
services it calls found in ``ctx.resources`` (the kit's tests fake the steps instead)."""

from __future__ import annotations

from typing import Any

import attrs

from saga_orchestrator.coordinator.definition import (
    AwaitReply,
    NonRetryableError,
    RetryPolicy,
    SagaDefinition,
    Step,
    StepContext,
)

PLANS = {"free": 0, "pro": 12}


@attrs.frozen
class OpenAccountInput:
    user_id: str
    plan: str = "free"


async def create_account(ctx: StepContext) -> dict[str, Any]:
    account = await ctx.resources["accounts"].create(ctx.input.user_id, key=ctx.idempotency_key)
    return {"account_id": account}


async def delete_account(ctx: StepContext) -> None:
    accounts = ctx.resources["accounts"]
    if ctx.result is None:
        await accounts.delete_by_key(ctx.idempotency_key)
    else:
        await accounts.delete(ctx.result["account_id"])


async def charge(ctx: StepContext) -> dict[str, Any]:
    if ctx.input.plan not in PLANS:
        raise NonRetryableError(f"unknown plan {ctx.input.plan!r}")
    account_id = ctx.results["create_account"]["account_id"]
    return {"charged": PLANS[ctx.input.plan], "account_id": account_id}


async def ask_for_verification(ctx: StepContext) -> dict[str, Any]:
    return {"requested": ctx.input.user_id}


OPEN_ACCOUNT = SagaDefinition(
    name="open_account",
    version=1,
    input_type=OpenAccountInput,
    steps=[
        Step(
            name="create_account",
            action=create_account,
            compensation=delete_account,
            timeout=30,
            compensation_safe_if_unknown=True,
        ),
        Step(
            name="charge",
            action=charge,
            retry=RetryPolicy(max_attempts=5, initial_backoff=2.0, non_retryable=(KeyError,)),
        ),
    ],
)

VERIFIED_ACCOUNT = SagaDefinition(
    name="verified_account",
    version=1,
    input_type=OpenAccountInput,
    steps=[
        *OPEN_ACCOUNT.steps[:1],
        Step(
            name="verify",
            action=ask_for_verification,
            reply=AwaitReply(success=["user.verified"], failure=["user.rejected"]),
            timeout=600,
        ),
    ],
)


@attrs.define
class Accounts:
    """An in-memory accounts service, for the tests that run the real step code."""

    accounts: dict[str, str] = attrs.field(factory=dict)
    """account id -> the idempotency key that made it."""

    async def create(self, user_id: str, *, key: str) -> str:
        for account_id, made_by in self.accounts.items():
            if made_by == key:
                return account_id
        account_id = f"acc-{user_id}-{len(self.accounts) + 1}"
        self.accounts[account_id] = key
        return account_id

    async def delete(self, account_id: str) -> None:
        self.accounts.pop(account_id, None)

    async def delete_by_key(self, key: str) -> None:
        for account_id in [a for a, k in self.accounts.items() if k == key]:
            del self.accounts[account_id]
