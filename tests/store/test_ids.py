"""Ids of events, outbox messages and sagas: random version 4 UUIDs in their text form."""

import uuid

from saga_orchestrator.store.records import new_id


def test_ids_are_version_4_uuids_in_canonical_text() -> None:
    for text in (new_id() for _ in range(2_000)):
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == text


def test_ids_do_not_repeat_across_many_buffers() -> None:
    ids = [new_id() for _ in range(50_000)]  # ~200 refills of the random buffer
    assert len(set(ids)) == len(ids)
