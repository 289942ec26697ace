"""What the chaos run found, each minimised into a deterministic test (in-process, virtual
clock, no servers). See docs/reliability.md (Findings).

1. A cancel answered ``202 compensating`` could end the saga ``completed`` (fixed): the saga
   actor answered the cancel before anything was recorded, so a cancel that arrived while the
   saga's last append (``StepCompleted`` + ``SagaCompleted``) was being committed was answered
   "compensating" and the saga then ended ``completed``; and a process killed after the answer
   and before ``SagaInterrupted`` was durable forgot the cancel. Found by the long chaos run
   (seed 123, 5000 sagas: 6 of 192 accepted cancels ended ``completed``). A cancel is now
   answered once ``SagaInterrupted`` is durable, or refused with the status the saga reached.
"""

from __future__ import annotations

import trio
import trio.testing

from saga_orchestrator.coordinator.messages import CancelSaga
from saga_orchestrator.errors import SagaStateConflict
from saga_orchestrator.store.memory import MemoryBackend

from ..coordinator.harness import Harness, Recorder, running, saga, step


class HeldBackend(MemoryBackend):
    """Holds the commit of any batch that completes a saga until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = trio.Event()
        self.release = trio.Event()

    async def commit(self, batch):  # type: ignore[no-untyped-def]
        if any(e.event_type == "SagaCompleted" for r in batch for e in r.events):
            self.holding.set()
            await self.release.wait()
        return await super().commit(batch)


async def cancel_answer(h: Harness, saga_id: str) -> str | Exception:
    """What a cancel of ``saga_id`` is answered: its answer, or the error it raised."""
    try:
        return await h.ref.ask(CancelSaga(saga_id=saga_id, reason="asked"))
    except Exception as exc:
        return exc


async def test_a_cancel_during_the_completing_append_is_refused_and_the_saga_completes(
    autojump_clock,
) -> None:
    backend = HeldBackend()
    async with running([saga("one", [step(Recorder(), "only")])], backend=backend) as h:
        saga_id = (await h.start("one")).saga.saga_id
        await backend.holding.wait()  # the last append is being committed
        answer: list[str | Exception] = []

        async def cancel() -> None:
            answer.append(await cancel_answer(h, saga_id))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel)
            await trio.testing.wait_all_tasks_blocked()
            assert [] == answer  # not answered while the outcome is not durable
            backend.release.set()
        final = await h.wait_terminal(saga_id)
    [refused] = answer
    assert isinstance(refused, SagaStateConflict)
    assert (saga_id, "completed", "cancel") == (refused.saga_id, refused.status, refused.operation)
    assert "completed" == final.status


async def test_a_cancel_is_answered_compensating_only_once_the_interruption_is_durable(
    autojump_clock,
) -> None:
    rec = Recorder()
    long = step(rec, "long", sleep=100, compensation_safe_if_unknown=True)
    async with running([saga("one", [long])]) as h:
        saga_id = (await h.start("one")).saga.saga_id
        await trio.sleep(1)  # the step runs
        answer = await cancel_answer(h, saga_id)
        recorded = [e.event_type for e in await h.backend.read_stream(f"saga-{saga_id}")]
        final = await h.wait_terminal(saga_id)
    assert "compensating" == answer
    assert "SagaInterrupted" in recorded  # durable when the cancel was answered
    assert ("cancelled", "asked") == (final.status, final.error)
