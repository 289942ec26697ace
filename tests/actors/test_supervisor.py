import pytest
import trio
import trio.testing

from saga_orchestrator.actors import (
    ChildSpec,
    Restart,
    Supervisor,
    SupervisorEscalation,
    open_actor_system,
)


class Crashy:
    """A child that crashes on demand and counts its starts."""

    def __init__(self):
        self.starts = 0
        self.crash = trio.Event()

    async def main(self, *, task_status=trio.TASK_STATUS_IGNORED):
        self.starts += 1
        self.crash = trio.Event()
        task_status.started(self.starts)
        await self.crash.wait()
        raise RuntimeError("boom")


async def test_a_crashed_child_is_restarted(autojump_clock):
    child = Crashy()
    sup = Supervisor("sup", max_restarts=3, period=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        assert await sup.start_child(ChildSpec(name="c", main=child.main)) == 1
        child.crash.set()
        await trio.testing.wait_all_tasks_blocked()
        assert child.starts == 2
        assert sup.children == ["c"]
        nursery.cancel_scope.cancel()


async def test_exceeding_the_intensity_escalates(autojump_clock):
    child = Crashy()
    sup = Supervisor("sup", max_restarts=2, period=5)
    with pytest.raises(ExceptionGroup) as caught:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await sup.start_child(ChildSpec(name="c", main=child.main))
            for _ in range(3):
                child.crash.set()
                await trio.testing.wait_all_tasks_blocked()
    escalations = caught.value.subgroup(SupervisorEscalation)
    assert escalations is not None
    assert child.starts == 3  # the first run and two restarts


async def test_restarts_spread_over_more_than_the_period_do_not_escalate(autojump_clock):
    child = Crashy()
    sup = Supervisor("sup", max_restarts=1, period=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await sup.start_child(ChildSpec(name="c", main=child.main))
        for _ in range(4):
            child.crash.set()
            await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(6)  # outside the window
        assert child.starts == 5
        nursery.cancel_scope.cancel()


async def test_a_child_with_its_own_intensity_is_given_up_alone(autojump_clock):
    child, other = Crashy(), Crashy()
    given_up = []
    sup = Supervisor("sup", max_restarts=0, period=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await sup.start_child(ChildSpec(name="other", main=other.main))
        await sup.start_child(
            ChildSpec(
                name="c",
                main=child.main,
                restart=Restart.TRANSIENT,
                max_restarts=1,
                period=5,
                on_give_up=lambda name, exc: given_up.append((name, str(exc))),
            )
        )
        for _ in range(2):
            child.crash.set()
            await trio.testing.wait_all_tasks_blocked()
        assert given_up == [("c", "boom")]
        assert sup.children == ["other"]  # the supervisor and its other child go on
        nursery.cancel_scope.cancel()


async def test_transient_child_that_returns_is_not_restarted():
    runs = []

    async def once(*, task_status=trio.TASK_STATUS_IGNORED):
        runs.append(1)
        task_status.started()

    sup = Supervisor("sup")
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await sup.start_child(ChildSpec(name="t", main=once, restart=Restart.TRANSIENT))
        await trio.testing.wait_all_tasks_blocked()
        assert runs == [1] and sup.children == []
        nursery.cancel_scope.cancel()


async def test_a_child_failing_before_it_started_raises_to_the_caller():
    async def broken(*, task_status=trio.TASK_STATUS_IGNORED):
        raise ValueError("cannot start")

    sup = Supervisor("sup")
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        with pytest.raises(ValueError, match="cannot start"):
            await sup.start_child(ChildSpec(name="b", main=broken))
        assert sup.children == []
        nursery.cancel_scope.cancel()


async def test_actor_system_shutdown_drains_then_stops_actors_in_reverse_order():
    handled, stopped = [], []

    def behaviour(name):
        async def run(mailbox, *, task_status=trio.TASK_STATUS_IGNORED):
            task_status.started()
            try:
                async for envelope in mailbox:
                    handled.append((name, envelope.message))
                    envelope.respond(name)
            finally:
                stopped.append(name)

        return run

    async with open_actor_system(shutdown_grace=1) as system:
        first = await system.spawn("first", behaviour("first"), capacity=4)
        second = await system.spawn("second", behaviour("second"), capacity=4)
        assert await first.ask("who") == "first"
        second.tell_nowait("last words")  # still queued when shutdown begins
    assert stopped == ["second", "first"]
    assert ("second", "last words") in handled
    assert system.root.children == []


async def test_an_actor_that_ignores_the_stop_is_cancelled_after_the_grace(autojump_clock):
    async def stubborn(mailbox, *, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        await trio.sleep_forever()

    start = trio.current_time()
    async with open_actor_system(shutdown_grace=2) as system:
        await system.spawn("stubborn", stubborn, capacity=1)
    assert pytest.approx(trio.current_time() - start) == 2


async def test_a_permanent_actor_that_keeps_crashing_ends_the_system(autojump_clock):
    async def crashing(mailbox, *, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        await trio.sleep(1)
        raise RuntimeError("store is broken")

    with pytest.raises(ExceptionGroup) as caught:
        async with open_actor_system(max_restarts=2, period=10) as system:
            await system.spawn("store", crashing, capacity=4)
            await trio.sleep_forever()
    assert caught.value.subgroup(SupervisorEscalation) is not None


async def test_a_child_started_soon_that_fails_on_its_way_up_is_supervised_not_raised(
    autojump_clock,
):
    attempts = []
    given_up = []

    async def failing(*, task_status=trio.TASK_STATUS_IGNORED):
        attempts.append(1)
        raise RuntimeError("no start")

    sup = Supervisor("sup")
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        sup.start_child_soon(
            ChildSpec(
                name="soon",
                main=failing,
                restart=Restart.TRANSIENT,
                max_restarts=2,
                period=5,
                on_give_up=lambda name, exc: given_up.append((name, str(exc))),
            )
        )
        assert sup.children == ["soon"]  # registered at once, before it ran
        with pytest.raises(ValueError):
            sup.start_child_soon(ChildSpec(name="soon", main=failing))
        await trio.testing.wait_all_tasks_blocked()
        assert len(attempts) == 3  # the first run and two restarts
        assert given_up == [("soon", "no start")]
        assert sup.children == []
        nursery.cancel_scope.cancel()
