"""The saga types the service knows: a name -> definition registry, and the built-in sagas."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from saga_orchestrator.errors import UnknownSagaType

from ..definition import SagaDefinition


class SagaCatalog:
    """The saga types a coordinator can start, by name."""

    def __init__(self, definitions: Iterable[SagaDefinition] = ()) -> None:
        self._definitions: dict[str, SagaDefinition] = {}
        for definition in definitions:
            self.register(definition)

    def register(self, definition: SagaDefinition) -> None:
        if definition.name in self._definitions:
            raise ValueError(f"saga type {definition.name!r} is registered twice")
        self._definitions[definition.name] = definition

    def get(self, name: str) -> SagaDefinition:
        """The definition named ``name``; raises ``UnknownSagaType`` listing the known ones."""
        try:
            return self._definitions[name]
        except KeyError:
            raise UnknownSagaType(name, list(self._definitions)) from None

    def names(self) -> list[str]:
        return sorted(self._definitions)

    def triggered_by(self, event_type: str) -> list[SagaDefinition]:
        """The saga types that an event of ``event_type`` starts."""
        return [d for d in self._definitions.values() if event_type in d.triggers]

    def __iter__(self) -> Iterator[SagaDefinition]:
        return iter(self._definitions.values())

    def __len__(self) -> int:
        return len(self._definitions)
