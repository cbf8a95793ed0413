"""The client commands, run as a script would run them: output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

from reasonq.processes import free_port
from tests.helpers import expected_text


def reasonq(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reasonq", *args, "--url", url], capture_output=True, text=True, timeout=60
    )


def test_submit_follow_prints_reasoning_and_answer(api_url: str) -> None:
    prompt = "cli follow sim:reasoning_tokens=10 sim:content_tokens=10"
    done = reasonq("submit", prompt, "--follow", url=api_url)
    assert done.returncode == 0, done.stderr
    reasoning, content = expected_text(prompt)
    assert reasoning in done.stdout.replace("\n", "") and content.strip() in done.stdout


def test_submit_get_tail_cancel(api_url: str) -> None:
    prompt = "cli parts sim:reasoning_tokens=5 sim:content_tokens=5"
    submitted = reasonq("submit", prompt, url=api_url)
    assert submitted.returncode == 0
    gid = submitted.stdout.strip()
    assert gid.startswith("gen_")
    tailed = reasonq("tail", gid, "--after", "2", url=api_url)
    assert tailed.returncode == 0 and expected_text(prompt)[1].strip() in tailed.stdout
    got = json.loads(reasonq("get", gid, "--json", url=api_url).stdout)
    assert got["status"] == "completed" and got["content"] == expected_text(prompt)[1]
    long = reasonq("submit", "cli long sim:reasoning_tokens=500 sim:tokens_per_s=20", url=api_url).stdout.strip()
    cancelled = reasonq("cancel", long, url=api_url)
    assert cancelled.returncode == 0 and json.loads(cancelled.stdout)["id"] == long
    assert reasonq("tail", long, url=api_url).returncode == 3  # cancelled


def test_exit_codes(api_url: str) -> None:
    failed = reasonq("submit", "cli bad sim:status=400", "--follow", url=api_url)
    assert failed.returncode == 1 and "HTTP 400" in failed.stderr
    assert reasonq("get", "gen_AAAAAAAAAAAAAAAAAAAAAA", url=api_url).returncode == 4
    assert reasonq("get", "gen_AAAAAAAAAAAAAAAAAAAAAA", url=f"http://127.0.0.1:{free_port()}").returncode == 5
