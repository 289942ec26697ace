"""Copies of frozen attrs objects with some fields changed: the hot path of every transition.

``attrs.evolve`` inspects the class on every call; :func:`replace` uses a copier generated once
per class, with one keyword per field. For classes without validators or converters (the state
and transition classes), the result is the same.
"""

from __future__ import annotations

from typing import Any, TypeVar

import attrs

__all__ = ["replace"]

_T = TypeVar("_T")
_KEEP: Any = object()
_COPIERS: dict[type, Any] = {}


def replace(instance: _T, **changes: Any) -> _T:
    """A copy of ``instance`` with ``changes`` (an unknown field is a ``TypeError``)."""
    cls = type(instance)
    copier = _COPIERS.get(cls)
    if copier is None:
        copier = _COPIERS[cls] = _make_copier(cls)
    return copier(instance, **changes)  # type: ignore[no-any-return]


def _make_copier(cls: type) -> Any:
    """``copy(instance, **changes)`` for ``cls``, unrolled over its fields."""
    names = [f.name for f in attrs.fields(cls)]
    lines = [f"def copy(instance, *, {', '.join(f'{n}=_KEEP' for n in names)}):"]
    lines.append("    new = _new(_cls)")
    lines += [f"    _set(new, {n!r}, instance.{n} if {n} is _KEEP else {n})" for n in names]
    lines.append("    return new")
    namespace: dict[str, Any] = {
        "_KEEP": _KEEP,
        "_new": object.__new__,
        "_set": object.__setattr__,
        "_cls": cls,
    }
    exec("\n".join(lines), namespace)  # the source is built from the class's field names
    return namespace["copy"]
