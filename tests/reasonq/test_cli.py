"""The client commands, run as a script would run them: output and exit codes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from reasonq.processes import free_port
from tests.helpers import expected_text


def reasonq(*args: str, url: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REASONQ_API_KEY"}
    if key is not None:
        env["REASONQ_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "reasonq", *args, "--url", url], capture_output=True, text=True, timeout=60, env=env
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
    refused = reasonq("submit", "x" * 10, "--model", "", url=api_url)
    assert refused.returncode == 2 and "body model" in refused.stderr


def test_the_commands_send_reasonq_api_key(keyed: Any) -> None:
    from tests.conftest import ALICE, BOB

    prompt = "cli with a key sim:reasoning_tokens=3 sim:content_tokens=3"
    anonymous = reasonq("submit", prompt, url=keyed.url)
    assert anonymous.returncode == 6 and "HTTP 401" in anonymous.stderr
    done = reasonq("submit", prompt, "--follow", url=keyed.url, key=ALICE)
    assert done.returncode == 0, done.stderr
    assert expected_text(prompt)[1].strip() in done.stdout
    gid = reasonq("submit", prompt, url=keyed.url, key=ALICE).stdout.strip()
    assert reasonq("get", gid, url=keyed.url, key=BOB).returncode == 4  # another key's generation
    assert ALICE not in anonymous.stderr + done.stderr


def test_a_thousand_line_batch_through_the_cli_resumes_after_an_interrupt(api_url: str, tmp_path: Path) -> None:
    tag = time.monotonic_ns()
    lines = [
        {
            "custom_id": f"line-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"messages": [{"role": "user", "content": f"cli batch {tag} {i} sim:reasoning_tokens=2"}]},
        }
        for i in range(1_000)
    ]
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    argv = [sys.executable, "-m", "reasonq", "batch", str(source), "-o", str(out), "--url", api_url, "--poll-s", "0.2"]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    first.send_signal(signal.SIGINT)  # Ctrl-C part way
    _, first_err = first.communicate(timeout=30)
    second = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stderr
    submitted = re.search(r"submitted batch (batch_\S+)", first_err)
    # the second run resumed the same batch (or, had the first one finished, got it back by the file's
    # Idempotency-Key): never a second batch
    assert submitted is not None and submitted.group(1) in second.stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    custom_ids = [r["custom_id"] for r in results]
    assert sorted(custom_ids) == sorted(line["custom_id"] for line in lines)  # each exactly once
    assert all(r["response"]["status_code"] == 200 for r in results)
