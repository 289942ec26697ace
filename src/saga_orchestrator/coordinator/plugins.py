"""Saga types from other packages: the modules named in ``SAGA_MODULES``.

Each module exposes ``SAGAS``, a list of :class:`~.definition.SagaDefinition`::

    # my_company/sagas.py
    SAGAS = [onboarding_saga, offboarding_saga]

and is named in the setting as ``SAGA_MODULES=my_company.sagas``. Problems are reported as
:class:`~saga_orchestrator.errors.ConfigError` at start-up, one line per module.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from saga_orchestrator.errors import ConfigError

from .definition import SagaDefinition

__all__ = ["load_saga_modules", "parse_module_names"]


def parse_module_names(text: str | None) -> list[str]:
    """The module names of a ``SAGA_MODULES`` value: comma-separated, blanks ignored."""
    if not text:
        return []
    return [name.strip() for name in text.split(",") if name.strip()]


def load_saga_modules(names: Sequence[str]) -> list[SagaDefinition]:
    """Import each module in ``names`` and collect its ``SAGAS``, in order.

    Raises:
        ConfigError: a module cannot be imported, has no ``SAGAS``, or ``SAGAS`` is not a list
            of ``SagaDefinition``; every bad module is reported, one line each.
    """
    definitions: list[SagaDefinition] = []
    problems: list[str] = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # an import error or anything the module raised on import
            problems.append(
                f"SAGA_MODULES: cannot import {name!r}: {type(exc).__name__}: {exc}".replace(
                    "\n", " "
                )
            )
            continue
        sagas = getattr(module, "SAGAS", None)
        if sagas is None:
            problems.append(
                f"SAGA_MODULES: module {name!r} has no SAGAS (a list of SagaDefinition)"
            )
            continue
        if not isinstance(sagas, list | tuple):
            problems.append(
                f"SAGA_MODULES: {name}.SAGAS must be a list of SagaDefinition, "
                f"not {type(sagas).__name__}"
            )
            continue
        wrong = [repr(item) for item in sagas if not isinstance(item, SagaDefinition)]
        if wrong:
            problems.append(
                f"SAGA_MODULES: {name}.SAGAS holds items that are not SagaDefinition: "
                + ", ".join(wrong)[:200]
            )
            continue
        definitions.extend(sagas)
    if problems:
        raise ConfigError("\n".join(problems))
    return definitions
