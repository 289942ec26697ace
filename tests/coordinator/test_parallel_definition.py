"""A definition with parallel groups: its flat steps, its layout, and what it refuses."""

import pytest

from saga_orchestrator.coordinator import Parallel, SagaDefinition, Step
from saga_orchestrator.coordinator.layout import Group, Placement


async def _noop(ctx):
    return None


def s(name: str) -> Step:
    return Step(name=name, action=_noop)


def define(*steps) -> SagaDefinition:
    return SagaDefinition(name="t", version=1, input_type=dict, steps=list(steps))


def test_the_steps_stay_flat_branch_by_branch_and_the_layout_names_the_branches():
    saga = define(s("a"), Parallel("g", branches=[[s("b1"), s("b2")], [s("c")]]), s("d"))
    assert ["a", "b1", "b2", "c", "d"] == [step.name for step in saga.steps]
    assert (0, Group("g", ((1, 2), (3,))), 4) == saga.stages
    assert (None, Placement("g", 0), Placement("g", 0), Placement("g", 1), None) == (
        saga.placements
    )


def test_a_definition_without_groups_has_one_stage_per_step():
    saga = define(s("a"), s("b"))
    assert ((0, 1), (None, None)) == (saga.stages, saga.placements)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([Parallel("g", branches=[[s("a")]])], "at least 2 branches"),
        ([Parallel("g", branches=[[s("a")], []])], "empty branch"),
        (
            [Parallel("g", branches=[[s("a")], [Parallel("h", branches=[[s("b")], [s("c")]])]])],
            "only steps",
        ),
        ([s("a"), Parallel("g", branches=[[s("a")], [s("b")]])], "duplicate step names"),
        ([Parallel("a", branches=[[s("b")], [s("c")]]), s("a")], "group names"),
        (
            [
                Parallel("g", branches=[[s("b")], [s("c")]]),
                Parallel("g", branches=[[s("d")], [s("e")]]),
            ],
            "group names",
        ),
    ],
)
def test_a_bad_layout_is_refused(steps, message):
    with pytest.raises(ValueError, match=message):
        define(*steps)
