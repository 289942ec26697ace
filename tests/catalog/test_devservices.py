"""The stand-in itself: idempotency keys, the bearer token, faults, the control API, and the
``saga-orchestrator devservices`` command."""

from __future__ import annotations

import argparse
import subprocess
import sys
from functools import partial

import httpx
import pytest
import trio

from saga_orchestrator.cli import build_parser
from saga_orchestrator.cli import main as cli_main
from saga_orchestrator.devservices import Announcement
from saga_orchestrator.devservices.command import build_state

from ..support.server import REPO_ROOT, free_port
from .conftest import TOKEN, StandIn

AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROFILE = {"user_id": "u-1", "email": "ada@example.com", "name": "Ada"}
WORKSPACE = {"owner_id": "u-1", "name": "Ada's workspace", "default": True}


def keyed(key: str) -> dict[str, str]:
    return {**AUTH, "Idempotency-Key": key}


async def test_a_repeated_key_gets_the_first_answer_and_applies_nothing(
    stand_in: StandIn, control: httpx.AsyncClient
):
    first = await control.post("/user/profiles", json=PROFILE, headers=keyed("k-1"))
    again = await control.post("/user/profiles", json=PROFILE, headers=keyed("k-1"))
    other = await control.post("/user/profiles", json=PROFILE, headers=keyed("k-2"))
    assert (201, 201, 409) == (first.status_code, again.status_code, other.status_code)
    assert first.json() == again.json()
    assert ["user.create_profile"] == stand_in.state.operations()
    assert [False, True, False] == [call.replayed for call in stand_in.state.calls]


async def test_an_undo_by_key_deletes_what_the_key_made_and_revokes_the_key(
    stand_in: StandIn, control: httpx.AsyncClient
):
    made = await control.post("/user/workspaces", json=WORKSPACE, headers=keyed("s-1:ws"))
    other = await control.post("/user/workspaces", json=WORKSPACE, headers=keyed("s-2:ws"))
    assert (201, 201) == (made.status_code, other.status_code)
    undo = {"idempotency_key": "s-1:ws"}
    undone = await control.delete("/user/workspaces", params=undo, headers=keyed("s-1:ws:undo"))
    assert 204 == undone.status_code
    state = (await control.get("/_control/state")).json()
    assert [other.json()["workspace_id"]] == [w["workspace_id"] for w in state["workspaces"]]
    # the create with that key, arriving late (or again), makes nothing
    late = await control.post("/user/workspaces", json=WORKSPACE, headers=keyed("s-1:ws"))
    assert 409 == late.status_code
    assert "revoked" in late.json()["error"]
    assert 1 == len(stand_in.state.workspaces)
    effects = [(e.operation, e.subject) for e in stand_in.state.effects]
    assert ("user.delete_workspace_by_key", made.json()["workspace_id"]) == effects[-1]


async def test_an_undo_by_key_of_nothing_is_done_and_still_revokes_the_key(
    stand_in: StandIn, control: httpx.AsyncClient
):
    undo = {"idempotency_key": "s-1:p"}
    first = await control.delete("/user/profiles", params=undo, headers=keyed("s-1:p:undo"))
    again = await control.delete("/user/profiles", params=undo, headers=keyed("s-1:p:undo2"))
    unkeyed = await control.delete("/user/profiles", headers=keyed("s-1:p:undo3"))
    assert (204, 204, 422) == (first.status_code, again.status_code, unkeyed.status_code)
    late = await control.post("/user/profiles", json=PROFILE, headers=keyed("s-1:p"))
    assert 409 == late.status_code
    state = (await control.get("/_control/state")).json()
    assert ([], {}) == (state["profiles"], state["leftovers"])
    assert ["s-1:p", "s-1:p"] == [e.subject for e in stand_in.state.effects]  # the key only


async def test_a_call_needs_the_token_and_an_idempotency_key(control: httpx.AsyncClient):
    no_token = await control.post("/user/profiles", json=PROFILE, headers={"Idempotency-Key": "k"})
    no_key = await control.post("/user/profiles", json=PROFILE, headers=AUTH)
    assert (401, 400) == (no_token.status_code, no_key.status_code)


async def test_faults_from_the_control_api_and_from_a_header(
    stand_in: StandIn, control: httpx.AsyncClient
):
    fault = {"operation": "user.create_profile", "status": 503, "times": 1, "retry_after": 2}
    assert 201 == (await control.post("/_control/faults", json=fault)).status_code
    assert 400 == (await control.post("/_control/faults", json={"status": 200})).status_code
    failed = await control.post("/user/profiles", json=PROFILE, headers=keyed("k-1"))
    assert (503, "2") == (failed.status_code, failed.headers["Retry-After"])
    headers = {**keyed("k-1"), "X-Dev-Fault": "status=500,when=after"}
    lost = await control.post("/user/profiles", json=PROFILE, headers=headers)
    found = await control.post("/user/profiles", json=PROFILE, headers=keyed("k-1"))
    assert (500, 201) == (lost.status_code, found.status_code)
    calls = (await control.get("/_control/calls")).json()["calls"]
    assert [(503, True), (500, True), (201, False)] == [(c["status"], c["fault"]) for c in calls]
    effects = (await control.get("/_control/effects")).json()["effects"]
    assert ["user.create_profile"] == [e["operation"] for e in effects]
    assert 204 == (await control.post("/_control/reset")).status_code
    assert [] == stand_in.state.calls


async def test_every_call_is_recorded_also_one_its_caller_hung_up_on(
    stand_in: StandIn, control: httpx.AsyncClient
):
    hangs = {**keyed("k-1"), "X-Dev-Fault": "status=none,hang=true"}
    with pytest.raises(httpx.ReadTimeout):  # the caller gives up and hangs up
        await control.post("/user/profiles", json=PROFILE, headers=hangs, timeout=0.2)
    bad_fault = {**keyed("k-2"), "X-Dev-Fault": "status=200"}
    assert (
        400 == (await control.post("/user/profiles", json=PROFILE, headers=bad_fault)).status_code
    )
    with trio.fail_after(5):  # the server sees the hang-up a moment later
        while len(stand_in.state.calls) < 2:
            await trio.sleep(0.01)
    assert [("k-1", None, True), ("k-2", 400, True)] == sorted(
        (c.idempotency_key, c.status, c.authorized) for c in stand_in.state.calls
    )
    assert [] == stand_in.state.effects


async def test_a_sync_is_accepted_then_announced(stand_in: StandIn, control: httpx.AsyncClient):
    announced: list[Announcement] = []

    async def announce(announcement: Announcement) -> None:
        announced.append(announcement)

    stand_in.state.announcer = announce
    body = {"saga_id": "s-1", "workspace_id": "ws-1", "webhook_id": "wh-1", "table_ids": ["t"]}
    accepted = await control.post("/airtable/bases/app1/syncs", json=body, headers=keyed("k"))
    assert (202, "accepted") == (accepted.status_code, accepted.json()["status"])
    with trio.fail_after(5):
        while not announced:
            await trio.sleep(0.01)
    [event] = announced
    assert ("airtable.sync.completed", "s-1") == (event.event_type, event.saga_id)
    assert {"saga_id": "s-1", "records": 50} == {k: event.data[k] for k in ("saga_id", "records")}


def test_the_command_line_options_make_the_state():
    args = build_parser().parse_args(
        ["devservices", "--port", "0", "--fail", "notification.send:422:0", "--latency", "0.1"]
    )
    state = build_state(args, {"SERVICE_AUTH_TOKEN": TOKEN, "ORCHESTRATOR_URL": "http://o:1"})
    assert TOKEN == state.token
    assert [("notification.send", 422, None), ("*", None, None)] == [
        (f.operation, f.status, f.times) for f in state.faults.faults
    ]
    assert TOKEN not in repr(state) + repr(state.announcer)
    keyed = {"API_KEY": "service-key", "SAGA_ORCHESTRATOR_API_KEY": "client-key"}
    assert "client-key" == build_state(args, keyed).announcer.api_key  # as the CLI's key
    assert "service-key" == build_state(args, {"API_KEY": "service-key"}).announcer.api_key
    with pytest.raises(SystemExit):
        build_parser().parse_args(["devservices", "--failure-rate", "2"])
    with pytest.raises(ValueError):
        build_state(argparse.Namespace(**{**vars(args), "fail": ["op:abc"]}), {})


async def test_the_devservices_command_starts_and_answers(tmp_path):
    port = free_port()
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "saga_orchestrator", "devservices", "--port", str(port)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO_ROOT / "src"), "PATH": "/usr/bin:/bin"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        ready = partial(cli_main, ["wait-ready", url, "--timeout", "20"])
        assert 0 == await trio.to_thread.run_sync(ready)  # its /health/ready answers
        async with httpx.AsyncClient(base_url=url) as client:
            index = await client.get("/")
        assert 200 == index.status_code
        assert f"http://127.0.0.1:{port}/user" == index.json()["settings"]["USER_SERVICE_URL"]
    finally:
        process.kill()
        with trio.move_on_after(5, shield=True):
            await process.wait()
