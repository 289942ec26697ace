"""Parallel branches through the coordinator on the in-memory store, in virtual time: a process
that stops mid-group, and the saga deadline reaching every branch."""

import attrs
import trio

from saga_orchestrator.coordinator import Parallel
from saga_orchestrator.store.memory import MemoryBackend

from .harness import FAST, Recorder, running, saga, step


def fanout(rec: Recorder, *, sleep: float) -> list:
    return [
        step(rec, "s1"),
        Parallel(
            "g",
            branches=[
                [step(rec, "a1"), step(rec, "a2", sleep=sleep)],
                [step(rec, "b1", sleep=sleep / 2)],
            ],
        ),
        step(rec, "last"),
    ]


async def test_a_saga_stopped_mid_group_resumes_each_branch_where_it_was(autojump_clock):
    rec = Recorder()
    backend = MemoryBackend()
    definition = saga("fan", fanout(rec, sleep=100))
    options = attrs.evolve(FAST, step_timeout=1_000)
    async with running([definition], backend=backend, options=options) as h:
        saga_id = (await h.start("fan")).saga.saga_id
        await trio.sleep(60)  # a1 and b1 completed, a2 runs
        steps = {s.name: s.status for s in (await h.store.get_saga(saga_id)).steps}
        assert ("completed", "running", "completed") == (steps["a1"], steps["a2"], steps["b1"])
    # the process is gone (its actors cancelled mid-step); a new one recovers the saga
    async with running([definition], backend=backend, options=options) as h:
        final = await h.wait_terminal(saga_id)
    assert "completed" == final.status
    assert ["s1", "a1", "b1", "a2", "a2", "last"] == sorted(
        rec.names("action"), key=["s1", "a1", "b1", "a2", "last"].index
    )
    assert final.result["last"]["seen"] == ["a1", "a2", "b1", "s1"]
    assert 1 == len({k for k in rec.keys if k.endswith(":a2")})  # the same key again


async def test_the_saga_deadline_cuts_every_branch_at_once(autojump_clock):
    rec = Recorder()
    options = attrs.evolve(FAST, saga_timeout=50, step_timeout=1_000)
    async with running([saga("fan", fanout(rec, sleep=400))], options=options) as h:
        saga_id = (await h.start("fan")).saga.saga_id
        final = await h.wait_terminal(saga_id)
        assert 60 > trio.current_time()
    steps = {s.name: s for s in final.steps}
    assert ("unknown", "unknown") == (steps["a2"].status, steps["b1"].status)
    assert "compensation_failed" == final.status  # their compensations are not safe for that
    assert ["a1", "s1"] == rec.names("compensation")  # every other step undone, in reverse
