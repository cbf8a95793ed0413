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


@pytest.mark.timeout(600)
def test_the_protocol_conformance_suite_passes_against_reasonq(cluster: Any) -> None:
    npm = shutil.which("npm")
    assert npm is not None, "Node.js and npm are needed to run the Durable Streams conformance suite"
    if not (SUITE / "node_modules" / "@durable-streams" / "server-conformance-tests").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=SUITE, check=True, timeout=300)
    c = cluster({"REASONQ_DS_LONG_POLL_S": str(LONG_POLL_S)})
    url = c.start_api()
    env = {**os.environ, "DS_URL": url, "DS_LONG_POLL_MS": str(LONG_POLL_S * 1000), "CI": "true"}
    run = subprocess.run(
        [str(Path(npm).with_name("npx")), "vitest", "run"],
        cwd=SUITE,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    output = run.stdout + run.stderr
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "durable-conformance.log").write_text(output)
    counts = _summary(output)
    print(f"Durable Streams conformance: {counts}")  # noqa: T201 (the summary goes in the CI log)
    assert counts.get("passed", 0) >= 330, output[-4000:]
    assert counts.get("failed", 0) == 0 and run.returncode == 0, output[-8000:]
