"""Hypercorn's access log line (``LOG_LEVEL=DEBUG``), with who called in its user field.

The line is the combined log format, whose third field (the user) is the name of the API key
the request came with (:func:`.auth.key_name_of_scope`), ``-`` without one::

    127.0.0.1:51234 - ops [01/May/2026:12:00:00 +0000] "POST /sagas/start 1.1" 202 912 "-" "-"

The key itself never appears: the format names no request header.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypercorn.logging import Logger

from .auth import key_name_of_scope

__all__ = ["ACCESS_LOG_FORMAT", "AccessLogger"]

ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
"""Hypercorn's default line with the user field (``u``) where it repeats ``l`` (``-``)."""


class AccessLogger(Logger):
    """Hypercorn's logger whose access-log atoms carry the API key's name as ``u``."""

    def atoms(self, request: Any, response: Any, request_time: float) -> Mapping[str, str]:
        atoms = super().atoms(request, response, request_time)
        atoms["u"] = key_name_of_scope(request) or "-"  # type: ignore[index]
        return atoms
