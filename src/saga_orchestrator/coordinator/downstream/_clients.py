"""The clients of the downstream services, one method per operation of ``docs/services.md``.

Each method takes the :class:`~._http.Call` that identifies it (idempotency key, correlation
id) and returns the service's JSON answer, checked for the fields the contract promises.
Deletes answer ``False`` when the thing was already gone: compensations may run twice.

Every create has an undo *by key* beside its delete by id (``..._by_key``): it undoes whatever
the create sent with that idempotency key made, if anything, and revokes the key, so that a
create with it arriving late makes nothing. That is what a compensation uses when its action's
outcome is unknown (the action was cut mid-call, so the id was never seen).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import BadReply
from ._http import Call, ServiceClient, segment

__all__ = [
    "AirtableClient",
    "AuthClient",
    "NotificationClient",
    "PermissionClient",
    "UserClient",
]


class _Client:
    def __init__(self, http: ServiceClient) -> None:
        self.http = http

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    async def _ask(self, method: str, path: str, call: Call, *fields: str, **options: Any) -> dict:
        """Send a request whose answer must be a JSON object holding ``fields``."""
        reply = await self.http.request(method, path, call, **options)
        assert reply is not None  # absent_ok is not passed here
        missing = [name for name in fields if name not in reply]
        if missing:
            raise BadReply(
                f"{self.http.service} service: {method} {path} answered without "
                f"{', '.join(missing)}",
                service=self.http.service,
            )
        return reply

    async def _delete(self, path: str, call: Call, **options: Any) -> bool:
        """Delete; ``False`` when it was already gone (404)."""
        return await self.http.request("DELETE", path, call, absent_ok=True, **options) is not None

    async def _undo_by_key(self, path: str, key: str, call: Call) -> None:
        """``DELETE <path>?idempotency_key=<key>``: undo what the create sent with ``key``
        made, and revoke the key. Nothing there is done too (204, or 404)."""
        await self._delete(path, call, params={"idempotency_key": key})


class AuthClient(_Client):
    """The auth service: who a user is."""

    async def get_user(self, user_id: str, call: Call) -> dict[str, Any]:
        """``GET /users/{user_id}`` -> ``{"user_id", "status", ...}``."""
        return await self._ask("GET", f"/users/{segment(user_id)}", call, "user_id", "status")


class UserClient(_Client):
    """The user service: profiles and workspaces."""

    async def create_profile(
        self, user_id: str, email: str, name: str, call: Call
    ) -> dict[str, Any]:
        """``POST /profiles`` -> ``{"profile_id", ...}``."""
        body = {"user_id": user_id, "email": email, "name": name}
        return await self._ask("POST", "/profiles", call, "profile_id", json=body)

    async def delete_profile(self, profile_id: str, call: Call) -> bool:
        """``DELETE /profiles/{profile_id}``."""
        return await self._delete(f"/profiles/{segment(profile_id)}", call)

    async def delete_profile_by_key(self, key: str, call: Call) -> None:
        """``DELETE /profiles?idempotency_key=``: the profile the create with ``key`` made."""
        await self._undo_by_key("/profiles", key, call)

    async def create_workspace(
        self, owner_id: str, name: str, call: Call, *, default: bool = True
    ) -> dict[str, Any]:
        """``POST /workspaces`` -> ``{"workspace_id", ...}``."""
        body = {"owner_id": owner_id, "name": name, "default": default}
        return await self._ask("POST", "/workspaces", call, "workspace_id", json=body)

    async def delete_workspace(self, workspace_id: str, call: Call) -> bool:
        """``DELETE /workspaces/{workspace_id}``."""
        return await self._delete(f"/workspaces/{segment(workspace_id)}", call)

    async def delete_workspace_by_key(self, key: str, call: Call) -> None:
        """``DELETE /workspaces?idempotency_key=``: the workspace the create with ``key`` made."""
        await self._undo_by_key("/workspaces", key, call)


class PermissionClient(_Client):
    """The permission service: may a user do something to a resource."""

    async def check(self, user_id: str, action: str, resource: str, call: Call) -> bool:
        """``POST /checks`` -> ``{"allowed": bool}``."""
        body = {"user_id": user_id, "action": action, "resource": resource}
        reply = await self._ask("POST", "/checks", call, "allowed", json=body)
        return reply["allowed"] is True


class NotificationClient(_Client):
    """The notification service: messages to users."""

    async def send(
        self,
        user_id: str,
        template: str,
        call: Call,
        *,
        email: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /notifications`` -> ``{"notification_id", ...}`` (queued: 202)."""
        body: dict[str, Any] = {"user_id": user_id, "template": template, "data": dict(data or {})}
        if email is not None:
            body["email"] = email
        return await self._ask("POST", "/notifications", call, "notification_id", json=body)

    async def withdraw_by_key(self, key: str, call: Call) -> None:
        """``DELETE /notifications?idempotency_key=``: the notification sent with ``key`` is
        withdrawn if still queued (one delivered cannot be), and no send with ``key`` goes
        out after this."""
        await self._undo_by_key("/notifications", key, call)


class AirtableClient(_Client):
    """The Airtable connector: integrations, bases, webhooks and data syncs."""

    async def create_integration(
        self, user_id: str, workspace_id: str, call: Call, *, kind: str = "default"
    ) -> dict[str, Any]:
        """``POST /integrations`` -> ``{"integration_id", ...}``."""
        body = {"user_id": user_id, "workspace_id": workspace_id, "kind": kind}
        return await self._ask("POST", "/integrations", call, "integration_id", json=body)

    async def delete_integration(self, integration_id: str, call: Call) -> bool:
        """``DELETE /integrations/{integration_id}``."""
        return await self._delete(f"/integrations/{segment(integration_id)}", call)

    async def delete_integration_by_key(self, key: str, call: Call) -> None:
        """``DELETE /integrations?idempotency_key=``: the integration the create with ``key``
        made."""
        await self._undo_by_key("/integrations", key, call)

    async def check_access(self, base_id: str, user_id: str, call: Call) -> dict[str, Any]:
        """``GET /bases/{base_id}/access?user_id=`` -> ``{"base_id", "permission_level"}``."""
        path = f"/bases/{segment(base_id)}/access"
        params = {"user_id": user_id}
        return await self._ask("GET", path, call, "permission_level", params=params)

    async def get_schema(self, base_id: str, call: Call) -> dict[str, Any]:
        """``GET /bases/{base_id}/schema`` -> ``{"base_id", "tables": [{"id", "name"}, ...]}``."""
        path = f"/bases/{segment(base_id)}/schema"
        schema = await self._ask("GET", path, call, "tables")
        tables = schema["tables"]
        if not isinstance(tables, list) or not all(
            isinstance(t, dict) and isinstance(t.get("id"), str) for t in tables
        ):
            raise BadReply(
                f"airtable service: GET {path} answered tables without an id each",
                service=self.http.service,
            )
        return schema

    async def create_webhook(
        self, base_id: str, workspace_id: str, table_ids: Sequence[str], call: Call
    ) -> dict[str, Any]:
        """``POST /bases/{base_id}/webhooks`` -> ``{"webhook_id", ...}``."""
        body = {"workspace_id": workspace_id, "table_ids": list(table_ids)}
        path = f"/bases/{segment(base_id)}/webhooks"
        return await self._ask("POST", path, call, "webhook_id", json=body)

    async def delete_webhook(self, base_id: str, webhook_id: str, call: Call) -> bool:
        """``DELETE /bases/{base_id}/webhooks/{webhook_id}``."""
        return await self._delete(f"/bases/{segment(base_id)}/webhooks/{segment(webhook_id)}", call)

    async def delete_webhook_by_key(self, base_id: str, key: str, call: Call) -> None:
        """``DELETE /bases/{base_id}/webhooks?idempotency_key=``: the webhook of the base that
        the create with ``key`` made."""
        await self._undo_by_key(f"/bases/{segment(base_id)}/webhooks", key, call)

    async def start_sync(
        self,
        base_id: str,
        *,
        saga_id: str,
        workspace_id: str,
        webhook_id: str,
        table_ids: Sequence[str],
        call: Call,
    ) -> dict[str, Any]:
        """``POST /bases/{base_id}/syncs`` -> 202 ``{"job_id", ...}``; the connector announces
        ``airtable.sync.completed`` or ``airtable.sync.failed`` for ``saga_id`` later."""
        body = {
            "saga_id": saga_id,
            "workspace_id": workspace_id,
            "webhook_id": webhook_id,
            "table_ids": list(table_ids),
        }
        path = f"/bases/{segment(base_id)}/syncs"
        return await self._ask("POST", path, call, "job_id", json=body)

    async def cancel_sync_by_key(self, base_id: str, key: str, call: Call) -> None:
        """``DELETE /bases/{base_id}/syncs?idempotency_key=``: stops the sync of the base that
        the start with ``key`` began, if it runs, and no start with ``key`` begins one after
        this (the data it synced is the purge's business)."""
        await self._undo_by_key(f"/bases/{segment(base_id)}/syncs", key, call)

    async def purge_synced_data(self, base_id: str, workspace_id: str, call: Call) -> None:
        """``DELETE /bases/{base_id}/synced-data?workspace_id=``: stops any sync of the base
        into the workspace and deletes what was synced; nothing there is fine."""
        path = f"/bases/{segment(base_id)}/synced-data"
        await self._delete(path, call, params={"workspace_id": workspace_id})
