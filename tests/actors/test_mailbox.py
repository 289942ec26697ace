import pytest
import trio
import trio.testing

from saga_orchestrator.actors import (
    ActorStopped,
    AskTimeout,
    MailboxFull,
    NoReply,
    open_mailbox,
)


async def echo(mailbox):
    async for envelope in mailbox:
        envelope.respond(("echo", envelope.message))


async def test_ask_gets_the_reply():
    ref, mailbox = open_mailbox("echo", 4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo, mailbox)
        assert await ref.ask(1) == ("echo", 1)
        nursery.cancel_scope.cancel()


async def test_ask_raises_the_error_the_actor_answers_with():
    ref, mailbox = open_mailbox("failing", 4)

    async def failing(mailbox):
        async for envelope in mailbox:
            envelope.respond_error(KeyError(envelope.message))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(failing, mailbox)
        with pytest.raises(KeyError):
            await ref.ask("x")
        nursery.cancel_scope.cancel()


async def test_ask_times_out_with_a_typed_error(autojump_clock):
    ref, _mailbox = open_mailbox("silent", 4)  # nobody reads it
    start = trio.current_time()
    with pytest.raises(AskTimeout) as caught:
        await ref.ask("hello", timeout=2.5)
    assert pytest.approx(trio.current_time() - start) == 2.5
    assert "silent" in str(caught.value) and "str" in str(caught.value)


async def test_a_late_reply_to_a_gone_asker_does_not_raise(autojump_clock):
    ref, mailbox = open_mailbox("slow", 4)
    with pytest.raises(AskTimeout):
        await ref.ask("question", timeout=1)
    envelope = mailbox.receive_nowait()
    envelope.respond("too late")  # must not raise BrokenResourceError
    envelope.respond("twice")


async def test_tell_nowait_on_a_full_mailbox_raises_mailbox_full():
    ref, _mailbox = open_mailbox("small", 2)
    ref.tell_nowait(1)
    ref.tell_nowait(2)
    with pytest.raises(MailboxFull) as caught:
        ref.tell_nowait(3)
    assert caught.value.capacity == 2


async def test_tell_waits_while_the_mailbox_is_full_backpressure():
    ref, mailbox = open_mailbox("small", 1)
    await ref.tell("first")
    delivered = []

    async def sender():
        await ref.tell("second")
        delivered.append("second")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.testing.wait_all_tasks_blocked()
        assert delivered == []  # blocked: the mailbox holds "first"
        assert (await mailbox.receive()).message == "first"
        await trio.testing.wait_all_tasks_blocked()
        assert delivered == ["second"]
    assert mailbox.depth == 1


async def test_telling_a_closed_mailbox_raises_actor_stopped():
    ref, mailbox = open_mailbox("gone", 2)
    mailbox.close()
    with pytest.raises(ActorStopped):
        ref.tell_nowait(1)
    with pytest.raises(ActorStopped):
        await ref.tell(1)
    with pytest.raises(ActorStopped):
        await ref.ask(1)


async def test_an_actor_dropping_the_request_gives_no_reply():
    ref, mailbox = open_mailbox("dropper", 2)

    async def dropper(mailbox):
        envelope = await mailbox.receive()
        envelope.reply.drop()  # refused without an answer

    async with trio.open_nursery() as nursery:
        nursery.start_soon(dropper, mailbox)
        with pytest.raises(NoReply):
            await ref.ask("q")


def test_an_unbounded_mailbox_is_refused():
    with pytest.raises(ValueError):
        open_mailbox("x", 0)
    with pytest.raises(ValueError):
        open_mailbox("x", float("inf"))


async def test_an_attached_handler_takes_the_waiting_messages_in_order_then_each_new_one():
    ref, mailbox = open_mailbox("inline", 4)
    seen = []

    def handle(envelope):
        seen.append(envelope.message)
        envelope.respond(envelope.message * 10)
        return True

    ref.tell_nowait(1)
    await ref.tell(2)
    mailbox.attach(handle)
    assert seen == [1, 2]
    assert await ref.ask(3) == 30  # answered in the asker's own task: no receiving task runs
    ref.tell_nowait(4)
    assert seen == [1, 2, 3, 4]
    assert mailbox.depth == 0


async def test_after_detach_messages_wait_in_the_bounded_mailbox_again():
    ref, mailbox = open_mailbox("inline", 1)
    seen = []
    mailbox.attach(lambda envelope: seen.append(envelope.message) or True)
    ref.tell_nowait("handled")
    mailbox.detach()
    ref.tell_nowait("queued")
    with pytest.raises(MailboxFull):
        ref.tell_nowait("no room")
    assert seen == ["handled"]
    assert (await mailbox.receive()).message == "queued"


async def test_a_declined_message_waits_in_the_bounded_mailbox_in_order_until_handed_again():
    ref, mailbox = open_mailbox("deferring", 2)
    seen: list[str] = []
    busy = True

    def handle(envelope):
        if busy and envelope.message.startswith("later"):
            return False  # declined: it waits, first in line
        seen.append(envelope.message)
        envelope.respond("ok")
        return True

    mailbox.attach(handle)
    ref.tell_nowait("later-1")
    ref.tell_nowait("later-2")
    ref.tell_nowait("now")  # a message the handler takes goes ahead of the waiting ones
    assert ["now"] == seen
    assert 2 == mailbox.depth
    with pytest.raises(MailboxFull):  # the declined ones count against the capacity
        ref.tell_nowait("later-3")
    mailbox.hand_waiting()  # still busy: nothing moves
    assert ["now"] == seen
    busy = False
    mailbox.hand_waiting()
    assert ["now", "later-1", "later-2"] == seen
    assert 0 == mailbox.depth


async def test_an_asker_waits_for_room_while_its_message_is_declined():
    ref, mailbox = open_mailbox("deferring", 1)
    taking = False
    mailbox.attach(lambda envelope: taking and (envelope.respond("done") or True))
    ref.tell_nowait("first")  # declined: the mailbox is full now
    async with trio.open_nursery() as nursery:
        answers: list[str] = []

        async def ask() -> None:
            answers.append(await ref.ask("second"))

        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        assert [] == answers  # waiting for room, not refused
        taking = True
        mailbox.hand_waiting()  # "first" is taken, which makes room for "second"
    assert ["done"] == answers


async def test_a_handler_that_raises_answers_the_asker_with_its_error():
    ref, mailbox = open_mailbox("inline", 4)

    def handle(envelope):
        raise KeyError(envelope.message)

    mailbox.attach(handle)
    with pytest.raises(KeyError):
        await ref.ask("x")


async def test_closing_a_mailbox_with_a_handler_stops_the_actor():
    ref, mailbox = open_mailbox("inline", 4)
    mailbox.attach(lambda envelope: envelope.respond("late") or True)
    mailbox.close()
    with pytest.raises(ActorStopped):
        await ref.ask("x")
    with pytest.raises(ActorStopped):
        ref.tell_nowait("y")
