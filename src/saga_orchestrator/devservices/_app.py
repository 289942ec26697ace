"""The stand-in's Quart-Trio app: the five services under one host, and a control API.

Every service route goes through :func:`_serve`: it checks the bearer token, applies the fault
that strikes the request, requires ``Idempotency-Key``, answers a repeated key (same operation)
with the first answer without applying anything again, and records the call (also one never
answered: its caller went away, or a fault made it hang).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

import attrs
import trio
from quart import Response, request
from quart_trio import QuartTrio

from ._faults import FAULT_HEADER, Fault, fault_from_json
from ._records import Answer, Request
from ._state import DevState

__all__ = ["ROUTES", "SERVICE_PATHS", "create_app"]

SERVICE_PATHS = {
    "AUTH_SERVICE_URL": "/auth",
    "USER_SERVICE_URL": "/user",
    "PERMISSION_SERVICE_URL": "/permission",
    "NOTIFICATION_SERVICE_URL": "/notification",
    "AIRTABLE_CONNECTOR_URL": "/airtable",
}
"""Where each service lives on the stand-in, by the setting that points the orchestrator at it."""

ROUTES: list[tuple[str, str, str]] = [
    # (method, rule, operation): DevState.<service>_<name> answers the operation <service>.<name>
    ("GET", "/auth/users/<user_id>", "auth.get_user"),
    ("POST", "/permission/checks", "permission.check"),
    ("POST", "/user/profiles", "user.create_profile"),
    ("DELETE", "/user/profiles/<profile_id>", "user.delete_profile"),
    ("DELETE", "/user/profiles", "user.delete_profile_by_key"),
    ("POST", "/user/workspaces", "user.create_workspace"),
    ("DELETE", "/user/workspaces/<workspace_id>", "user.delete_workspace"),
    ("DELETE", "/user/workspaces", "user.delete_workspace_by_key"),
    ("POST", "/notification/notifications", "notification.send"),
    ("DELETE", "/notification/notifications", "notification.withdraw_by_key"),
    ("POST", "/airtable/integrations", "airtable.create_integration"),
    ("DELETE", "/airtable/integrations/<integration_id>", "airtable.delete_integration"),
    ("DELETE", "/airtable/integrations", "airtable.delete_integration_by_key"),
    ("GET", "/airtable/bases/<base_id>/access", "airtable.check_access"),
    ("GET", "/airtable/bases/<base_id>/schema", "airtable.get_schema"),
    ("POST", "/airtable/bases/<base_id>/webhooks", "airtable.create_webhook"),
    ("DELETE", "/airtable/bases/<base_id>/webhooks/<webhook_id>", "airtable.delete_webhook"),
    ("DELETE", "/airtable/bases/<base_id>/webhooks", "airtable.delete_webhook_by_key"),
    ("POST", "/airtable/bases/<base_id>/syncs", "airtable.start_sync"),
    ("DELETE", "/airtable/bases/<base_id>/syncs", "airtable.cancel_sync_by_key"),
    ("DELETE", "/airtable/bases/<base_id>/synced-data", "airtable.purge_synced_data"),
]
"""Every service operation of ``docs/services.md``. The data sync itself is the operation
``airtable.sync_job`` (a fault there makes the sync fail or hang)."""


def _json(answer: Answer) -> Response:
    text = "" if answer.body is None else json.dumps(answer.body)
    headers = dict(answer.headers)
    return Response(text, status=answer.status, headers=headers, mimetype="application/json")


def _injected(fault: Fault | None) -> Answer | None:
    """What a fault answers instead of the operation (``None``: it only delays or hangs)."""
    if fault is None or fault.status is None:
        return None
    headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
    return Answer(fault.status, {"error": f"injected fault ({fault.status})"}, headers)


async def _stall(fault: Fault | None) -> None:
    if fault is not None:
        await trio.sleep(fault.delay)
        if fault.hang:
            await trio.sleep_forever()


async def _serve(
    state: DevState, operation: str, handler: Callable[..., Answer], path_args: dict[str, str]
) -> Response:
    """Answer the request, and record it once: answered, or not (``status`` ``None``) when it
    was cancelled (the caller hung up) or failed."""
    headers = request.headers
    expected = f"Bearer {state.token}" if state.token else None
    call: dict[str, Any] = {
        "operation": operation,
        "method": request.method,
        "path": request.path,
        "idempotency_key": headers.get("Idempotency-Key") or None,
        "correlation_id": headers.get("X-Correlation-ID"),
        "authorized": expected is None
        or hmac.compare_digest(headers.get("Authorization", "").encode(), expected.encode()),
    }
    answered: list[tuple[Answer, bool, bool]] = []
    try:
        answer = await _answer(state, operation, handler, path_args, call, answered)
    finally:
        status, replayed, fault = (None, False, False)
        if answered:
            status, replayed, fault = answered[0][0].status, answered[0][1], answered[0][2]
        state.record_call(**call, status=status, replayed=replayed, fault=fault)
    return _json(answer)


async def _answer(
    state: DevState,
    operation: str,
    handler: Callable[..., Answer],
    path_args: dict[str, str],
    call: dict[str, Any],
    answered: list[tuple[Answer, bool, bool]],
) -> Answer:
    """The answer; also appended to ``answered`` with whether it was replayed (nothing
    applied) and whether it is an injected fault."""
    key = call["idempotency_key"]
    try:
        fault = state.faults.take(operation, request.headers.get(FAULT_HEADER))
    except ValueError as exc:
        answer = Answer(400, {"error": f"{FAULT_HEADER}: {exc}"})
        answered.append((answer, False, False))
        return answer
    body = await request.get_json(force=True, silent=True) if request.content_length else None
    before = fault is not None and fault.when == "before"
    if before:
        await _stall(fault)
    injected = _injected(fault)
    replayed = False
    if not call["authorized"]:
        answer = Answer(401, {"error": "a valid bearer token is required"})
    elif injected is not None and before:
        answer = injected
    elif key is None:
        answer = Answer(400, {"error": "the Idempotency-Key header is required"})
    elif body is not None and not isinstance(body, dict):
        answer = Answer(400, {"error": "the body must be a JSON object"})
    else:
        answer, replayed = _apply(state, operation, handler, key, body or {}, path_args)
        if not before:
            await _stall(fault)
        if injected is not None:  # applied and remembered, but the caller sees the fault
            answer = injected
    answered.append((answer, replayed, answer is injected))
    return answer


def _apply(
    state: DevState,
    operation: str,
    handler: Callable[..., Answer],
    key: str,
    body: dict[str, Any],
    path_args: dict[str, str],
) -> tuple[Answer, bool]:
    """The answer, and whether it is the one remembered for ``key`` (nothing applied).

    Runs without a checkpoint, so two requests with the same key cannot both apply it.
    """
    remembered = request.method != "GET"
    if remembered and (key, operation) in state.answers:
        return state.answers[(key, operation)], True
    answer = handler(Request(body=body, args=request.args, idempotency_key=key), **path_args)
    if remembered and answer.status < 500:
        state.answers[(key, operation)] = answer
    return answer, False


def create_app(state: DevState) -> QuartTrio:
    """The stand-in serving ``state``."""
    app = QuartTrio("saga_orchestrator.devservices")
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.url_map.strict_slashes = False

    @app.before_serving
    async def started() -> None:
        state.spawn = app.add_background_task

    def add(method: str, rule: str, operation: str) -> None:
        handler = getattr(state, operation.replace(".", "_"))

        async def view(**path_args: str) -> Response:
            return await _serve(state, operation, handler, path_args)

        app.add_url_rule(rule, endpoint=operation, view_func=view, methods=[method])

    for route in ROUTES:
        add(*route)
    _add_control(app, state)
    return app


def _add_control(app: QuartTrio, state: DevState) -> None:
    """``/``, ``/health/ready`` and ``/_control/...``: what the stand-in holds, and its knobs
    (no auth)."""

    def listing(items: list[Any]) -> list[dict[str, Any]]:
        return [attrs.asdict(item) for item in items]

    @app.get("/")
    async def index() -> dict[str, Any]:
        base = request.host_url.rstrip("/")
        return {
            "settings": {name: base + path for name, path in SERVICE_PATHS.items()},
            "operations": [operation for _, _, operation in ROUTES] + ["airtable.sync_job"],
        }

    @app.get("/health/ready")
    async def ready() -> dict[str, Any]:
        """Answers once the stand-in serves (``saga-orchestrator wait-ready`` polls it)."""
        return {"status": "ready"}

    @app.get("/_control/calls")
    async def calls() -> dict[str, Any]:
        return {"calls": listing(state.calls)}

    @app.get("/_control/effects")
    async def effects() -> dict[str, Any]:
        return {"effects": listing(state.effects)}

    @app.get("/_control/state")
    async def holdings() -> dict[str, Any]:
        return {**state.holdings(), "leftovers": state.leftovers()}

    @app.get("/_control/announcements")
    async def announcements() -> dict[str, Any]:
        return {"announcements": listing(state.announcements)}

    @app.get("/_control/faults")
    async def faults() -> dict[str, Any]:
        return {"faults": [fault.to_json() for fault in state.faults.faults]}

    @app.post("/_control/faults")
    async def add_fault() -> tuple[dict[str, Any], int]:
        data = await request.get_json(force=True, silent=True)
        try:
            fault = fault_from_json(data if isinstance(data, dict) else {})
        except ValueError as exc:
            return {"error": str(exc)}, 400
        state.faults.add(fault)
        return fault.to_json(), 201

    @app.delete("/_control/faults")
    async def clear_faults() -> tuple[str, int]:
        state.faults.clear()
        return "", 204

    @app.post("/_control/reset")
    async def reset() -> tuple[str, int]:
        state.reset()
        return "", 204

    @app.patch("/_control/settings")
    async def settings() -> tuple[dict[str, Any], int]:
        data = await request.get_json(force=True, silent=True)
        delay = data.get("sync_delay") if isinstance(data, dict) else None
        if not isinstance(delay, int | float) or isinstance(delay, bool) or delay < 0:
            return {"error": 'expected {"sync_delay": <seconds >= 0>}'}, 400
        state.sync_delay = float(delay)
        return {"sync_delay": state.sync_delay}, 200
