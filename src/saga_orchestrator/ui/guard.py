"""The dashboard's blueprint and the check every one of its requests passes.

A request is from a signed-in :class:`~.session.Viewer` (the session cookie, or the
``X-API-Key`` header a reverse proxy adds), or it is turned away: a page (``GET``) redirects to
the sign-in form (303, coming back afterwards), anything else is a 401. A ``POST`` must carry
the session's CSRF token in its form (``csrf_token``; else 403 ``csrf_rejected``), and a
read-only key may not post at all (403 ``forbidden``). The sign-in form and the static files
are open. Errors on the dashboard's pages are rendered as a page with the same status.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, current_app, g, redirect, render_template, request
from werkzeug.exceptions import HTTPException

from saga_orchestrator.http.auth import remember_key_name
from saga_orchestrator.http.errors import (
    ApiKeyRejected,
    CsrfRejected,
    ReadOnlyKey,
    error_response,
    http_exception_response,
    rule_for,
)
from saga_orchestrator.http.openapi import UI_PREFIX

from . import Dashboard
from .session import COOKIE, Viewer

__all__ = ["CSP", "dashboard", "page", "safe_next", "ui", "viewer"]

ui = Blueprint(
    "ui", __name__, url_prefix=UI_PREFIX, template_folder="templates", static_folder=None
)

_EXTENSION = "saga_orchestrator.ui"
OPEN_ENDPOINTS = frozenset({"ui.login", "ui.login_post", "ui.static_file"})
"""Served without signing in."""
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""The dashboard's pages load nothing but the service's own script and style."""


def dashboard() -> Dashboard:
    """The current app's :class:`~saga_orchestrator.ui.Dashboard`."""
    return current_app.extensions[_EXTENSION]


def attach(app: Any, board: Dashboard) -> None:
    app.extensions[_EXTENSION] = board


def viewer() -> Viewer:
    """The signed-in viewer of the current request (the guard let it through)."""
    return g.ui_viewer


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path only (never another site)."""
    if target and target.startswith(UI_PREFIX + "/") and "//" not in target and "\\" not in target:
        return target
    return UI_PREFIX + "/"


@ui.before_request
async def check_viewer() -> Response | None:
    board = dashboard()
    found = board.sessions.from_header(request.headers.get("X-API-Key"))
    found = found or board.sessions.from_cookie(request.cookies.get(COOKIE))
    g.ui_viewer = found
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    if found is None:
        if request.method in ("GET", "HEAD") and request.endpoint != "ui.live":
            target = request.full_path.rstrip("?")
            return redirect(f"{UI_PREFIX}/login?next={_quote(target)}", 303)
        raise ApiKeyRejected("sign in to the dashboard first")
    remember_key_name(found.name)
    if request.method == "POST":
        form = await request.form
        if not board.sessions.token_matches(form.get("csrf_token"), found.csrf):
            raise CsrfRejected("the form's CSRF token is missing or not this session's")
        if found.read_only and request.endpoint != "ui.logout":
            raise ReadOnlyKey(f"the key {found.name!r} is read-only: it may look, not act")
    return None


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="/")


@ui.after_request
async def page_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


async def page(template: str, status: int = 200, **context: Any) -> Response:
    """Render a dashboard page (``text/html``) with the viewer and the dashboard's links."""
    body = await render_template(template, viewer=g.get("ui_viewer"), prefix=UI_PREFIX, **context)
    return Response(body, status=status, content_type="text/html; charset=utf-8")


@ui.errorhandler(Exception)
async def error_page(error: Exception) -> Response:
    """The dashboard's errors as a page (JSON for the live stream and for non-browsers)."""
    if isinstance(error, HTTPException):
        status, message = error.code or 500, error.description or error.name
    else:
        rule = rule_for(error)
        if rule.status >= 500 or request.endpoint == "ui.live":
            return error_response(error)
        status, message = rule.status, (rule.message or str(error) or rule.code)
    if "text/html" not in request.headers.get("Accept", "") and request.method != "GET":
        if isinstance(error, HTTPException):
            return http_exception_response(error)
        return error_response(error)
    return await page("error.html", status=status, status_code=status, message=message)
