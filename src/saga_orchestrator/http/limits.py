"""Checks on the request head, before anything else looks at a request.

- A head (request line and headers) larger than ``HTTP_MAX_HEADER_BYTES`` is refused with 431
  (:class:`~.errors.HeaderTooLarge`). Hypercorn bounds a head only while it is still arriving
  (see :func:`saga_orchestrator.service.hypercorn_config`): one that arrived whole in a single
  read reached the app whatever its size.
- A request with both ``Content-Length`` and ``Transfer-Encoding`` is refused with 400
  (:class:`~.errors.AmbiguousFraming`): a proxy in front that believed the other header would
  see a different request boundary (request smuggling).

Both answers close the connection (their :data:`~.errors.ERROR_TABLE` rules say so).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from quart import Quart, request

from .errors import AmbiguousFraming, HeaderTooLarge

__all__ = ["head_size", "install_request_limits"]

_FRAMING = frozenset({b"content-length", b"transfer-encoding"})


def head_size(scope: Mapping[str, Any]) -> int:
    """Bytes of the request head of an ASGI ``http`` scope as it came on the wire (without the
    optional whitespace around header values): ``METHOD target HTTP/x.y``, then a
    ``name: value`` line per header, each line ending in CRLF, then an empty line."""
    query = scope.get("query_string", b"")
    target = len(scope.get("raw_path") or scope["path"].encode()) + (1 + len(query) if query else 0)
    request_line = len(scope["method"]) + 1 + target + len(" HTTP/") + len(scope["http_version"])
    headers: Iterable[tuple[bytes, bytes]] = scope.get("headers", ())
    return request_line + 2 + sum(len(name) + 2 + len(value) + 2 for name, value in headers) + 2


def install_request_limits(app: Quart, *, max_header_bytes: int) -> None:
    """Refuse requests of ``app`` whose head is larger than ``max_header_bytes`` (431) or whose
    body has two framings (400). Install it after the correlation ids (the refusal carries one)
    and before authentication (a malformed request is refused as such, key or not)."""

    async def check_head() -> None:
        scope = request.scope
        size = head_size(scope)
        if size > max_header_bytes:
            raise HeaderTooLarge(
                f"the request line and headers take {size} bytes; at most {max_header_bytes} "
                "are accepted: send fewer or shorter headers"
            )
        names = {name.lower() for name, _ in scope.get("headers", ())}
        if _FRAMING <= names:
            raise AmbiguousFraming(
                "the request has both Content-Length and Transfer-Encoding; send only one"
            )

    app.before_request(check_head)
