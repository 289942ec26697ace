"""The check every request passes before its route: no path or query text a store cannot keep.

A route reads its path and query parameters and may hand them to the store (a stream id, a
saga type filter, a cursor). PostgreSQL refuses a NUL character in text, which would make such
a request a 500; so every path parameter, and every query parameter's name and value, is
checked here, once for all routes (a route cannot forget it): one that fails
:func:`~.validate.unstorable_text` is a 400 ``invalid_path`` or ``invalid_query`` naming it.
Bodies get the same rule when they are read (:func:`~.validate.parse_json`).

A request that matches no route (404) or no method (405) is answered as such: the check waits
for a route.
"""

from __future__ import annotations

from quart import Quart, request

from .errors import InvalidPath, InvalidQuery
from .validate import unstorable_text

__all__ = ["install_boundary_check"]


def _problems(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    errors = []
    for name, value in pairs:
        problem = unstorable_text(name)
        if problem is not None:
            errors.append({"field": name, "message": f"the parameter's name {problem}"})
            continue
        problem = unstorable_text(value)
        if problem is not None:
            errors.append({"field": name, "message": problem})
    return errors


def check_request_text() -> None:
    """Raise ``InvalidPath`` or ``InvalidQuery`` (400) for a parameter no store can keep."""
    if request.routing_exception is not None:
        return
    path = [
        (name, value) for name, value in (request.view_args or {}).items() if isinstance(value, str)
    ]
    errors = _problems(path)
    if errors:
        raise InvalidPath("the path is not valid", errors)
    errors = _problems(list(request.args.items(multi=True)))
    if errors:
        raise InvalidQuery("the query is not valid", errors)


def install_boundary_check(app: Quart) -> None:
    """Check every request's path and query before its route runs (install after auth: a
    caller without the key learns nothing)."""

    async def check() -> None:
        check_request_text()

    app.before_request(check)
