"""Every shell and Python block of the README runs against a real ``reasonq up`` (issue 11: the README had drifted
from the product, and its own ``curl -d`` example failed).

Ids, ports and keys in the blocks are substituted with real ones; nothing else is changed. A block that cannot
run here says so in the README itself, in an HTML comment just above it: ``<!-- readme-test: skip (why) -->``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from reasonq.processes import free_port, wait_until
from tests.helpers import submit, wait_status

README = Path(__file__).resolve().parents[2] / "README.md"
_FENCE = re.compile(r"^```(\w*)\s*$")
_SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((.+?)\)\s*-->")
PLACEHOLDER_ID = "gen_Xb3..."


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    line: int
    language: str
    code: str
    skip: str | None


def readme_blocks() -> list[Block]:
    lines = README.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, language = i, match.group(1)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        skip = _SKIP.search(before)
        if language in ("sh", "python"):
            blocks.append(
                Block(start + 1, language, "\n".join(lines[start + 1 : end]), skip.group(1) if skip else None)
            )
        i = end + 1
    return blocks


@dataclass
class Running:
    base: str
    generation_id: str
    env: dict[str, str]
    work: Path


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    work = tmp_path_factory.mktemp("readme")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REASONQ_")}
    env["REASONQ_SIM_TOKENS_PER_S"] = "0"  # the examples' prompts carry no sim: directives; run them fast
    log = work / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reasonq", "up", "--port", str(port), "--data-dir", str(work / "data")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        wait_until(lambda: "reasonq: running" in log.read_text(), timeout_s=90, what="reasonq up", process=None)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            # a real generation with more than 41 events for the resume examples
            gid = submit(client, "readme sim:reasoning_tokens=60 sim:content_tokens=20 sim:tokens_per_s=50")
            wait_status(client, gid, {"completed"})
        bin_dir = str(Path(sys.executable).parent)
        block_env = {
            **env,
            "PATH": f"{bin_dir}:{env.get('PATH', '')}",
            "REASONQ_URL": base,
            "ID": gid,
            "KEY": "unused-in-open-mode",
            "CI_KEY": "a-ci-key-0123456789",
        }
        (work / "in.jsonl").write_text(
            '{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", '
            '"body": {"messages": [{"role": "user", "content": "Why is the sky blue?"}]}}\n'
        )
        yield Running(base, gid, block_env, work)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def _substitute(code: str, r: Running) -> str:
    port = r.base.rsplit(":", 1)[1]
    code = code.replace(PLACEHOLDER_ID, r.generation_id)
    return re.sub(r"\blocalhost:8000\b", f"127.0.0.1:{port}", code)


BLOCKS = readme_blocks()


def test_the_readme_has_blocks_to_run() -> None:
    assert len([b for b in BLOCKS if b.skip is None]) >= 8


@pytest.mark.parametrize("block", BLOCKS, ids=[f"line{b.line}-{b.language}" for b in BLOCKS])
def test_readme_block_runs(block: Block, running: Running) -> None:
    if block.skip is not None:
        pytest.skip(f"README line {block.line}: {block.skip}")
    code = _substitute(block.code, running)
    argv = ["bash", "-euo", "pipefail", "-c", code] if block.language == "sh" else [sys.executable, "-c", code]
    result = subprocess.run(argv, cwd=running.work, env=running.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (
        f"README line {block.line}:\n{code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    # an error answer's body (every one is {"error": {...}}), never a done event's "error": null
    assert "Traceback" not in result.stderr and '{"error":{' not in result.stdout, result.stdout + result.stderr
