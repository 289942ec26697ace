"""Versions side by side: the catalog holds several versions of a type; new sagas start on the
newest (or the one named); an idempotent repeat keeps its saga's version."""

from __future__ import annotations

from typing import Any

import pytest

from saga_orchestrator.coordinator.catalog import SagaCatalog
from saga_orchestrator.coordinator.definition import SagaDefinition
from saga_orchestrator.coordinator.messages import StartSaga
from saga_orchestrator.errors import DuplicateIdempotencyKey, UnknownSagaType, UnknownSagaVersion

from .harness import Input, Recorder, running, step


def order(rec: Recorder, version: int, *steps: str, triggers: tuple[str, ...] = ()) -> Any:
    return SagaDefinition(
        name="order",
        version=version,
        input_type=Input,
        steps=[step(rec, name) for name in steps],
        triggers=triggers,
    )


def test_the_catalog_keeps_each_version_and_gives_the_newest_by_default() -> None:
    rec = Recorder()
    v1, v3 = order(rec, 1, "a"), order(rec, 3, "a", "b", triggers=("OrderPlaced",))
    refund = SagaDefinition(name="refund", version=1, input_type=Input, steps=[step(rec, "r")])
    catalog = SagaCatalog([v3, refund, v1])
    assert v3 is catalog.get("order")
    assert v1 is catalog.get("order", 1)
    assert ["order", "refund"] == catalog.names()
    assert [1, 3] == catalog.versions("order")
    assert [] == catalog.versions("nope")
    assert {("order", 1), ("order", 3), ("refund", 1)} == catalog.loaded()
    assert [v3] == catalog.triggered_by("OrderPlaced")
    assert 3 == len(catalog)


def test_the_catalog_refuses_a_version_twice_and_names_what_is_missing() -> None:
    rec = Recorder()
    catalog = SagaCatalog([order(rec, 1, "a"), order(rec, 2, "a")])
    with pytest.raises(ValueError, match="'order' version 2 is registered twice"):
        catalog.register(order(rec, 2, "b"))
    with pytest.raises(UnknownSagaVersion, match="has no version 5; loaded versions: 1, 2"):
        catalog.get("order", 5)
    with pytest.raises(UnknownSagaType, match="available types: order"):
        catalog.get("refund", 1)


async def test_a_start_runs_the_newest_version_or_the_one_it_names(autojump_clock: Any) -> None:
    rec = Recorder()
    async with running([order(rec, 1, "v1-step"), order(rec, 2, "v2-step")]) as h:
        newest = await h.start("order")
        await h.wait_terminal(newest.saga.saga_id)
        named = await h.ref.ask(StartSaga(saga_type="order", data={"user_id": "u"}, version=1))
        final = await h.wait_terminal(named.saga.saga_id)
        with pytest.raises(UnknownSagaVersion):
            await h.ref.ask(StartSaga(saga_type="order", data={"user_id": "u"}, version=3))
    assert (2, 1) == (newest.saga.saga_version, final.saga_version)
    assert ["v2-step", "v1-step"] == rec.names("action")


async def test_a_repeated_start_returns_its_saga_unless_it_names_another_version(
    autojump_clock: Any,
) -> None:
    rec = Recorder()
    async with running([order(rec, 1, "a"), order(rec, 2, "a")]) as h:

        async def start(version: int | None) -> Any:
            message = StartSaga(
                saga_type="order", data={"user_id": "u"}, idempotency_key="k", version=version
            )
            return await h.ref.ask(message)

        first = await start(1)
        again = await start(None)  # a retry that names no version (a v2 came meanwhile)
        same = await start(1)
        with pytest.raises(DuplicateIdempotencyKey):
            await start(2)
    assert {first.saga.saga_id} == {again.saga.saga_id, same.saga.saga_id}
    assert (True, False, False) == (first.created, again.created, same.created)
