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
