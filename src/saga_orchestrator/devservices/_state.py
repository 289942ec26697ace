"""The stand-in's memory: what each service holds, every call and every effect applied.

The operations are plain functions of the state and the request's JSON, one per row of
``docs/services.md``; the app (``_app``) adds headers, idempotency and faults around them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import attrs
import trio

from ._faults import FaultBook
from ._records import Announcement, Announcer, Answer, CallRecord, EffectRecord, Request, missing

__all__ = ["DevState"]


@attrs.define(eq=False)
class DevState:
    """Everything the stand-in remembers."""

    token: str | None = attrs.field(default=None, repr=False)
    """The bearer token callers must send; ``None``: any (or none) is accepted."""
    sync_delay: float = 1.0
    """Seconds a data sync takes before its outcome is announced."""
    announcer: Announcer | None = None
    faults: FaultBook = attrs.field(factory=FaultBook)
    spawn: Callable[..., None] | None = None
    """Starts a background task (the app sets it when it starts serving)."""

    profiles: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    workspaces: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    notifications: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    integrations: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    webhooks: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    jobs: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    synced: dict[tuple[str, str], int] = attrs.field(factory=dict)
    """Records synced, by (base id, workspace id)."""

    calls: list[CallRecord] = attrs.field(factory=list)
    effects: list[EffectRecord] = attrs.field(factory=list)
    announcements: list[Announcement] = attrs.field(factory=list)
    answers: dict[tuple[str, str], Answer] = attrs.field(factory=dict)
    """First answer per (idempotency key, operation); an undo by key replaces a create's with
    a 409 (the key is revoked)."""
    created_by: dict[tuple[str, str], str] = attrs.field(factory=dict)
    """The id of what each create made, by (operation, idempotency key): the undo by key."""
    changed: trio.Event = attrs.field(factory=trio.Event)
    _ids: Any = attrs.field(factory=itertools.count)

    def reset(self) -> None:
        """Forget everything but the configuration."""
        for store in (self.profiles, self.workspaces, self.notifications, self.integrations):
            store.clear()
        for store in (self.webhooks, self.jobs, self.synced, self.answers, self.created_by):
            store.clear()
        self.calls.clear()
        self.effects.clear()
        self.announcements.clear()
        self.faults.clear()

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def record_call(self, **fields: Any) -> None:
        self.calls.append(CallRecord(seq=len(self.calls) + 1, **fields))
        self._notify()

    def _applied(self, operation: str, request: Request, subject: str) -> None:
        self.effects.append(
            EffectRecord(
                seq=len(self.effects) + 1,
                operation=operation,
                idempotency_key=request.idempotency_key,
                subject=subject,
            )
        )
        self._notify()

    def operations(self, operation: str | None = None) -> list[str]:
        """The operations of the effects applied, in order (only ``operation`` if given)."""
        return [e.operation for e in self.effects if operation in (None, e.operation)]

    def holdings(self) -> dict[str, list[dict[str, Any]]]:
        """What each service holds now (``GET /_control/state``)."""
        synced = [
            {"base_id": base_id, "workspace_id": workspace_id, "records": records}
            for (base_id, workspace_id), records in self.synced.items()
        ]
        return {
            "profiles": list(self.profiles.values()),
            "workspaces": list(self.workspaces.values()),
            "notifications": list(self.notifications.values()),
            "integrations": list(self.integrations.values()),
            "webhooks": list(self.webhooks.values()),
            "jobs": list(self.jobs.values()),
            "synced": synced,
        }

    def leftovers(self) -> dict[str, list[dict[str, Any]]]:
        """What a saga compensated in full must not leave behind, by kind (only the kinds that
        hold something): profiles, workspaces, integrations, webhooks, synced data, and syncs
        still running. Notifications are messages, not holdings: a sent one stays listed."""
        held = self.holdings()
        held["jobs"] = [job for job in held["jobs"] if job["status"] == "accepted"]
        del held["notifications"]
        return {kind: things for kind, things in held.items() if things}

    # -- auth, permission ---------------------------------------------------------------------

    def auth_get_user(self, request: Request, user_id: str) -> Answer:
        return Answer(200, {"user_id": user_id, "status": "active"})

    def permission_check(self, request: Request) -> Answer:
        problem = missing(request.body, "user_id", "action", "resource")
        return problem or Answer(200, {"allowed": True})

    # -- user ---------------------------------------------------------------------------------

    def _create(
        self,
        operation: str,
        kind: str,
        request: Request,
        required: tuple[str, ...],
        /,
        *,
        code: int = 201,
        **extra: Any,
    ) -> Answer:
        """Check the ``required`` fields of the body, then store a new ``kind`` (its id is
        ``<kind>_id``) in the store of that name with those fields and ``extra``; answer
        ``code`` with it."""
        problem = missing(request.body, *required)
        if problem is not None:
            return problem
        store: dict[str, dict[str, Any]] = getattr(self, f"{kind}s")
        thing_id = self._new_id(kind)
        store[thing_id] = {
            f"{kind}_id": thing_id,
            **{name: request.body[name] for name in required},
            **extra,
        }
        self.created_by[(operation, request.idempotency_key)] = thing_id
        self._applied(operation, request, thing_id)
        return Answer(code, store[thing_id])

    def _undo_by_key(
        self, operation: str, created_by: str, request: Request, undo: Callable[[str], bool]
    ) -> Answer:
        """Undo what the operation ``created_by`` made with the key given as
        ``?idempotency_key=``, if anything (``undo(thing_id)`` says whether it changed it),
        and revoke that key: ``created_by`` with it answers 409 from now on and makes nothing
        (a create still in flight, arriving late). Always 204: nothing there is done too."""
        key = request.args.get("idempotency_key", "")
        if not key:
            return Answer(422, {"error": "the idempotency_key query parameter is required"})
        thing_id = self.created_by.get((created_by, key))
        undone = thing_id is not None and undo(thing_id)
        self.answers[(key, created_by)] = Answer(
            409, {"error": f"idempotency key {key!r} was revoked: what it made is undone"}
        )
        self._applied(operation, request, thing_id if undone and thing_id else key)
        return Answer(204)

    def _delete_by_key(
        self, operation: str, created_by: str, store: dict[str, dict[str, Any]], request: Request
    ) -> Answer:
        """:meth:`_undo_by_key` that deletes the thing from ``store``."""

        def delete(thing_id: str) -> bool:
            return store.pop(thing_id, None) is not None

        return self._undo_by_key(operation, created_by, request, delete)

    @staticmethod
    def _moved(thing: dict[str, Any] | None, before: str, after: str) -> bool:
        """Set ``thing``'s status to ``after`` if it is ``before``; whether it was."""
        if thing is None or thing["status"] != before:
            return False
        thing["status"] = after
        return True

    def _delete(
        self, operation: str, store: dict[str, dict[str, Any]], request: Request, thing_id: str
    ) -> Answer:
        if store.pop(thing_id, None) is None:
            return Answer(404, {"error": f"{thing_id!r} does not exist"})
        self._applied(operation, request, thing_id)
        return Answer(204)

    def user_create_profile(self, request: Request) -> Answer:
        user_id = request.body.get("user_id")
        if any(p["user_id"] == user_id for p in self.profiles.values()):
            return Answer(409, {"error": f"user {user_id!r} already has a profile"})
        required = ("user_id", "email", "name")
        return self._create("user.create_profile", "profile", request, required)

    def user_delete_profile(self, request: Request, profile_id: str) -> Answer:
        return self._delete("user.delete_profile", self.profiles, request, profile_id)

    def user_delete_profile_by_key(self, request: Request) -> Answer:
        operation, created_by = "user.delete_profile_by_key", "user.create_profile"
        return self._delete_by_key(operation, created_by, self.profiles, request)

    def user_create_workspace(self, request: Request) -> Answer:
        default = bool(request.body.get("default"))
        required = ("owner_id", "name")
        return self._create(
            "user.create_workspace", "workspace", request, required, default=default
        )

    def user_delete_workspace(self, request: Request, workspace_id: str) -> Answer:
        return self._delete("user.delete_workspace", self.workspaces, request, workspace_id)

    def user_delete_workspace_by_key(self, request: Request) -> Answer:
        operation, created_by = "user.delete_workspace_by_key", "user.create_workspace"
        return self._delete_by_key(operation, created_by, self.workspaces, request)

    # -- notification -------------------------------------------------------------------------

    def notification_send(self, request: Request) -> Answer:
        body = request.body
        return self._create(
            "notification.send",
            "notification",
            request,
            ("user_id", "template"),
            code=202,
            email=body.get("email"),
            data=body.get("data") or {},
            status="queued",
        )

    def notification_withdraw_by_key(self, request: Request) -> Answer:
        """The stand-in delivers nothing: a notification stays ``queued`` until withdrawn."""
        return self._undo_by_key(
            "notification.withdraw_by_key",
            "notification.send",
            request,
            lambda thing_id: self._moved(self.notifications.get(thing_id), "queued", "withdrawn"),
        )

    # -- airtable -----------------------------------------------------------------------------

    def airtable_create_integration(self, request: Request) -> Answer:
        kind = request.body.get("kind", "default")
        required = ("user_id", "workspace_id")
        return self._create(
            "airtable.create_integration", "integration", request, required, kind=kind
        )

    def airtable_delete_integration(self, request: Request, integration_id: str) -> Answer:
        operation = "airtable.delete_integration"
        return self._delete(operation, self.integrations, request, integration_id)

    def airtable_delete_integration_by_key(self, request: Request) -> Answer:
        operation, created_by = "airtable.delete_integration_by_key", "airtable.create_integration"
        return self._delete_by_key(operation, created_by, self.integrations, request)

    def airtable_check_access(self, request: Request, base_id: str) -> Answer:
        user_id = request.args.get("user_id", "")
        if not user_id:
            return Answer(422, {"error": "the user_id query parameter is required"})
        return Answer(200, {"base_id": base_id, "user_id": user_id, "permission_level": "create"})

    def airtable_get_schema(self, request: Request, base_id: str) -> Answer:
        tables = [
            {"id": f"tbl{base_id}{n}", "name": name, "fields": [{"name": "Name", "type": "text"}]}
            for n, name in enumerate(("Contacts", "Projects"), start=1)
        ]
        return Answer(200, {"base_id": base_id, "tables": tables})

    def airtable_create_webhook(self, request: Request, base_id: str) -> Answer:
        table_ids = list(request.body.get("table_ids") or [])
        return self._create(
            "airtable.create_webhook",
            "webhook",
            request,
            ("workspace_id",),
            base_id=base_id,
            table_ids=table_ids,
        )

    def airtable_delete_webhook(self, request: Request, base_id: str, webhook_id: str) -> Answer:
        if self.webhooks.get(webhook_id, {}).get("base_id") != base_id:
            return Answer(404, {"error": f"base {base_id!r} has no webhook {webhook_id!r}"})
        return self._delete("airtable.delete_webhook", self.webhooks, request, webhook_id)

    def airtable_delete_webhook_by_key(self, request: Request, base_id: str) -> Answer:
        def undo(webhook_id: str) -> bool:
            if self.webhooks.get(webhook_id, {}).get("base_id") != base_id:
                return False
            del self.webhooks[webhook_id]
            return True

        return self._undo_by_key(
            "airtable.delete_webhook_by_key", "airtable.create_webhook", request, undo
        )

    def airtable_start_sync(self, request: Request, base_id: str) -> Answer:
        answer = self._create(
            "airtable.start_sync",
            "job",
            request,
            ("saga_id", "workspace_id"),
            code=202,
            base_id=base_id,
            table_ids=list(request.body.get("table_ids") or []),
            status="accepted",
        )
        if answer.status == 202 and self.spawn is not None:
            assert answer.body is not None
            self.spawn(self.run_sync_job, answer.body["job_id"])
        return answer

    def airtable_cancel_sync_by_key(self, request: Request, base_id: str) -> Answer:
        def undo(job_id: str) -> bool:
            job = self.jobs.get(job_id)
            if job is None or job["base_id"] != base_id:
                return False
            return self._moved(job, "accepted", "cancelled")

        return self._undo_by_key(
            "airtable.cancel_sync_by_key", "airtable.start_sync", request, undo
        )

    def airtable_purge_synced_data(self, request: Request, base_id: str) -> Answer:
        workspace_id = request.args.get("workspace_id", "")
        if not workspace_id:
            return Answer(422, {"error": "the workspace_id query parameter is required"})
        for job in self.jobs.values():
            running = job["status"] == "accepted"
            if running and (job["base_id"], job["workspace_id"]) == (base_id, workspace_id):
                job["status"] = "cancelled"
        self.synced.pop((base_id, workspace_id), None)
        self._applied("airtable.purge_synced_data", request, f"{base_id}/{workspace_id}")
        return Answer(204)

    async def run_sync_job(self, job_id: str) -> None:
        """The asynchronous part of a sync: wait, copy the data (or fail), announce it.

        Faults of the operation ``airtable.sync_job``: a status makes the sync fail, ``hang``
        makes it never end, ``delay`` makes it slower. A purged (cancelled) job announces
        nothing.
        """
        job = self.jobs[job_id]
        await trio.sleep(self.sync_delay)
        fault = self.faults.take("airtable.sync_job")
        if fault is not None:
            await trio.sleep(fault.delay)
            if fault.hang:
                await trio.sleep_forever()
        if job["status"] != "accepted":
            return
        key = (job["base_id"], job["workspace_id"])
        data = {"saga_id": job["saga_id"], "job_id": job_id, "base_id": key[0]}
        if fault is not None and fault.status is not None:
            job["status"] = "failed"
            event_type = "airtable.sync.failed"
            data["error"] = f"the sync failed with status {fault.status} (injected)"
        else:
            job["status"] = "completed"
            event_type = "airtable.sync.completed"
            self.synced[key] = 50 * len(job["table_ids"])
            data.update(workspace_id=key[1], records=self.synced[key])
        announcement = Announcement(
            event_id=f"{job_id}:{job['status']}",
            event_type=event_type,
            saga_id=job["saga_id"],
            stream_id=f"airtable-base-{key[0]}",
            data=data,
        )
        self.announcements.append(announcement)
        self._notify()
        if self.announcer is not None:
            await self.announcer(announcement)
