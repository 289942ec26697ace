"""How a saga's steps are laid out in stages: pure data, shared by the definition and the state
machine.

A saga's steps are one flat tuple (their indices are what the transitions name); the layout
groups them into stages run one after another. A stage is a plain step (its flat index) or a
:class:`Group` of branches run concurrently, each branch a sequence of flat indices.
"""

from __future__ import annotations

import attrs

__all__ = ["Group", "Placement", "Stage", "placements"]


@attrs.frozen
class Group:
    """A parallel group: its name and its branches, each a tuple of flat step indices."""

    name: str
    branches: tuple[tuple[int, ...], ...]


Stage = int | Group
"""A plain step (its flat index) or a parallel group."""


@attrs.frozen
class Placement:
    """Where a step of a group sits: the group's name and the branch's index (from 0)."""

    group: str
    branch: int


def placements(stages: tuple[Stage, ...], size: int) -> tuple[Placement | None, ...]:
    """Each of ``size`` flat steps' placement (``None`` for a plain step)."""
    found: list[Placement | None] = [None] * size
    for stage in stages:
        if isinstance(stage, Group):
            for number, branch in enumerate(stage.branches):
                for index in branch:
                    found[index] = Placement(stage.name, number)
    return tuple(found)
