"""Issue 17: the Durable Streams protocol's own server conformance suite (``@durable-streams/server-conformance-tests``,
pinned in ``tests/conformance/package.json``) against a real ``reasonq api`` on a real Redis: every test of every
group must pass. ``.ci/run`` installs the suite (``npm ci``); run alone, this test installs it the same way."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

SUITE = Path(__file__).resolve().parents[1] / "conformance"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"  # .ci/run prints the summary line from here
LONG_POLL_S = 2  # the server's long-poll wait: the suite's tests of a 204 take this long


def _summary(output: str) -> dict[str, int]:
    """vitest's ``Tests  N failed | M passed | K skipped (T)`` line as counts."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)
    line = next((ln for ln in plain.splitlines() if ln.strip().startswith("Tests ")), "")
    return {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped)", line)}


def _run_suite(url: str, only: str | None = None) -> tuple[dict[str, int], str, int]:
    npm = shutil.which("npm")
    assert npm is not None, "Node.js and npm are needed to run the Durable Streams conformance suite"
    if not (SUITE / "node_modules" / "@durable-streams" / "server-conformance-tests").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=SUITE, check=True, timeout=300)
    # DS_SUBSCRIPTIONS=1: the reserved subscription APIs (PROTOCOL.md 6-7) too, which the suite skips by default.
    env = {**os.environ, "DS_URL": url, "DS_LONG_POLL_MS": str(LONG_POLL_S * 1000), "DS_SUBSCRIPTIONS": "1"}
    command = [str(Path(npm).with_name("npx")), "vitest", "run", *(["-t", only] if only else [])]
    run = subprocess.run(command, cwd=SUITE, env=env | {"CI": "true"}, capture_output=True, text=True, timeout=540)
    output = run.stdout + run.stderr
    return _summary(output), output, run.returncode


@pytest.mark.timeout(600)
def test_the_protocol_conformance_suite_passes_against_reasonq(cluster: Any, own_redis_url: str) -> None:
    """Every test of every group, the subscription APIs included: nothing failed, nothing skipped. On a Redis of
    its own: the session's other API processes would serve its subscriptions' schedule with their settings."""
    c = cluster({"REASONQ_DS_LONG_POLL_S": str(LONG_POLL_S), "REASONQ_REDIS_URL": own_redis_url})
    counts, output, returncode = _run_suite(c.start_api())
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "durable-conformance.log").write_text(output)
    print(f"Durable Streams conformance: {counts}")  # noqa: T201 (the summary goes in the CI log)
    assert counts.get("passed", 0) >= 338, output[-4000:]
    assert counts.get("failed", 0) == 0 and counts.get("skipped", 0) == 0 and returncode == 0, output[-8000:]


@pytest.mark.timeout(300)
def test_the_suites_multi_key_groups_pass_on_a_redis_cluster(cluster: Any, redis_cluster: Any) -> None:
    """On a Redis Cluster a stream's keys share one slot and everything else spans slots: forks copy across
    slots, subscriptions live in slots of their own and wake streams on others, producers and TTLs are per slot.
    The suite's groups that exercise those, against an API on a three-master cluster."""
    c = cluster({"REASONQ_DS_LONG_POLL_S": str(LONG_POLL_S), "REASONQ_REDIS_URL": redis_cluster.url})
    counts, output, returncode = _run_suite(c.start_api(), only="[Ff]ork|[Ss]ubscription|[Pp]roducer|TTL|[Cc]los")
    assert counts.get("passed", 0) >= 100, output[-4000:]
    assert counts.get("failed", 0) == 0 and returncode == 0, output[-8000:]
