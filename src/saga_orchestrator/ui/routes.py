"""Serving the dashboard from an app: its blueprint with every page's route."""

from __future__ import annotations

from quart import Quart

from . import Dashboard
from .guard import attach, ui

__all__ = ["install_ui"]


def install_ui(app: Quart, board: Dashboard) -> None:
    """Serve the dashboard under ``/ui/`` from ``app``, keeping ``board`` for its requests."""
    from . import actions, pages, stream  # noqa: F401  (they add their routes to ``ui``)

    attach(app, board)
    app.register_blueprint(ui)
