"""The saga types the service knows: a (name, version) -> definition registry, and the built-in
sagas."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from saga_orchestrator.errors import UnknownSagaType, UnknownSagaVersion

from ..definition import SagaDefinition


class SagaCatalog:
    """The saga types a coordinator can start and drive, several versions of each.

    New sagas start on a type's newest version (or one named); a running saga keeps the
    version it started with (``get(name, version)``)."""

    def __init__(self, definitions: Iterable[SagaDefinition] = ()) -> None:
        self._definitions: dict[str, dict[int, SagaDefinition]] = {}
        for definition in definitions:
            self.register(definition)

    def register(self, definition: SagaDefinition) -> None:
        """Add ``definition``; raises ``ValueError`` when its (name, version) is registered."""
        versions = self._definitions.setdefault(definition.name, {})
        if definition.version in versions:
            raise ValueError(
                f"saga type {definition.name!r} version {definition.version} is registered twice"
            )
        versions[definition.version] = definition

    def get(self, name: str, version: int | None = None) -> SagaDefinition:
        """The definition of ``name`` in ``version`` (the newest when ``None``).

        Raises:
            UnknownSagaType: no version of ``name`` is loaded (it lists the known types).
            UnknownSagaVersion: ``name`` is loaded, but not in ``version``.
        """
        versions = self._definitions.get(name)
        if not versions:
            raise UnknownSagaType(name, list(self._definitions))
        if version is None:
            return versions[max(versions)]
        try:
            return versions[version]
        except KeyError:
            raise UnknownSagaVersion(name, version, list(versions)) from None

    def names(self) -> list[str]:
        return sorted(self._definitions)

    def versions(self, name: str) -> list[int]:
        """The loaded versions of ``name``, oldest first (empty for an unknown type)."""
        return sorted(self._definitions.get(name, {}))

    def loaded(self) -> frozenset[tuple[str, int]]:
        """Every (name, version) loaded: the sagas this process may claim and drive."""
        return frozenset(
            (name, version) for name, versions in self._definitions.items() for version in versions
        )

    def newest(self) -> list[SagaDefinition]:
        """The newest version of each type, by name."""
        return [self.get(name) for name in self.names()]

    def triggered_by(self, event_type: str) -> list[SagaDefinition]:
        """The saga types that an event of ``event_type`` starts (each on its newest version)."""
        return [d for d in self.newest() if event_type in d.triggers]

    def __iter__(self) -> Iterator[SagaDefinition]:
        """Every loaded definition, every version."""
        return iter([d for versions in self._definitions.values() for d in versions.values()])

    def __len__(self) -> int:
        return sum(len(versions) for versions in self._definitions.values())
