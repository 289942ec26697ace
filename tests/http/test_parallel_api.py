"""A saga with parallel branches through the API: its steps name their group and branch, and
its type shows the layout."""

from __future__ import annotations

from typing import Any

import attrs

from saga_orchestrator.client import SagaStep
from saga_orchestrator.client._models import from_json
from saga_orchestrator.client._saga_reads import steps_text
from saga_orchestrator.coordinator import Parallel, SagaDefinition, Step
from saga_orchestrator.coordinator.definition import StepContext
from tests.support import open_api, wait_for_status


@attrs.frozen
class FanInput:
    name: str


async def _done(ctx: StepContext) -> dict[str, Any]:
    return {"step": ctx.step}


FAN = SagaDefinition(
    name="test_fan",
    version=1,
    input_type=FanInput,
    steps=[
        Step(name="first", action=_done),
        Parallel(
            "g",
            branches=[
                [Step(name="a1", action=_done), Step(name="a2", action=_done)],
                [Step(name="b1", action=_done)],
            ],
        ),
        Step(name="last", action=_done),
    ],
)


async def test_the_steps_of_a_saga_name_their_group_and_branch() -> None:
    async with open_api(sagas=[FAN]) as api:
        response = await api.client.post(
            "/sagas/start", json={"saga_type": "test_fan", "data": {"name": "x"}}
        )
        saga_id = (await response.get_json())["saga_id"]
        saga = await wait_for_status(api.client, saga_id, ("completed",))
        steps = (await (await api.client.get(f"/sagas/{saga_id}/steps")).get_json())["items"]
    expected = [
        ("first", None, None),
        ("a1", "g", 0),
        ("a2", "g", 0),
        ("b1", "g", 1),
        ("last", None, None),
    ]
    assert expected == [(s["name"], s["group"], s["branch"]) for s in steps]
    assert expected == [(s["name"], s["group"], s["branch"]) for s in saga["steps"]]
    typed = [from_json(SagaStep, s) for s in steps]  # the Python client's model
    assert expected == [(s.name, s.group, s.branch) for s in typed]


async def test_the_saga_type_shows_its_stages() -> None:
    async with open_api(sagas=[FAN]) as api:
        types = (await (await api.client.get("/sagas/types/available")).get_json())["items"]
    (fan,) = types
    assert [
        {"step": "first", "group": None, "branches": None},
        {"step": None, "group": "g", "branches": [["a1", "a2"], ["b1"]]},
        {"step": "last", "group": None, "branches": None},
    ] == fan["stages"]
    assert [None, "g", "g", "g", None] == [s["group"] for s in fan["steps"]]
    assert [None, 0, 0, 1, None] == [s["branch"] for s in fan["steps"]]


def test_the_cli_shows_a_branch_column_only_for_a_saga_with_branches() -> None:
    plain = SagaStep(index=0, name="first", status="completed")
    branched = SagaStep(index=1, name="a1", status="running", group="g", branch=1)
    text = steps_text([plain, branched])
    header, first, second = text.splitlines()[:3]
    assert header.split()[:4] == ["#", "STEP", "BRANCH", "STATUS"]
    assert ["1", "a1", "g/1", "running"] == second.split()[:4]
    assert ["0", "first", "-", "completed"] == first.split()[:4]
    assert "BRANCH" not in steps_text([plain]).upper()
