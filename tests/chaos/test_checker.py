"""The chaos checker finds what it is there to find: a consistent snapshot passes, and each
kind of broken promise, planted in it, is reported by its invariant (no processes here)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import pytest

from .checker import Snapshot, _stream_problems, check
from .driver import DriverRecord
from .plan import ONBOARDING, PlannedSaga

SAGA = "00000000-0000-4000-8000-000000000001"
STEPS = ["create_profile", "create_workspace", "send_welcome_email", "setup_airtable_integration"]
WELCOME_UNDO = f"{SAGA}:send_welcome_email:undo"
"""The welcome's compensation: a withdrawal by key (``:undo:withdraw``), then a notice."""
RESULTS = [
    {"profile_id": "profile-1"},
    {"workspace_id": "workspace-2"},
    {"notification_id": "notification-3"},
    None,
]


def step(index: int, status: str, compensation: str) -> dict[str, Any]:
    return {
        "saga_id": SAGA,
        "step_index": index,
        "name": STEPS[index],
        "status": status,
        "result": RESULTS[index] if status == "completed" else None,
        "error": None if status == "completed" else "refused",
        "compensation_status": compensation,
        "compensation_attempts": 1 if compensation == "completed" else 0,
        "compensation_error": None,
    }


def effect(seq: int, operation: str, key: str, subject: str) -> dict[str, Any]:
    return {"seq": seq, "operation": operation, "idempotency_key": key, "subject": subject}


def call(operation: str, key: str | None, status: int | None = 201) -> dict[str, Any]:
    """A call as the stand-in records it (before its de-duplication by key)."""
    return {
        "operation": operation,
        "idempotency_key": key,
        "status": status,
        "replayed": False,
        "fault": False,
    }


def compensated_onboarding() -> Snapshot:
    """One onboarding whose last step was refused: the three steps before it are undone, last
    first; everything where it should be. Its transitions were recorded 1 s apart (version
    ``v`` at ``1000 + v``)."""
    kinds: list[tuple[str, dict[str, Any]]] = [("SagaStarted", {})]
    for index in range(3):
        kinds += [("StepStarted", {"step": index}), ("StepCompleted", {"step": index})]
    kinds += [("StepStarted", {"step": 3}), ("StepFailed", {"step": 3})]
    for index in (2, 1, 0):
        kinds += [("CompensationStarted", {"step": index})]
        kinds += [("CompensationCompleted", {"step": index})]
    kinds.append(("SagaCompensated", {"status": "compensated"}))
    return Snapshot(
        sagas={
            SAGA: {
                "saga_id": SAGA,
                "saga_type": ONBOARDING,
                "status": "compensated",
                "input": {"user_id": "u1", "email": "u1@example.com", "name": "U"},
                "error": "step 'setup_airtable_integration' failed: refused",
                "idempotency_key": "key-1",
                "version": len(kinds),
            }
        },
        steps={
            SAGA: [
                step(0, "completed", "completed"),
                step(1, "completed", "completed"),
                step(2, "completed", "completed"),
                step(3, "failed", "not_run"),
            ]
        },
        transitions={
            SAGA: [(v, kind, {**data, "at": 1000.0 + v}) for v, (kind, data) in enumerate(kinds, 1)]
        },
        events=[],
        stream_problems=[],
        streams_checked=1,
        outbox=[{"topic": "saga.lifecycle", "event_id": "e1", "event_type": "x", "sent_at": 1.0}],
        on_bus={"saga.lifecycle": {"e1"}},
        dead_letters=[],
        pending=0,
        effects=[
            effect(1, "user.create_profile", f"{SAGA}:create_profile", "profile-1"),
            effect(2, "user.create_workspace", f"{SAGA}:create_workspace", "workspace-2"),
            effect(3, "notification.send", f"{SAGA}:send_welcome_email", "notification-3"),
            effect(4, "notification.withdraw_by_key", f"{WELCOME_UNDO}:withdraw", "notification-3"),
            effect(5, "notification.send", WELCOME_UNDO, "notification-4"),
            effect(6, "user.delete_workspace", f"{SAGA}:create_workspace:undo", "workspace-2"),
            effect(7, "user.delete_profile", f"{SAGA}:create_profile:undo", "profile-1"),
        ],
        calls=[
            call("user.create_profile", f"{SAGA}:create_profile"),
            call("user.create_workspace", f"{SAGA}:create_workspace"),
            call("notification.send", f"{SAGA}:send_welcome_email", 202),
            call("airtable.create_integration", f"{SAGA}:setup_airtable_integration", 422),
            call("notification.withdraw_by_key", f"{WELCOME_UNDO}:withdraw", 204),
            call("notification.send", WELCOME_UNDO, 202),
            call("user.delete_workspace", f"{SAGA}:create_workspace:undo", 204),
            call("user.delete_profile", f"{SAGA}:create_profile:undo", 204),
        ],
        announcements=[],
        api_status={SAGA: "compensated"},
    )


def planned_record() -> DriverRecord:
    planned = PlannedSaga(
        n=0,
        saga_type=ONBOARDING,
        via="api",
        at=0.0,
        data={"user_id": "u1", "email": "u1@example.com", "name": "U"},
        correlation_id="c1",
        idempotency_key="key-1",
    )
    return DriverRecord(planned, saga_ids={SAGA}, acknowledged=True)


ANSWERS = {"POST /sagas/start 202": 1}
"""What the driver was answered for :func:`planned_record`."""


def violations(
    snap: Snapshot, record: DriverRecord | None = None, unexpected: Sequence[str] = ()
) -> dict[str, list[str]]:
    invariants, _ = check(
        snap, [record or planned_record()], answers=ANSWERS, unexpected=unexpected
    )
    return {i.name: i.violations for i in invariants if i.violations}


def test_a_consistent_snapshot_passes() -> None:
    assert {} == violations(compensated_onboarding())


def twice_applied(snap: Snapshot) -> None:
    snap.effects.append(effect(8, "user.create_profile", f"{SAGA}:create_profile", "profile-9"))


def applied_under_another_key(snap: Snapshot) -> None:
    snap.effects.append(effect(8, "user.create_profile", f"{SAGA}:create_profile:2", "profile-9"))


def undone_in_order(snap: Snapshot) -> None:
    snap.effects[5]["seq"], snap.effects[6]["seq"] = 7, 6  # the notice after the workspace


def compensated_twice(snap: Snapshot) -> None:
    history = snap.transitions[SAGA]
    history.insert(-1, (0, "CompensationCompleted", {"step": 0}))
    snap.transitions[SAGA] = [(v, kind, d) for v, (_, kind, d) in enumerate(history, start=1)]
    snap.sagas[SAGA]["version"] = len(history)


def failed_step_compensated(snap: Snapshot) -> None:
    snap.effects.append(
        effect(8, "airtable.delete_integration", f"{SAGA}:setup_airtable_integration:undo", "i")
    )


def failed_step_left_its_effect(snap: Snapshot) -> None:
    snap.effects.append(
        effect(8, "airtable.create_integration", f"{SAGA}:setup_airtable_integration", "i-1")
    )


def effect_after_compensation(snap: Snapshot) -> None:
    """A step's action landed after the saga's compensation had begun (a step the cancel did
    not cut): the effect is left behind."""
    snap.effects.append(
        effect(8, "airtable.create_integration", f"{SAGA}:setup_airtable_integration", "i-1")
    )


def effect_lost(snap: Snapshot) -> None:
    del snap.effects[1]


def other_result(snap: Snapshot) -> None:
    snap.steps[SAGA][0]["result"] = {"profile_id": "profile-77"}


def unsettled(snap: Snapshot) -> None:
    snap.sagas[SAGA]["status"] = "compensating"


def parked_for_want_of_attempts(snap: Snapshot) -> None:
    snap.sagas[SAGA]["status"] = "compensation_failed"
    row = snap.steps[SAGA][0]
    row["compensation_status"], row["compensation_attempts"] = "failed", 5
    row["compensation_error"] = "user service: DELETE /profiles/profile-1 answered 503"


def status_disagrees(snap: Snapshot) -> None:
    snap.sagas[SAGA]["status"] = "cancelled"


def not_relayed(snap: Snapshot) -> None:
    snap.on_bus["saga.lifecycle"] = set()


def dead_lettered(snap: Snapshot) -> None:
    snap.dead_letters.append({"event_id": "e9", "dead_reason": "boom"})


def trigger_without_saga(snap: Snapshot) -> None:
    snap.events.append(
        {"event_id": "ev-1", "event_type": "user.registered", "stream_id": "user-u2", "data": {}}
    )
    snap.on_bus["saga:events"] = {"ev-1"}


def acknowledged_but_missing(snap: Snapshot) -> None:
    snap.sagas[SAGA]["input"]["user_id"] = "someone else"


def cancel_not_honoured(snap: Snapshot) -> DriverRecord:
    snap.sagas[SAGA]["status"] = "completed"
    return attrs.evolve(planned_record(), cancel_status=202)


def api_disagrees(snap: Snapshot) -> None:
    snap.api_status[SAGA] = "completed"


def called_again_without_a_restart(snap: Snapshot) -> None:
    # the key de-duplicated it at the stand-in: no second effect, but a call nobody explains
    snap.calls.append(call("user.create_profile", f"{SAGA}:create_profile"))


def called_again_after_a_restart_outside_the_attempt(snap: Snapshot) -> None:
    snap.calls.append(call("user.create_profile", f"{SAGA}:create_profile"))
    # create_profile's attempt ran from 1002 (v2) to 1003 (v3); the restart came after it
    snap.restarts.append(1003.5)


def undone_again_without_a_restart(snap: Snapshot) -> None:
    snap.calls.append(call("user.delete_profile", f"{SAGA}:create_profile:undo", None))


def called_without_a_key(snap: Snapshot) -> None:
    snap.calls.append(call("user.create_profile", None, 400))


def called_for_a_saga_nobody_has(snap: Snapshot) -> None:
    other = "00000000-0000-4000-8000-000000000002"
    snap.calls.append(call("user.create_profile", f"{other}:create_profile"))


def cancels_all_answered_409(snap: Snapshot) -> DriverRecord:
    planned = attrs.evolve(planned_record().planned, cancel_after=1.0)
    return attrs.evolve(planned_record(), planned=planned, cancel_status=409)


def api_never_read(snap: Snapshot) -> None:
    snap.api_status.clear()


def trigger_event_not_stored(snap: Snapshot) -> DriverRecord:
    planned = attrs.evolve(
        planned_record().planned, via="event", event_id="ev-1", stream_id="user-u1"
    )
    return attrs.evolve(planned_record(), planned=planned)


BROKEN: list[tuple[Callable[[Snapshot], DriverRecord | None], str]] = [
    (twice_applied, "effects_at_most_once"),
    (applied_under_another_key, "effects_at_most_once"),
    (undone_in_order, "compensated_once_in_reverse"),
    (compensated_twice, "compensated_once_in_reverse"),
    (failed_step_compensated, "compensated_once_in_reverse"),
    (failed_step_left_its_effect, "effects_match_steps"),
    (effect_lost, "effects_match_steps"),
    (other_result, "effects_match_steps"),
    (unsettled, "settled"),
    (parked_for_want_of_attempts, "settled"),
    (status_disagrees, "status_agrees_with_steps"),
    (not_relayed, "accepted_events_stored_and_streamed"),
    (dead_lettered, "accepted_events_stored_and_streamed"),
    (trigger_without_saga, "trigger_events_start_one_saga"),
    (acknowledged_but_missing, "acknowledged_starts_exist"),
    (api_disagrees, "api_agrees_with_store"),
    (cancel_not_honoured, "cancel_honoured"),
    (effect_after_compensation, "no_effect_after_compensation"),
    (called_again_without_a_restart, "calls_explained"),
    (called_again_after_a_restart_outside_the_attempt, "calls_explained"),
    (undone_again_without_a_restart, "calls_explained"),
    (called_without_a_key, "calls_explained"),
    (called_for_a_saga_nobody_has, "calls_explained"),
    (cancels_all_answered_409, "cancel_honoured"),
    (api_never_read, "api_agrees_with_store"),
    (trigger_event_not_stored, "trigger_events_start_one_saga"),
]


@pytest.mark.parametrize(("plant", "invariant"), BROKEN, ids=[p.__name__ for p, _ in BROKEN])
def test_a_broken_promise_is_reported(
    plant: Callable[[Snapshot], DriverRecord | None], invariant: str
) -> None:
    snap = compensated_onboarding()
    record = plant(snap)  # a planting may change what the driver saw, too
    assert invariant in violations(snap, record)


def test_a_failed_step_whose_repeat_the_stand_in_refused_against_its_contract_is_explained():
    snap = compensated_onboarding()
    failed_step_left_its_effect(snap)
    snap.effects[-1]["seq"] = 3.5  # applied by the first call, before the saga compensated
    key = f"{SAGA}:setup_airtable_integration"
    # its first call applied it and was never answered (the orchestrator was killed); run
    # again after the restart, the call was refused by an injected fault
    snap.calls[3] = call("airtable.create_integration", key, None)
    snap.calls.append({**call("airtable.create_integration", key, 422), "fault": True})
    snap.restarts.append(1008.5)  # during the attempt: StepStarted v8, StepFailed v9
    invariants, notes = check(snap, [planned_record()], answers=ANSWERS)
    assert {} == {i.name: i.violations for i in invariants if i.violations}
    assert any(f"{SAGA}:setup_airtable_integration" in note for note in notes)


def test_stream_versions_with_a_gap_or_a_stale_current_version_are_reported() -> None:
    rows = [
        {"stream_id": "a", "n": 3, "distinct_versions": 3, "lowest": 1, "highest": 3, "current": 3},
        {"stream_id": "b", "n": 2, "distinct_versions": 2, "lowest": 1, "highest": 3, "current": 3},
        {"stream_id": "c", "n": 2, "distinct_versions": 2, "lowest": 1, "highest": 2, "current": 5},
    ]
    problems = _stream_problems(rows, [{"stream_id": "d", "version": 2}])
    assert ["b", "c", "d"] == [p.split("'")[1] for p in problems]


def test_calls_repeated_by_retries_and_restarts_in_flight_are_explained() -> None:
    snap = compensated_onboarding()
    # create_profile failed once (503) and was retried: two attempts recorded, two calls
    history = snap.transitions[SAGA]
    retried = [
        *history[:1],
        (0, "StepStarted", {"step": 0, "attempt": 1, "at": 1001.2}),
        (0, "StepAttemptFailed", {"step": 0, "attempt": 1, "at": 1001.4}),
        *history[1:],
    ]
    snap.transitions[SAGA] = [(v, k, d) for v, (_, k, d) in enumerate(retried, start=1)]
    snap.sagas[SAGA]["version"] = len(retried)
    snap.calls.insert(0, call("user.create_profile", f"{SAGA}:create_profile", 503))
    # the orchestrator was killed while the compensation of create_workspace ran: run again
    snap.calls.append(call("user.delete_workspace", f"{SAGA}:create_workspace:undo", None))
    started, done = (
        data["at"]
        for _, kind, data in snap.transitions[SAGA]
        if kind in ("CompensationStarted", "CompensationCompleted") and data["step"] == 1
    )
    snap.restarts.append((started + done) / 2)
    assert {} == violations(snap)


def test_an_answer_5xx_other_than_503_is_a_violation() -> None:
    found = violations(compensated_onboarding(), unexpected=["POST /sagas/start 500: boom"])
    assert {"no_unexpected_5xx": ["POST /sagas/start 500: boom"]} == found


def test_answers_that_checked_nothing_while_sagas_were_planned_are_a_violation() -> None:
    invariants, _ = check(compensated_onboarding(), [planned_record()], answers={})
    [answers] = [i for i in invariants if i.name == "no_unexpected_5xx"]
    assert (0, 1) == (answers.checked, len(answers.violations))


def resolved_in_doubt(resolution: str | None) -> Snapshot:
    """The compensated onboarding, its last step in doubt instead of refused: its undo failed,
    the saga parked, and an operator resolved it ``resolution`` (``None``: nobody did)."""
    snap = compensated_onboarding()
    history = snap.transitions[SAGA]
    kinds = [kind for _, kind, _ in history]
    at = kinds.index("StepFailed")
    repair = [("StepAttemptFailed", {"step": 3})]
    repair += [("CompensationStarted", {"step": 3}), ("CompensationFailed", {"step": 3})]
    if resolution is not None:
        repair.append(("StepResolved", {"step": 3, "resolution": resolution}))
    rest = [(kind, data) for _, kind, data in history[at + 1 :]]
    kinds_data = [(kind, data) for _, kind, data in history[:at]] + repair + rest
    snap.transitions[SAGA] = [
        (v, kind, {**data, "at": 1000.0 + v}) for v, (kind, data) in enumerate(kinds_data, 1)
    ]
    snap.sagas[SAGA]["version"] = len(kinds_data)
    expected = {"applied": "completed", "not_applied": "skipped", None: "skipped"}[resolution]
    snap.steps[SAGA][3] = {**step(3, "unknown", expected), "compensation_attempts": 1}
    return snap


def test_a_step_resolved_by_an_operator_is_expected_compensated_as_resolved() -> None:
    assert {} == violations(resolved_in_doubt("not_applied"))
    found = violations(resolved_in_doubt(None))  # skipped, but nobody said so
    assert ["status_agrees_with_steps"] == sorted(found), found
    assert "expected completed" in found["status_agrees_with_steps"][0]
