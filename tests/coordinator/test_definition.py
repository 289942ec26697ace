"""Saga input validation: one error per bad field, named by its path."""

import attrs
import pytest

from saga_orchestrator.coordinator.definition import FieldError, SagaDefinition, Step
from saga_orchestrator.errors import ValidationError


def _positive(_instance, attribute, value):
    if value <= 0:
        raise FieldError("must be positive", attribute)


@attrs.frozen
class Order:
    order_id: str
    quantity: int = attrs.field(validator=_positive)
    rush: bool = False


async def _noop(ctx):
    return None


ORDER = SagaDefinition(
    name="order", version=1, input_type=Order, steps=[Step(name="s", action=_noop)]
)


def errors_of(data):
    with pytest.raises(ValidationError) as caught:
        ORDER.parse_input(data)
    return caught.value.errors


def test_a_valid_input_is_parsed_and_dumped_back():
    parsed = ORDER.parse_input({"order_id": "o-1", "quantity": 2})
    assert Order("o-1", 2) == parsed
    assert {"order_id": "o-1", "quantity": 2, "rush": False} == ORDER.dump_input(parsed)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"quantity": 1}, [{"field": "data.order_id", "message": "is required"}]),
        (
            {"order_id": 5, "quantity": "2"},
            [
                {"field": "data.order_id", "message": "expected a string, got int"},
                {"field": "data.quantity", "message": "expected an integer, got str"},
            ],
        ),
        (
            {"order_id": "o", "quantity": 1, "rush": "yes"},
            [{"field": "data.rush", "message": "expected true or false, got str"}],
        ),
        (
            {"order_id": "o", "quantity": 0},
            [{"field": "data.quantity", "message": "must be positive"}],
        ),
        (
            {"order_id": "o", "quantity": 1, "extra": 1},
            [{"field": "data", "message": "unknown fields: extra"}],
        ),
        ([1, 2], [{"field": "data", "message": "expected an object"}]),
    ],
)
def test_each_bad_field_is_named(data, expected):
    assert expected == errors_of(data)


def test_a_saga_needs_steps_with_unique_names():
    with pytest.raises(ValueError, match="no steps"):
        SagaDefinition(name="x", version=1, input_type=Order, steps=[])
    with pytest.raises(ValueError, match="duplicate step names"):
        SagaDefinition(
            name="x",
            version=1,
            input_type=Order,
            steps=[Step(name="a", action=_noop), Step(name="a", action=_noop)],
        )
