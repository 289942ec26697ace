"""Reply-driven steps: the action sends a command; a reply event completes or fails the step."""

import attrs
import pytest
import trio
import trio.testing

from saga_orchestrator.coordinator.definition import AwaitReply, Step
from saga_orchestrator.coordinator.messages import DeliverEvent
from saga_orchestrator.errors import SagaStateConflict
from saga_orchestrator.store.memory import MemoryBackend

from .harness import FAST, Recorder, running, saga, step

SYNC = AwaitReply(success=["sync.completed"], failure=["sync.failed"])


def sync_step(rec: Recorder, **options) -> Step:
    async def request_sync(ctx):
        rec.calls.append(("action", "sync", ctx.attempt))
        return {"job": f"job-{ctx.saga_id[:4]}"}

    async def purge(ctx):
        rec.calls.append(("compensation", "sync", ctx.attempt))

    return Step(name="sync", action=request_sync, compensation=purge, reply=SYNC, **options)


def deliver(saga_id: str, event_type: str, event_id: str = "e-1", **data) -> DeliverEvent:
    return DeliverEvent(saga_id=saga_id, event_id=event_id, event_type=event_type, data=data)


async def wait_for_step_status(h, saga_id: str, index: int, status: str) -> None:
    with trio.fail_after(60):
        while (await h.store.get_saga(saga_id)).steps[index].status != status:
            await trio.sleep(0.01)


async def test_a_success_reply_completes_the_step_and_the_saga_goes_on(autojump_clock):
    rec = Recorder()
    definition = saga("reply", [step(rec, "first"), sync_step(rec), step(rec, "notify")])
    async with running([definition]) as h:
        saga_id = (await h.start("reply")).saga.saga_id
        await wait_for_step_status(h, saga_id, 1, "waiting")
        assert "accepted" == await h.ref.ask(deliver(saga_id, "sync.completed", rows=12))
        final = await h.wait_terminal(saga_id)
    assert "completed" == final.status
    assert {"accepted": {"job": f"job-{saga_id[:4]}"}, "reply": {"rows": 12}} == (
        final.result["sync"]
    )
    assert ["first", "sync", "notify"] == rec.names("action")


async def test_a_failure_reply_fails_the_step_and_compensates_the_earlier_ones(autojump_clock):
    rec = Recorder()
    definition = saga("reply", [step(rec, "first"), sync_step(rec), step(rec, "notify")])
    async with running([definition]) as h:
        saga_id = (await h.start("reply")).saga.saga_id
        await wait_for_step_status(h, saga_id, 1, "waiting")
        await h.ref.ask(deliver(saga_id, "sync.failed", error="base not found"))
        final = await h.wait_terminal(saga_id)
    assert "compensated" == final.status
    assert "step 'sync' failed: sync.failed: base not found" == final.error
    assert ["first"] == rec.names("compensation")  # the refused sync is not compensated


async def test_no_reply_within_the_step_timeout_fails_the_step(autojump_clock):
    rec = Recorder()
    definition = saga(
        "reply", [step(rec, "first"), sync_step(rec, timeout=30, compensation_safe_if_unknown=True)]
    )
    async with running([definition]) as h:
        start = trio.current_time()
        final = await h.wait_terminal((await h.start("reply")).saga.saga_id)
    assert "compensated" == final.status
    assert 30 == pytest.approx(trio.current_time() - start, abs=1)
    assert ("unknown", "no reply within 30 s") == (final.steps[1].status, final.steps[1].error)
    assert ["sync", "first"] == rec.names("compensation")


async def test_a_reply_that_arrives_early_is_kept_until_the_step_waits(autojump_clock):
    rec = Recorder()
    gate = trio.Event()

    async def slow_first(ctx):
        await gate.wait()

    definition = saga("reply", [Step(name="first", action=slow_first), sync_step(rec)])
    async with running([definition]) as h:
        saga_id = (await h.start("reply")).saga.saga_id
        assert "accepted" == await h.ref.ask(deliver(saga_id, "sync.completed"))
        assert "duplicate" == await h.ref.ask(deliver(saga_id, "sync.completed"))
        gate.set()
        final = await h.wait_terminal(saga_id)
    assert "completed" == final.status


async def test_the_wait_survives_a_restart_and_the_command_is_not_sent_again(autojump_clock):
    rec = Recorder()
    backend = MemoryBackend()
    definition = saga("reply", [step(rec, "first"), sync_step(rec)])
    options = attrs.evolve(FAST, step_timeout=600)
    async with running([definition], backend=backend, options=options) as h:
        saga_id = (await h.start("reply")).saga.saga_id
        await wait_for_step_status(h, saga_id, 1, "waiting")
    # the process stopped while the saga waited; a new one starts and the reply arrives
    async with running([definition], backend=backend, options=options) as h:
        await trio.sleep(100)
        await h.ref.ask(deliver(saga_id, "sync.completed"))
        final = await h.wait_terminal(saga_id)
    assert "completed" == final.status
    assert ["first", "sync"] == rec.names("action")


async def test_delivering_to_an_ended_saga_is_a_conflict(autojump_clock):
    rec = Recorder()
    async with running([saga("plain", [step(rec, "only")])]) as h:
        saga_id = (await h.start("plain")).saga.saga_id
        await h.wait_terminal(saga_id)
        with pytest.raises(SagaStateConflict):
            await h.ref.ask(deliver(saga_id, "sync.completed"))


class GatedEnd(MemoryBackend):
    """Holds the commit of a saga's last transition until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = trio.Event()
        self.release = trio.Event()

    async def commit(self, batch):
        if any(e.event_type == "SagaCompensated" for r in batch for e in r.events):
            self.holding.set()
            await self.release.wait()
        return await super().commit(batch)


async def test_a_reply_that_waits_behind_the_saga_s_last_append_is_refused_not_recorded(
    autojump_clock,
):
    rec = Recorder()
    definition = saga("reply", [step(rec, "first"), sync_step(rec)])
    backend = GatedEnd()
    async with running([definition], backend=backend) as h:
        saga_id = (await h.start("reply")).saga.saga_id
        await wait_for_step_status(h, saga_id, 1, "waiting")
        await h.ref.ask(deliver(saga_id, "sync.failed", event_id="e-fail"))
        await backend.holding.wait()  # the saga's SagaCompensated is being committed...
        async with trio.open_nursery() as nursery:
            answers = []

            async def late_reply():
                try:
                    answers.append(await h.ref.ask(deliver(saga_id, "sync.completed", "e-late")))
                except SagaStateConflict as exc:
                    answers.append(exc)

            nursery.start_soon(late_reply)  # ...while a reply arrives and waits for its turn
            await trio.testing.wait_all_tasks_blocked()
            backend.release.set()
        final = await h.wait_terminal(saga_id)
        history = await h.store.read_stream(f"saga-{saga_id}")
    assert "compensated" == final.status
    assert "SagaCompensated" == history[-1].event_type  # nothing after the last transition
    assert [type(a) for a in answers] == [SagaStateConflict]
