"""The dashboard's pages: sign-in and sign-out, sagas, one saga, events, metrics.

Reads go to the store (as the JSON API's do); nothing here changes a saga (see
:mod:`.actions`). Every page is rendered in full by the service; the script only makes times
local and swaps in a fresh copy of the page's live part when the live stream says something
changed.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections import Counter
from typing import Any

import attrs
from quart import Response, redirect, request

from saga_orchestrator.coordinator.projection import stream_id
from saga_orchestrator.coordinator.state import PARKED, TERMINAL, SagaStatus
from saga_orchestrator.coordinator.transitions import from_record
from saga_orchestrator.errors import SagaNotFound
from saga_orchestrator.http.app import deps
from saga_orchestrator.http.errors import CsrfRejected, InvalidQuery
from saga_orchestrator.http.routes_sagas import parse_list_query
from saga_orchestrator.http.serialize import iso_time
from saga_orchestrator.store.records import SagaQuery

from .guard import dashboard, page, safe_next, ui
from .ring import KINDS, percentile
from .session import COOKIE, SESSION_SECONDS
from .timeline import history, timeline

__all__ = ["COUNT_CAP", "LOGIN_COOKIE", "SCAN_LIMIT"]

LOGIN_COOKIE = "saga_ui_login"
"""The sign-in form's nonce (its CSRF token is made from it)."""
COUNT_CAP = 1000
"""Sagas counted per status on the sagas page; more shows as "1000+"."""
SCAN_LIMIT = 1000
"""Newest sagas searched for a correlation id or a part of a saga id."""
STATUSES = [s.value for s in SagaStatus]


def _cookie(response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/ui",
        httponly=True,
        samesite="Strict",
        secure=request.scheme == "https",
    )


# --------------------------------------------------------------------------------------------
# Sign-in, sign-out.


@ui.get("/login")
async def login(error: str | None = None, status: int = 200) -> Response:
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(16)
    board = dashboard()
    response = await page(
        "login.html",
        status=status,
        token=board.sessions.login_token(nonce),
        next=safe_next(request.args.get("next")),
        open=board.sessions.open,
        error=error,
    )
    _cookie(response, LOGIN_COOKIE, nonce, 3600)
    return response


@ui.post("/login")
async def login_post() -> Response:
    form = await request.form
    board = dashboard()
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not board.sessions.token_matches(
        form.get("csrf_token"), board.sessions.login_token(nonce)
    ):
        raise CsrfRejected("the sign-in form's CSRF token is missing or wrong; reload the form")
    if board.sessions.open:
        key = None
    else:
        key = board.sessions.find_key(form.get("api_key", "").strip())
        if key is None:
            return await login(error="This API key is not one of the service's keys.", status=401)
    response = redirect(safe_next(form.get("next")), 303)
    _cookie(response, COOKIE, board.sessions.cookie_for(key), SESSION_SECONDS)
    return response


@ui.post("/logout")
async def logout() -> Response:
    response = redirect("/ui/login", 303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


# --------------------------------------------------------------------------------------------
# Sagas.


async def _counts() -> tuple[dict[str, str], dict[str, int]]:
    """Sagas by status (capped at :data:`COUNT_CAP`) and by type (of those counted)."""
    store = deps().store
    by_status: dict[str, str] = {}
    by_type: Counter[str] = Counter()
    for status in STATUSES:
        found = await store.list_sagas(SagaQuery(statuses=(status,), limit=COUNT_CAP + 1))
        items = found.items[:COUNT_CAP]
        by_status[status] = f"{COUNT_CAP}+" if len(found.items) > COUNT_CAP else str(len(items))
        by_type.update(record.saga_type for record in items)
    return by_status, dict(sorted(by_type.items()))


@ui.get("/")
async def sagas_page() -> Response:
    args = {k: v for k, v in request.args.to_dict(flat=False).items() if v and v[0] != ""}
    search = (args.pop("q", [""])[0]).strip().lower()
    correlation = (args.pop("correlation_id", [""])[0]).strip()
    if search:
        try:
            return redirect(f"/ui/sagas/{uuid.UUID(search)}", 303)
        except ValueError:
            pass
    error = None
    try:
        query = parse_list_query(args)
    except InvalidQuery as exc:
        error = "; ".join(f"{e['field']}: {e['message']}" for e in exc.errors) or str(exc)
        query = SagaQuery()
    store = deps().store
    if correlation:
        query = attrs.evolve(query, correlation_id=correlation)
    if search:  # not a store filter: the newest sagas are searched
        found = await store.list_sagas(attrs.evolve(query, cursor=None, limit=SCAN_LIMIT))
        items = [r for r in found.items if search in r.saga_id][: query.limit]
        next_cursor = None
    else:
        found = await store.list_sagas(query)
        items, next_cursor = list(found.items), found.next_cursor
    by_status, by_type = await _counts()
    shown = {k: v[0] for k, v in request.args.to_dict(flat=False).items() if k != "cursor"}
    return await page(
        "sagas.html",
        items=items,
        next_cursor=next_cursor,
        by_status=by_status,
        by_type=by_type,
        statuses=STATUSES,
        types=deps().catalog.names(),
        filters=shown,
        error=error,
        scanned=bool(search or correlation),
        scan_limit=SCAN_LIMIT,
        iso=iso_time,
    )


@ui.get("/sagas/by-key")
async def saga_by_key() -> Response:
    key = request.args.get("key", "")
    record = await deps().store.find_saga_by_key(key) if key else None
    if record is None:
        raise SagaNotFound(key)
    return redirect(f"/ui/sagas/{record.saga_id}", 303)


def _actions(status: str, steps: list[Any]) -> dict[str, Any]:
    """Which forms the saga page offers for a saga in ``status``."""
    parked = SagaStatus(status) in PARKED
    return {
        "cancel": SagaStatus(status) not in TERMINAL and not parked,
        "retry": parked,
        "resolve": [s.name for s in steps if s.status == "unknown"]
        if status == SagaStatus.COMPENSATION_FAILED
        else [],
        "skip": [s.name for s in steps if s.compensation_status == "failed"],
        "resume": [s.name for s in steps] if parked else [],
    }


@ui.get("/sagas/<saga_id>")
async def saga_page(saga_id: str) -> Response:
    try:
        saga_id = str(uuid.UUID(saga_id))
    except ValueError:
        raise SagaNotFound(saga_id) from None
    store = deps().store
    record = await store.get_saga(saga_id)
    if record is None:
        raise SagaNotFound(saga_id)
    recorded = await store.read_stream(stream_id(saga_id), limit=10_000)
    transitions = []
    for event in recorded:
        try:
            transitions.append(from_record(event.event_type, event.data))
        except ValueError:
            continue
    names = [step.name for step in record.steps]
    line = timeline(transitions, names, now=time.time())
    return await page(
        "saga.html",
        saga=record,
        line=line,
        bars=line.layout(),
        history=history(transitions, names),
        actions=_actions(record.status, list(record.steps)),
        done=request.args.get("done"),
        failed=request.args.get("error"),
        iso=iso_time,
    )


# --------------------------------------------------------------------------------------------
# Events, metrics.


@ui.get("/events")
async def events_page() -> Response:
    try:
        after = max(0, int(request.args.get("after", "0") or 0))
    except ValueError:
        after = 0
    kind = request.args.get("type", "").strip()
    stream = request.args.get("stream", "").strip()
    svc = deps()
    read = await svc.store.read_all(after_position=after, limit=200)
    items = [
        e
        for e in read
        if (not kind or e.event_type == kind) and (not stream or e.stream_id == stream)
    ]
    rows = []
    for event in items:
        target = event.metadata.get("saga_id") or event.data.get("saga_id")
        target = target if isinstance(target, str) else None
        started = [d.name for d in svc.catalog.triggered_by(event.event_type)]
        rows.append({"event": event, "delivered_to": target, "started": started})
    return await page(
        "events.html",
        rows=rows,
        kind=kind,
        stream=stream,
        types=await svc.store.event_types(),
        next_after=read[-1].position if len(read) == 200 else None,
        iso=iso_time,
    )


@ui.get("/metrics")
async def metrics_page() -> Response:
    series = dashboard().ring.series()
    latencies = [x for minute in series for x in minute.latencies]
    figures = {q: percentile(latencies, q / 100) for q in (50, 95, 99)}
    charts: dict[str, list[float]] = {kind: [m.counts[kind] for m in series] for kind in KINDS}
    charts["p95 step latency (ms)"] = [
        round((percentile(m.latencies, 0.95) or 0.0) * 1000, 1) for m in series
    ]
    return await page(
        "metrics.html",
        charts=charts,
        start=series[0].start,
        percentiles=figures,
        samples=len(latencies),
    )
