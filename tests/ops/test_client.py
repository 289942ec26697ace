"""``saga-orchestrator sagas ...`` and ``events ...`` against the real server process.

The commands run in the test's thread through ``cli.main`` (so output and exit codes are
checked directly); one test runs the real entry point as a process.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import types
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from saga_orchestrator.cli import main
from saga_orchestrator.client import (
    EXIT_CONFLICT,
    EXIT_ERROR,
    EXIT_NOT_COMPLETED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_WAIT_TIMEOUT,
    ClientError,
    Saga,
    SyncSagaClient,
    _event_reads,
    _events,
    _saga_client,
    _saga_reads,
)
from saga_orchestrator.client._saga_start import start_options, start_saga, wait_for_end

from .conftest import READ_ONLY_KEY, RunningServer

pytestmark = pytest.mark.e2e


@attrs.frozen
class Run:
    code: int
    out: str
    err: str


Cli = Callable[..., Run]


@pytest.fixture
def cli(
    running_server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Cli:
    """Run ``saga-orchestrator ARGS`` against the server (URL and key from the environment)."""
    monkeypatch.setenv("SAGA_ORCHESTRATOR_URL", running_server.url)
    monkeypatch.setenv("API_KEY", running_server.api_key)

    def run(*argv: str) -> Run:
        try:
            code = main(list(argv))
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def test_start_wait_show_and_list(cli: Cli) -> None:
    run = cli("sagas", "start", "test_two_steps", "--data", '{"name": "cli"}', "--wait")
    assert EXIT_OK == run.code, run
    assert "status           completed" in run.out
    assert "reserve  completed" in run.out
    progress = run.err.splitlines()
    assert progress[-1].startswith("saga ") and ": completed" in progress[-1]
    saga_id = run.out.split()[1]

    shown = cli("sagas", "show", saga_id, "--json")
    assert EXIT_OK == shown.code
    saga = json.loads(shown.out)
    assert (saga_id, "completed") == (saga["saga_id"], saga["status"])
    assert {"confirm": {"confirmed": 1}} == {"confirm": saga["result"]["confirm"]}

    events = cli("sagas", "show", saga_id, "--events")
    assert "SagaStarted" in events.out and "SagaCompleted" in events.out

    listed = cli("sagas", "list", "--status", "completed", "-q")
    assert saga_id in listed.out.split()
    table = cli("sagas", "list", "--type", "test_two_steps")
    assert table.out.startswith("SAGA ID")
    assert saga_id in table.out


def test_list_limit_is_the_total_printed_however_many_pages(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a", "b", "c", "d", "e"):
        start = cli("sagas", "start", "test_two_steps", "--data", json.dumps({"name": name}))
        assert EXIT_OK == start.code
    newest = cli("sagas", "list", "--all", "-q").out.split()
    assert len(newest) >= 5
    monkeypatch.setattr(_saga_reads, "LIST_PAGE", 2)  # pages of 2: --limit 3 needs two
    three = cli("sagas", "list", "--limit", "3", "-q")
    assert newest[:3] == three.out.split()
    cursor = three.err.split("more: --cursor ")[1].split()[0]
    after = cli("sagas", "list", "--limit", "2", "--cursor", cursor, "-q").out.split()
    assert newest[3:5] == after
    everything = json.loads(cli("sagas", "list", "--all", "--json").out)
    assert newest == [saga["saga_id"] for saga in everything["items"]]
    assert everything["next_cursor"] is None
    table = cli("sagas", "list", "--limit", "1")
    assert 2 == len(table.out.splitlines())  # header and one saga
    assert "more: --cursor" in table.err
    assert EXIT_USAGE == cli("sagas", "list", "--limit", "0").code
    assert EXIT_USAGE == cli("sagas", "list", "--limit", "2", "--all").code


def test_steps_and_events_of_a_saga(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    saga_id = cli(
        "sagas", "start", "test_two_steps", "--data", '{"name": "steps"}', "--wait", "-q"
    ).out.strip()
    steps = cli("sagas", "steps", saga_id)
    assert EXIT_OK == steps.code, steps
    assert ["#", "0", "1"] == [line.split()[0] for line in steps.out.splitlines()]
    assert "reserve  completed" in steps.out and "confirm  completed" in steps.out
    everything = json.loads(cli("sagas", "events", saga_id, "--json").out)
    types = [event["type"] for event in everything["items"]]
    assert "SagaStarted" == types[0] and "SagaCompleted" == types[-1]
    monkeypatch.setattr(_saga_reads, "EVENTS_PAGE", 1)  # one transition per page
    first = cli("sagas", "events", saga_id, "--limit", "2")
    assert types[:2] == [line.split()[1] for line in first.out.splitlines()[1:]]
    assert "more: --from-version 3" in first.err
    rest = json.loads(cli("sagas", "events", saga_id, "--from-version", "3", "--json").out)
    assert types[2:] == [event["type"] for event in rest["items"]]
    assert EXIT_NOT_FOUND == cli("sagas", "steps", "00000000-0000-0000-0000-000000000000").code


def test_quiet_start_json_start_and_idempotency_key(cli: Cli) -> None:
    start = ("sagas", "start", "test_two_steps", "--data", '{"name": "k"}')
    first = cli(*start, "--idempotency-key", "ops-key-1", "-q")
    again = cli(*start, "--idempotency-key", "ops-key-1", "--json")
    assert EXIT_OK == first.code == again.code
    assert first.out.strip() == json.loads(again.out)["saga_id"]
    assert json.loads(again.out)["created"] is False


def test_types(cli: Cli) -> None:
    run = cli("sagas", "types")
    assert run.out.startswith("NAME")
    assert "test_two_steps" in run.out and "reserve, confirm" in run.out
    names = [item["name"] for item in json.loads(cli("sagas", "types", "--json").out)]
    assert {"ops_refused", "test_slow", "test_two_steps"} <= set(names)


def test_cancel_then_conflicts(cli: Cli, running_server: RunningServer) -> None:
    saga_id = cli("sagas", "start", "test_slow", "--data", '{"seconds": 60}', "-q").out.strip()
    cancel = cli("sagas", "cancel", saga_id, "--reason", "ops test")
    assert EXIT_OK == cancel.code, cancel
    assert saga_id in cancel.out
    with SyncSagaClient(running_server.url, api_key=running_server.api_key) as sagas:
        ended = sagas.wait(saga_id, timeout=10)
    assert "cancelled" == ended.status
    again = cli("sagas", "cancel", saga_id)
    assert EXIT_CONFLICT == again.code
    assert "HTTP 409 saga_state_conflict" in again.err
    assert EXIT_CONFLICT == cli("sagas", "retry", saga_id).code


def test_wait_exit_codes_for_a_saga_that_does_not_complete(cli: Cli) -> None:
    refused = cli("sagas", "start", "ops_refused", "--data", '{"name": "x"}', "--wait")
    assert EXIT_NOT_COMPLETED == refused.code, refused
    assert "status           compensated" in refused.out
    assert "ended compensated" in refused.err
    slow = cli(
        "sagas",
        "start",
        "test_slow",
        "--data",
        '{"seconds": 60}',
        "--wait",
        "--wait-timeout",
        "0.3",
    )
    assert EXIT_WAIT_TIMEOUT == slow.code
    assert "gave up waiting after 0.3 s" in slow.err


def test_show_and_steps_name_a_step_error_with_the_frames_of_a_bug(cli: Cli) -> None:
    buggy = cli("sagas", "start", "ops_buggy", "--data", '{"name": "nobody"}', "--wait", "-q")
    refused = cli("sagas", "start", "ops_refused", "--data", '{"name": "no"}', "--wait", "-q")
    buggy_id, refused_id = buggy.out.split()[0], refused.out.split()[0]
    for argv in (("sagas", "show", buggy_id), ("sagas", "steps", buggy_id)):
        shown = cli(*argv)
        assert EXIT_OK == shown.code, shown
        frames = shown.out.split("step 'lookup' failed: KeyError: 'nobody'\n")[-1].splitlines()
        assert 1 == len(frames)  # the step's own code only
        assert frames[0].startswith("  ops/sagas.py:")
        assert 'in _lookup: return {"found": {}[ctx.input.name]}' in frames[0]
    steps = json.loads(cli("sagas", "steps", refused_id, "--json").out)["items"]
    refuse = steps[1]
    assert ("NonRetryableError", []) == (refuse["error_type"], refuse["error_frames"])
    assert "step 'refuse' failed: NonRetryableError: no is refused" in (
        cli("sagas", "show", refused_id).out
    )


def test_list_filters_by_what_names_a_saga_and_several_statuses(cli: Cli) -> None:
    key = f"ops-{uuid.uuid4()}"
    start = ("sagas", "start", "test_two_steps", "--data", '{"name": "f"}', "--wait")
    keyed = cli(*start, "--idempotency-key", key, "--correlation-id", key, "-q").out.split()[0]
    refused = cli("sagas", "start", "ops_refused", "--data", '{"name": "f"}', "--wait", "-q")
    refused_id = refused.out.split()[0]
    assert [keyed] == cli("sagas", "list", "--idempotency-key", key, "-q").out.split()
    assert [keyed] == cli("sagas", "list", "--correlation-id", key, "-q").out.split()
    both = cli("sagas", "list", "--status", "completed", "--status", "compensated", "-q")
    assert {keyed, refused_id} <= set(both.out.split())
    assert keyed not in cli("sagas", "list", "--status", "compensated", "-q").out.split()
    later = cli("sagas", "list", "--updated-after", "2999-01-01T00:00:00", "-q")
    assert (EXIT_OK, "") == (later.code, later.out)
    assert "" == cli("sagas", "list", "--trigger-event", str(uuid.uuid4()), "-q").out
    bad = cli("sagas", "list", "--created-before", "yesterday")
    assert EXIT_USAGE == bad.code and "created_before" in bad.err


def test_sagas_wait_prints_the_ended_saga_and_exits_by_its_status(cli: Cli) -> None:
    started = cli("sagas", "start", "test_slow", "--data", '{"seconds": 0.5}', "-q")
    waited = cli("sagas", "wait", started.out.strip())
    assert (EXIT_OK, True) == (waited.code, "status           completed" in waited.out), waited
    refused = cli("sagas", "start", "ops_refused", "--data", '{"name": "y"}', "-q")
    assert EXIT_NOT_COMPLETED == cli("sagas", "wait", refused.out.strip()).code
    slow = cli("sagas", "start", "test_slow", "--data", '{"seconds": 60}', "-q").out.strip()
    gave_up = cli("sagas", "wait", slow, "--wait-timeout", "1")
    assert EXIT_WAIT_TIMEOUT == gave_up.code
    assert f"saga {slow} is running" in gave_up.err
    assert EXIT_OK == cli("sagas", "cancel", slow).code


def test_not_found_and_usage_errors(cli: Cli, tmp_path: Path) -> None:
    missing = cli("sagas", "show", "00000000-0000-0000-0000-000000000000")
    assert EXIT_NOT_FOUND == missing.code
    assert "HTTP 404 saga_not_found" in missing.err
    assert EXIT_NOT_FOUND == cli("sagas", "cancel", "not-a-uuid").code

    bad_input = cli("sagas", "start", "test_two_steps", "--data", '{"nam": "x"}')
    assert EXIT_USAGE == bad_input.code
    assert "data.name: is required" in bad_input.err
    unknown = cli("sagas", "start", "no_such_type")
    assert EXIT_USAGE == unknown.code
    assert "available saga types:" in unknown.err
    assert EXIT_USAGE == cli("sagas", "start", "test_two_steps", "--data", "{bad").code
    assert EXIT_USAGE == cli("sagas", "start", "test_two_steps", "--data", "[1]").code
    no_file = cli("sagas", "start", "test_two_steps", "--data", f"@{tmp_path / 'none.json'}")
    assert EXIT_USAGE == no_file.code and "cannot read" in no_file.err
    data_file = tmp_path / "input.json"
    data_file.write_text('{"name": "from a file"}')
    assert EXIT_OK == cli("sagas", "start", "test_two_steps", "--data", f"@{data_file}").code
    assert EXIT_USAGE == cli("sagas", "list", "--status", "sleeping").code  # argparse
    assert EXIT_USAGE == cli("sagas", "list", "--url", "ftp://example").code
    assert EXIT_USAGE == cli("sagas", "list", "--created-after", "someday").code  # the 400


def test_the_api_key_is_required_and_never_printed(cli: Cli, running_server: RunningServer) -> None:
    wrong = cli("sagas", "list", "--api-key", "wrong-key-123")
    assert EXIT_USAGE == wrong.code
    assert "HTTP 401" in wrong.err and "API_KEY" in wrong.err
    assert "wrong-key-123" not in wrong.out + wrong.err
    for argv in (("sagas", "list"), ("sagas", "types", "--json"), ("sagas", "list", "--json")):
        run = cli(*argv)
        assert EXIT_OK == run.code
        assert running_server.api_key not in run.out + run.err


def test_network_error_exits_1(cli: Cli) -> None:
    from tests.support.server import free_port

    run = cli("sagas", "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert EXIT_ERROR == run.code
    assert "cannot reach" in run.err


def test_events_publish_and_read_a_stream(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    published = cli(
        "events",
        "publish",
        "ops.tested",
        "ops-stream-1",
        "--data",
        '{"n": 1}',
        "--metadata",
        '{"source": "ops"}',
        "--json",
    )
    assert EXIT_OK == published.code, published
    for n in (2, 3):
        cli("events", "publish", "ops.tested", "ops-stream-1", "--data", json.dumps({"n": n}))
    stream = cli("events", "stream", "ops-stream-1")
    assert EXIT_OK == stream.code, stream
    assert stream.out.startswith("VERSION")
    assert 3 == stream.out.count("ops.tested")
    lines = cli("events", "tail", "ops-stream-1", "--json", "--from-version", "2").out
    assert [{"n": 2}, {"n": 3}] == [json.loads(line)["data"] for line in lines.splitlines()]
    monkeypatch.setattr(_event_reads, "PAGE", 1)  # one event per page: --limit 2 needs two
    two = cli("events", "stream", "ops-stream-1", "--limit", "2", "--json")
    assert [{"n": 1}, {"n": 2}] == [json.loads(line)["data"] for line in two.out.splitlines()]
    empty = cli("events", "stream", "ops-stream-none")
    assert "no events in ops-stream-none from version 1" == empty.out.strip()


def test_events_all_and_types(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(3):
        cli("events", "publish", "ops.listed", f"ops-all-{n}", "--data", json.dumps({"n": n}))
    listed = json.loads(cli("events", "all", "--all", "--type", "ops.listed", "--json").out)
    assert ["ops-all-0", "ops-all-1", "ops-all-2"] == [e["stream_id"] for e in listed["items"]]
    after = str(listed["items"][0]["position"] - 1)
    expected = json.loads(cli("events", "all", "--after-position", after, "--json").out)
    positions = [str(event["position"]) for event in expected["items"][:2]]
    monkeypatch.setattr(_event_reads, "PAGE", 1)  # pages of one event (of any type)
    table = cli("events", "all", "--after-position", after, "--limit", "2")
    assert EXIT_OK == table.code, table
    assert ["POSITION", *positions] == [row.split()[0] for row in table.out.splitlines()]
    assert f"more: --after-position {positions[1]}" in table.err
    types = cli("events", "types")
    assert EXIT_OK == types.code
    assert "seen in the store:" in types.out and "ops.listed" in types.out
    assert {"triggers", "seen"} <= set(json.loads(cli("events", "types", "--json").out))


def test_events_replay_a_stream_or_a_range(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(3):
        cli("events", "publish", "ops.replayed", "ops-replay-1", "--data", json.dumps({"n": n}))
    whole = cli("events", "replay", "ops-replay-1")
    assert EXIT_OK == whole.code, whole
    assert whole.out.startswith("replayed 3 events of ops-replay-1 to ")
    monkeypatch.setattr(_events, "PAGE", 1)  # one event per request: --limit 2 needs two
    part = json.loads(cli("events", "replay", "ops-replay-1", "--limit", "2", "--json").out)
    assert 2 == part["replayed"] == len(part["event_ids"])
    assert 3 == part["next_from_version"]
    after = json.loads(cli("events", "all", "--all", "--type", "ops.replayed", "--json").out)
    position = after["items"][0]["position"] - 1
    ranged = cli(
        "events", "replay", "--after-position", str(position), "--type", "ops.replayed", "--all"
    )
    assert ranged.out.startswith("replayed 3 events to "), ranged
    both = cli("events", "replay", "ops-replay-1", "--after-position", "0")
    assert EXIT_USAGE == both.code and "either STREAM_ID or --after-position" in both.err
    assert EXIT_USAGE == cli("events", "replay").code


def test_health_and_wait_ready(cli: Cli, running_server: RunningServer) -> None:
    health = cli("health")
    assert EXIT_OK == health.code, health
    assert health.out.startswith("status  ok")
    assert {"store", "coordinator", "bus"} <= set(
        json.loads(cli("health", "--json").out)["components"]
    )
    ready = cli("wait-ready", running_server.url, "--timeout", "5")
    assert EXIT_OK == ready.code and f"{running_server.url} is ready" in ready.out
    from tests.support.server import free_port

    nowhere = f"http://127.0.0.1:{free_port()}"
    late = cli("wait-ready", nowhere, "--timeout", "0.5")
    assert EXIT_ERROR == late.code
    assert f"error: {nowhere} is not ready after 0.5 s: nothing answers" in late.err
    assert "" == late.out


def test_the_service_is_found_from_host_and_port_and_the_key_from_its_variable(
    cli: Cli, running_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = running_server.url.rsplit(":", 1)[1]
    monkeypatch.delenv("SAGA_ORCHESTRATOR_URL")
    monkeypatch.setenv("PORT", port)
    for host in ("0.0.0.0", "::", "127.0.0.1"):
        monkeypatch.setenv("HOST", host)
        assert EXIT_OK == cli("sagas", "list", "-q").code, host
    assert EXIT_OK == cli("wait-ready", "--timeout", "5").code
    monkeypatch.setenv("PORT", "0")
    assert "does not say where the service listens" in cli("sagas", "list").err
    monkeypatch.setenv("PORT", port)
    # SAGA_ORCHESTRATOR_API_KEY wins over API_KEY (the service's own key)
    monkeypatch.setenv("API_KEY", "not-the-key-0123456789")
    assert EXIT_USAGE == cli("sagas", "list").code
    monkeypatch.setenv("SAGA_ORCHESTRATOR_API_KEY", running_server.api_key)
    assert EXIT_OK == cli("sagas", "list").code


def test_a_read_only_key_lists_but_cannot_start(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGA_ORCHESTRATOR_API_KEY", READ_ONLY_KEY)
    assert EXIT_OK == cli("sagas", "list").code
    refused = cli("sagas", "start", "test_two_steps", "--data", '{"name": "ro"}')
    assert EXIT_USAGE == refused.code
    assert "HTTP 403 forbidden" in refused.err and READ_ONLY_KEY not in refused.err


def test_the_entry_point_exits_with_the_code(running_server: RunningServer) -> None:
    env = {
        "PATH": "",
        "SAGA_ORCHESTRATOR_URL": running_server.url,
        "API_KEY": running_server.api_key,
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "saga_orchestrator.cli",
            "sagas",
            "show",
            "00000000-0000-0000-0000-000000000000",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert EXIT_NOT_FOUND == done.returncode, done.stderr
    assert done.stderr.startswith("error: HTTP 404")


# --- without a server: the waiting loop's progress on a terminal ----------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_wait_rewrites_one_progress_line_on_a_terminal() -> None:
    answers = iter(["running", "running", "completed"])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        steps = [{"name": "one"}, {"name": "two"}]
        body = {"saga_id": "s1", "status": status, "current_step": "two", "steps": steps}
        return httpx.Response(200, json=body)

    terminal = _Terminal()
    with SyncSagaClient("http://test", transport=httpx.MockTransport(handler)) as sagas:
        first = Saga(saga_id="s1", status="pending")
        saga = wait_for_end(sagas, "s1", first=first, interval=0.001, progress=terminal)
    assert "completed" == saga.status
    text = terminal.getvalue()
    assert text.startswith("\rsaga s1: pending")
    assert "\rsaga s1: running, step two (2/2)" in text
    assert text.endswith("\n") and 1 == text.count("\n")


def _start_client(
    handler: Callable[[httpx.Request], httpx.Response], retries: int
) -> SyncSagaClient:
    """The client ``sagas start --retries N`` makes, on a scripted transport."""
    options = start_options(argparse.Namespace(retries=retries))
    return SyncSagaClient("http://test", transport=httpx.MockTransport(handler), **options)


def test_start_retries_a_503_with_the_same_key_then_gives_the_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 503 (the saga may have been created) is retried with the same idempotency key, after
    its Retry-After, each retry said on stderr; when the retries run out, the error says which
    key to start again with."""
    sent: list[dict[str, Any]] = []
    answers = iter([503, 503, 202])

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body)
        status = next(answers, 503)
        if status == 503:
            error = {"code": "timeout", "message": "busy", "details": [],
                     "idempotency_key": body["idempotency_key"]}  # fmt: skip
            return httpx.Response(503, json={"error": error}, headers={"Retry-After": "2"})
        return httpx.Response(202, json={"saga_id": "s1", "status": "running"})

    pauses: list[float] = []
    monkeypatch.setattr(_saga_client, "time", types.SimpleNamespace(sleep=pauses.append))
    with _start_client(handler, retries=3) as sagas:
        saga = start_saga(sagas, "t", {}, idempotency_key="k-1")
    assert "s1" == saga.saga_id
    assert ["k-1"] * 3 == [b["idempotency_key"] for b in sent]
    assert [2.0, 2.0] == pauses
    assert 2 == capsys.readouterr().err.count("retrying in 2 s with the same key")

    sent.clear()
    with _start_client(handler, retries=1) as sagas, pytest.raises(ClientError) as failed:
        start_saga(sagas, "t", {}, idempotency_key="k-1")
    assert ["k-1", "k-1"] == [b["idempotency_key"] for b in sent]
    assert "--idempotency-key k-1" in str(failed.value)
    assert EXIT_ERROR == failed.value.exit_code


def test_start_retries_a_lost_answer_but_not_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(json.loads(request.content)["idempotency_key"])
        if len(calls) == 1:
            raise httpx.ReadTimeout("no answer", request=request)
        return httpx.Response(422, json={"error": {"code": "validation_error",
                                                   "message": "bad", "details": []}})  # fmt: skip

    monkeypatch.setattr(_saga_client, "time", types.SimpleNamespace(sleep=lambda seconds: None))
    with _start_client(handler, retries=5) as sagas, pytest.raises(ClientError) as failed:
        start_saga(sagas, "t", {}, idempotency_key="k-2")
    assert ["k-2", "k-2"] == calls  # the timeout retried; the 422 not
    assert EXIT_USAGE == failed.value.exit_code


def test_start_sends_its_own_key_and_prints_it(cli: Cli) -> None:
    start = ("sagas", "start", "test_two_steps", "--data", '{"name": "own-key"}')
    run = cli(*start)
    assert EXIT_OK == run.code, run
    [key] = [line.split()[-1] for line in run.out.splitlines() if "idempotency key" in line]
    [saga_id] = [line.split()[-1] for line in run.out.splitlines() if line.startswith("saga ")]
    assert str(uuid.UUID(key)) == key  # made by the CLI (a UUID)
    again = json.loads(cli(*start, "--idempotency-key", key, "--json").out)
    assert (saga_id, False, key) == (again["saga_id"], again["created"], again["idempotency_key"])


def test_start_on_a_version_and_list_by_version_and_activity(cli: Cli) -> None:
    start = ("sagas", "start", "test_two_steps", "--data", '{"name": "v"}')
    saga_id = cli(*start, "--version", "1", "--wait", "-q").out.split()[0]
    by_version = ("sagas", "list", "--type", "test_two_steps", "--version", "1", "-q")
    assert saga_id in cli(*by_version).out.split()
    assert saga_id not in cli(*by_version, "--active").out.split()  # it has ended
    assert saga_id not in cli("sagas", "list", "--version", "2", "-q").out.split()
    missing = cli(*start, "--version", "9")
    assert EXIT_OK != missing.code and "loaded versions: 1" in missing.err
    types = json.loads(cli("sagas", "types", "--json").out)
    two = next(t for t in types if t["name"] == "test_two_steps")
    assert [1] == [v["version"] for v in two["versions"]]
    assert "1: " in cli("sagas", "types").out
