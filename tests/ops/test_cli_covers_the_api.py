"""Every endpoint that docs/api.md lists has a command-line verb (or a written reason not to)."""

from __future__ import annotations

import re

from saga_orchestrator.cli import build_parser
from tests.support.server import REPO_ROOT

API_MD = REPO_ROOT / "docs" / "api.md"
_ROW = re.compile(r"^\| (GET|POST|PUT|PATCH|DELETE) \| `([^`]+)` \|", re.MULTILINE)

VERBS: dict[tuple[str, str], list[str]] = {
    ("GET", "/health"): ["health"],
    ("GET", "/health/ready"): ["wait-ready"],
    ("POST", "/sagas/start"): ["sagas", "start", "TYPE"],
    ("GET", "/sagas/"): ["sagas", "list"],
    ("GET", "/sagas/types/available"): ["sagas", "types"],
    ("GET", "/sagas/{saga_id}"): ["sagas", "show", "ID"],
    ("GET", "/sagas/{saga_id}/steps"): ["sagas", "steps", "ID"],
    ("GET", "/sagas/{saga_id}/events"): ["sagas", "events", "ID"],
    ("GET", "/sagas/{saga_id}/wait"): ["sagas", "wait", "ID"],
    ("POST", "/sagas/{saga_id}/cancel"): ["sagas", "cancel", "ID"],
    ("POST", "/sagas/{saga_id}/retry"): ["sagas", "retry", "ID", "--dry-run"],
    ("POST", "/sagas/{saga_id}/resolve"): [
        "sagas",
        "resolve",
        "ID",
        "--step",
        "S",
        "--outcome",
        "applied",
        "--reason",
        "R",
    ],
    ("POST", "/sagas/{saga_id}/skip-compensation"): [
        "sagas",
        "skip-compensation",
        "ID",
        "--step",
        "S",
        "--reason",
        "R",
    ],
    ("POST", "/sagas/{saga_id}/resume"): [
        "sagas",
        "resume",
        "ID",
        "--from-step",
        "S",
        "--input",
        "{}",
        "--reason",
        "R",
        "--wait",
    ],
    ("POST", "/events/publish"): ["events", "publish", "TYPE", "STREAM"],
    ("GET", "/events/stream/{stream_id}"): ["events", "stream", "STREAM"],
    ("GET", "/events/all"): ["events", "all"],
    ("GET", "/events/types"): ["events", "types"],
    ("POST", "/events/replay"): ["events", "replay", "--after-position", "0"],
    ("POST", "/events/replay/{stream_id}"): ["events", "replay", "STREAM"],
}
"""Each endpoint -> a command line that calls it."""

NOT_VERBS = {
    ("GET", "/health/live"): "a liveness probe for an orchestrator (Kubernetes), not for people",
    ("GET", "/metrics"): "scraped by Prometheus",
    ("GET", "/openapi.json"): "read by tools (docs/openapi.md)",
    ("GET", "/docs"): "a page for a browser",
}


def endpoints() -> set[tuple[str, str]]:
    return set(_ROW.findall(API_MD.read_text(encoding="utf-8")))


def test_every_endpoint_of_the_api_has_a_verb() -> None:
    listed = endpoints()
    assert len(listed) >= 20
    assert set() == listed - set(VERBS) - set(NOT_VERBS), "add a CLI verb (or a reason)"
    assert set() == (set(VERBS) | set(NOT_VERBS)) - listed, "docs/api.md lost an endpoint"


def test_each_verb_parses_to_a_command() -> None:
    parser = build_parser()
    for endpoint, argv in VERBS.items():
        args = parser.parse_args(argv)
        assert callable(args.handler), endpoint
