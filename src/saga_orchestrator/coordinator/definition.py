"""The saga definition DSL: what a saga type is, independent of how it runs.

A :class:`SagaDefinition` names a saga type, its input type (an attrs class validated with
cattrs) and its ordered :class:`Step` s. Each step has an async ``action`` and an optional
``compensation``; both receive a :class:`StepContext`.

    @attrs.frozen
    class Input:
        user_id: str

    async def create(ctx: StepContext) -> dict: ...
    async def delete(ctx: StepContext) -> None: ...

    saga = SagaDefinition(
        name="example", version=1, input_type=Input,
        steps=[Step(name="create", action=create, compensation=delete)],
    )
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
import cattrs

from saga_orchestrator.errors import SagaOrchestratorError, ValidationError

from .layout import Group, Placement, Stage, placements


class FieldError(ValueError):
    """Raise from an attrs validator of a saga input: ``FieldError("must not be empty",
    attribute)``; the 422 answer then names the field."""

    def __init__(self, message: str, attribute: attrs.Attribute[Any]) -> None:
        super().__init__(message, attribute)

    def __str__(self) -> str:
        return f"{self.args[1].name} {self.args[0]}"


class NonRetryableError(SagaOrchestratorError):
    """Raise from a step action to fail the step at once, without retries."""


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often and how fast a failing step is tried again."""

    max_attempts: int | None = None
    """Attempts including the first; ``None`` takes ``SAGA_RETRY_ATTEMPTS``."""
    initial_backoff: float | None = None
    """Delay before the second attempt; ``None`` takes ``SAGA_RETRY_BACKOFF_SECONDS``."""
    multiplier: float = 2.0
    """Each later delay is this many times the one before."""
    max_backoff: float | None = None
    """Cap on one delay; ``None`` takes ``SAGA_RETRY_BACKOFF_MAX_SECONDS``."""
    jitter: float = 0.2
    """Each delay varies by up to this fraction, deterministically per saga, step and attempt."""
    non_retryable: tuple[type[BaseException], ...] = ()
    """Errors that fail the step at once (``NonRetryableError`` always does)."""


@attrs.frozen(kw_only=True)
class StepContext:
    """What a step's action or compensation sees."""

    saga_id: str
    saga_type: str
    step: str
    """This step's name."""
    attempt: int
    input: Any
    """The saga input, an instance of the definition's ``input_type``."""
    results: Mapping[str, Any]
    """Results of the steps completed before this one, by step name."""
    idempotency_key: str
    """Stable for this saga and step across attempts and restarts: send it downstream."""
    correlation_id: str | None = None
    result: Any = None
    """For a compensation: the result of the step it undoes (``None`` if its outcome is unknown)."""
    resources: Mapping[str, Any] = attrs.field(factory=dict)
    """Shared clients (HTTP clients and the like) handed to the coordinator."""


StepFunction = Callable[[StepContext], Awaitable[Any]]


@attrs.frozen(kw_only=True)
class AwaitReply:
    """Makes a step reply-driven: its action sends a command (an HTTP call, a published event)
    and the step completes when a reply event for this saga arrives, or fails on its timeout.

    A reply names its saga with ``saga_id`` in the event's metadata or data. The step's result
    is ``{"accepted": <the action's result>, "reply": <the reply event's data>}``.
    """

    success: Sequence[str] = attrs.field(converter=tuple)
    """Event types that complete the step."""
    failure: Sequence[str] = attrs.field(default=(), converter=tuple)
    """Event types that fail it (not retried; completed steps are compensated)."""


@attrs.frozen(kw_only=True)
class Step:
    """One step of a saga."""

    name: str
    action: StepFunction
    """Does the step's work; returns a JSON-serialisable result that later steps can read."""
    compensation: StepFunction | None = None
    """Undoes the action; must be idempotent (it may run more than once after a crash)."""
    timeout: float | None = None
    """Seconds one attempt may take; ``None`` takes ``SAGA_STEP_TIMEOUT_SECONDS``."""
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    compensation_safe_if_unknown: bool = False
    """Whether the compensation may run when the action was interrupted mid-flight and its
    outcome is unknown (it must then tolerate an action that never happened)."""
    reply: AwaitReply | None = None
    """Set for a reply-driven step; ``timeout`` then also bounds the wait for the reply."""


def _branches(value: Sequence[Sequence[Step]]) -> tuple[tuple[Step, ...], ...]:
    return tuple(tuple(branch) for branch in value)


@attrs.frozen
class Parallel:
    """A group of branches run concurrently, joined before the saga's next step: each branch
    is a sequence of steps run in order. When a step of a branch fails, the running steps of
    the other branches are cut short, and every completed step is compensated (branches in
    parallel, each in reverse order), then the steps before the group.

        Parallel("provision", branches=[[Step(...)], [Step(...), Step(...)]])
    """

    name: str
    branches: Sequence[Sequence[Step]] = attrs.field(converter=_branches, kw_only=True)


@attrs.frozen(kw_only=True)
class SagaDefinition:
    """A saga type.

    ``steps`` is given as :class:`Step` s and :class:`Parallel` groups; the definition keeps it
    as the flat tuple of its steps, in order (a group's steps branch by branch), and the layout
    in ``stages``."""

    name: str
    version: int
    input_type: type[Any]
    steps: Sequence[Step] = attrs.field(converter=tuple)
    triggers: Sequence[str] = attrs.field(default=(), converter=tuple)
    """Event types that start this saga."""
    description: str = ""
    stages: tuple[Stage, ...] = attrs.field(init=False, default=())
    """The stages run one after another: a plain step's flat index, or a :class:`Group` of
    branches of flat indices."""
    placements: tuple[Placement | None, ...] = attrs.field(init=False, default=())
    """Per flat step: its group and branch, or ``None`` for a plain step."""

    def __attrs_post_init__(self) -> None:
        steps, stages = _laid_out(self.name, self.steps)
        names = [step.name for step in steps]
        if not names:
            raise ValueError(f"saga {self.name!r} has no steps")
        if len(set(names)) != len(names):
            raise ValueError(f"saga {self.name!r} has duplicate step names: {names}")
        groups = [stage.name for stage in stages if isinstance(stage, Group)]
        if len(set(groups)) != len(groups) or set(groups) & set(names):
            raise ValueError(
                f"saga {self.name!r}: group names must be unique and differ from step names"
            )
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "stages", stages)
        object.__setattr__(self, "placements", placements(stages, len(steps)))

    def with_steps(self, steps: Sequence[Step]) -> SagaDefinition:
        """This definition with its flat steps replaced by ``steps`` (as many), in the same
        layout."""
        if len(steps) != len(self.steps):
            raise ValueError(f"saga {self.name!r} has {len(self.steps)} steps, not {len(steps)}")
        items: list[Step | Parallel] = []
        for stage in self.stages:
            if isinstance(stage, Group):
                branches = [[steps[i] for i in branch] for branch in stage.branches]
                items.append(Parallel(stage.name, branches=branches))
            else:
                items.append(steps[stage])
        return attrs.evolve(self, steps=items)

    def parse_input(self, data: Any) -> Any:
        """Validate ``data`` against ``input_type``.

        Raises:
            ValidationError: with one entry per bad field (``field``, ``message``).
        """
        if not isinstance(data, Mapping):
            raise ValidationError(
                f"input of saga {self.name!r} must be a JSON object",
                [{"field": "data", "message": "expected an object"}],
            )
        try:
            return _input_converter.structure(dict(data), self.input_type)
        except cattrs.ClassValidationError as group:
            errors = [
                {"field": ".".join(["data", *map(str, path)]), "message": message}
                for path, message in _flatten(group)
            ]
            raise ValidationError(f"input of saga {self.name!r} is not valid", errors) from None
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"input of saga {self.name!r} is not valid", [_validator_error(exc)]
            ) from None

    def dump_input(self, value: Any) -> dict[str, Any]:
        """The JSON form of a parsed input."""
        return _input_converter.unstructure(value)


def _laid_out(saga: str, items: Sequence[Any]) -> tuple[tuple[Step, ...], tuple[Stage, ...]]:
    """The flat steps and the stages of a definition's ``steps`` (steps and groups)."""
    steps: list[Step] = []
    stages: list[Stage] = []
    for item in items:
        if isinstance(item, Step):
            stages.append(len(steps))
            steps.append(item)
            continue
        if not isinstance(item, Parallel):
            raise TypeError(f"saga {saga!r}: expected a Step or a Parallel, got {item!r}")
        if len(item.branches) < 2:
            raise ValueError(f"saga {saga!r}: group {item.name!r} needs at least 2 branches")
        branches = []
        for branch in item.branches:
            if not branch:
                raise ValueError(f"saga {saga!r}: group {item.name!r} has an empty branch")
            if not all(isinstance(step, Step) for step in branch):
                raise ValueError(f"saga {saga!r}: group {item.name!r} may hold only steps")
            branches.append(tuple(range(len(steps), len(steps) + len(branch))))
            steps.extend(branch)
        stages.append(Group(item.name, tuple(branches)))
    return tuple(steps), tuple(stages)


def _strict_str(value: Any, _type: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def json_integer(value: Any) -> int | None:
    """A JSON value as an integer the way JSON Schema counts one (``3`` and ``3.0``; not
    ``true``, ``3.5`` or ``"3"``), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _strict_int(value: Any, _type: type) -> int:
    number = json_integer(value)
    if number is None:
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return number


def _strict_bool(value: Any, _type: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


_input_converter = cattrs.Converter(forbid_extra_keys=True)
_input_converter.register_structure_hook(str, _strict_str)
_input_converter.register_structure_hook(int, _strict_int)
_input_converter.register_structure_hook(bool, _strict_bool)


def _flatten(group: BaseException, path: tuple[Any, ...] = ()) -> list[tuple[tuple, str]]:
    """(path, message) for each leaf error of a cattrs validation group."""
    if not isinstance(group, BaseExceptionGroup):
        field = _rejected_attribute(group)
        if field is not None:
            return [((*path, field.name), str(group.args[0]))]
        return [(path, _describe(group))]
    grouped = getattr(group, "group_exceptions", None)
    if callable(grouped):
        with_notes, without_notes = grouped()
        pairs = [*with_notes, *((e, None) for e in without_notes)]
    else:
        pairs = [(e, None) for e in group.exceptions]
    found: list[tuple[tuple, str]] = []
    for exc, note in pairs:
        name = getattr(note, "name", None)
        if name is None:
            name = getattr(note, "index", None)
        sub = (*path, name) if name is not None else path
        if isinstance(exc, KeyError) and name is not None:
            found.append((sub, "is required"))
        else:
            found.extend(_flatten(exc, sub))
    return found


def _rejected_attribute(exc: BaseException) -> attrs.Attribute[Any] | None:
    """The field an attrs validator rejected (attrs puts the ``Attribute`` in its args)."""
    args = exc.args
    return args[1] if len(args) >= 2 and isinstance(args[1], attrs.Attribute) else None


def _validator_error(exc: BaseException) -> dict[str, str]:
    field = _rejected_attribute(exc)
    if field is not None:
        return {"field": f"data.{field.name}", "message": str(exc.args[0])}
    return {"field": "data", "message": str(exc)}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unknown fields: {', '.join(sorted(exc.extra_fields))}"
    if isinstance(exc, KeyError):
        return "is required"
    return str(exc)
