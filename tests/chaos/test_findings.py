"""What the chaos run found, each minimised into a deterministic test (in-process, virtual
clock, no servers). See docs/reliability.md (Findings).

1. A cancel answered ``202 compensating`` does not always end the saga ``cancelled``: the saga
   actor answers the cancel before anything is recorded (``SagaActor._handle``), so

   * a cancel that arrives while the saga's last append (``StepCompleted`` + ``SagaCompleted``)
     is being committed is answered "compensating", and the saga then ends ``completed``;
   * a process killed after the answer and before ``SagaInterrupted`` is durable forgets the
     cancel: the saga resumes and may complete.

   Found by the long chaos run (seed 123, 5000 sagas: 6 of 192 accepted cancels ended
   ``completed``); the test below is the first case.
"""

from __future__ import annotations

import trio

from saga_orchestrator.coordinator.messages import CancelSaga
from saga_orchestrator.store.memory import MemoryBackend

from ..coordinator.harness import Recorder, running, saga, step


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


async def test_a_cancel_answered_compensating_ends_the_saga_cancelled(autojump_clock) -> None:
    backend = HeldBackend()
    async with running([saga("one", [step(Recorder(), "only")])], backend=backend) as h:
        saga_id = (await h.start("one")).saga.saga_id
        await backend.holding.wait()  # the last append is being committed
        answer: list[str | Exception] = []

        async def cancel() -> None:
            try:
                answer.append(await h.ref.ask(CancelSaga(saga_id=saga_id, reason="asked")))
            except Exception as exc:  # a conflict is a fair answer: the saga was ending
                answer.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel)
            await trio.sleep(1)
            backend.release.set()
        final = await h.wait_terminal(saga_id)
    if answer == ["compensating"]:
        assert "cancelled" == final.status, f"cancel answered {answer}, the saga {final.status}"
