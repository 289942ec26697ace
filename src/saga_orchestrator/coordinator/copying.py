"""Copies of frozen attrs objects with some fields changed: the hot path of every transition.

``attrs.evolve`` inspects the class on every call; :func:`replace` uses a copier generated once
per class, with one keyword per field. It sets the fields directly, so it would skip validators,
converters and ``__attrs_post_init__``: a class that has any is refused when its copier is made
(``TypeError``), and the result is then the same as ``attrs.evolve``'s.
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
    """``copy(instance, **changes)`` for ``cls``, unrolled over its fields.

    Raises:
        TypeError: ``cls`` has a validator, a converter or a post-init hook, which the copier
            would skip; use ``attrs.evolve`` for it.
    """
    fields = attrs.fields(cls)
    checked = [f.name for f in fields if f.validator is not None or f.converter is not None]
    if checked or hasattr(cls, "__attrs_post_init__"):
        what = f"fields {checked}" if checked else "__attrs_post_init__"
        raise TypeError(
            f"{cls.__qualname__} cannot be copied by replace(): its {what} would be skipped "
            "(validators, converters, post-init); use attrs.evolve"
        )
    names = [f.name for f in fields]
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
