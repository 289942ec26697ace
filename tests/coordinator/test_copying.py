"""``replace``: the generated copier of the hot path, and the classes it refuses."""

from __future__ import annotations

import attrs
import pytest

from saga_orchestrator.coordinator.copying import replace
from saga_orchestrator.coordinator.state import SagaState, StepState


def test_a_copy_changes_only_the_named_fields() -> None:
    state = SagaState(saga_id="s", version=3, steps=(StepState(),))
    copy = replace(state, version=4)
    assert attrs.evolve(state, version=4) == copy
    assert (3, 4) == (state.version, copy.version)


def test_an_unknown_field_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        replace(SagaState(), no_such_field=1)


@attrs.frozen
class Validated:
    n: int = attrs.field(validator=attrs.validators.gt(0))


@attrs.frozen
class Converted:
    n: int = attrs.field(converter=int)


@attrs.frozen
class PostInit:
    n: int

    def __attrs_post_init__(self) -> None:
        pass


@pytest.mark.parametrize("cls", [Validated, Converted, PostInit])
def test_a_class_whose_checks_the_copier_would_skip_is_refused(cls: type) -> None:
    with pytest.raises(TypeError, match=r"attrs\.evolve"):
        replace(cls(1), n=2)
