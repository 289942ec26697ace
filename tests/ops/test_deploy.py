"""``deploy/``: the Prometheus alerting rules pass ``promtool check rules``, and the rules and
the Grafana dashboard name only metrics the service exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.live import open_live_server
from tests.support.required import unavailable
from tests.support.server import REPO_ROOT, wait_terminal

RULES = REPO_ROOT / "deploy" / "prometheus" / "saga-orchestrator-rules.yml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "saga-orchestrator-dashboard.json"
_NAME = re.compile(r"\b(?:saga|http|store|bus|outbox|router|actor|instances?)_[a-z_]+\b")
LABELS = {"saga_type"}
"""Label names the expressions use that look like metric names."""


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("promtool is not installed (apt-get install prometheus; .ci/run does)")
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert 0 == checked.returncode, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def _expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    found = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    found += [var["query"] for var in dashboard["templating"]["list"] if var["type"] == "query"]
    found += re.findall(r"expr: (?:\|\n)?((?:.|\n)*?)\n\s+(?:for|labels):", RULES.read_text())
    return found


def sample_names(text: str) -> set[str]:
    """The names of the samples of a scrape (``saga_started_total``, ``..._bucket``...)."""
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


@pytest.mark.e2e
async def test_the_rules_and_the_dashboard_name_metrics_the_service_exports(
    tmp_path: Path,
) -> None:
    async with open_live_server(tmp_path) as server, server.client() as client:
        start = await client.post(
            "/sagas/start", json={"saga_type": "test_two_steps", "data": {"name": "m"}}
        )
        assert 202 == start.status_code
        await wait_terminal(client, [start.json()["saga_id"]])  # its metrics have samples
        scraped = await client.get("/metrics")
    assert isinstance(scraped, httpx.Response) and 200 == scraped.status_code
    exported = sample_names(scraped.text)
    named = {name for expr in _expressions() for name in _NAME.findall(expr)} - LABELS
    assert len(named) >= 10, named
    assert set() == named - exported
