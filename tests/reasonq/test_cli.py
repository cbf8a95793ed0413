"""The client commands, run as a script would run them: output and exit codes."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from reasonq.processes import free_port, wait_until
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
    assert cancelled.returncode == 0
    assert cancelled.stdout.startswith(f"{long}: cancel requested (it was ")  # a line a person reads
    again = reasonq("cancel", long, "--json", url=api_url)
    assert json.loads(again.stdout)["id"] == long
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

    def some_written() -> bool:  # part way: some results written (no fixed sleep, issue 18)
        return first.poll() is not None or (out.exists() and len(out.read_text().splitlines()) >= 10)

    wait_until(some_written, timeout_s=60, what="the first results")
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


def _plain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reasonq", *args], capture_output=True, text=True, timeout=60)


def test_reasonq_alone_prints_help_and_version_is_known() -> None:
    """Issue 11: `reasonq` alone was an argparse error."""
    alone = _plain()
    assert alone.returncode == 0 and "usage: reasonq" in alone.stdout and "submit" in alone.stdout
    from reasonq import __version__

    assert _plain("--version").stdout.strip() == f"reasonq {__version__}"


def test_every_option_has_help_with_its_default() -> None:
    from reasonq.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"reasonq {name} {action.option_strings[0]} has no help"
    up_help = _plain("up", "--help").stdout
    assert "(default: 8000)" in up_help and "(default: reasonq-data)" in up_help
    assert "(default: )" not in _plain("submit", "--help").stdout


def test_user_errors_are_one_clear_line_without_a_traceback(api_url: str, tmp_path: Path) -> None:
    missing = reasonq("batch", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "out.jsonl"), url=api_url)
    assert missing.returncode == 2 and "nope.jsonl: No such file or directory" in missing.stderr
    unreachable = reasonq("get", "gen_AAAAAAAAAAAAAAAAAAAAAA", url=f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 5 and "cannot reach the server at http://127.0.0.1:" in unreachable.stderr
    bad_url = reasonq("get", "gen_AAAAAAAAAAAAAAAAAAAAAA", url="not a url")
    assert bad_url.returncode == 5
    bad_flag = _plain("submit", "a prompt", "--no-such-flag")
    assert bad_flag.returncode == 2 and "unrecognized arguments" in bad_flag.stderr
    for result in (missing, unreachable, bad_url, bad_flag):
        assert "Traceback" not in result.stderr, result.stderr
    # never hard-wrapped into a pipe: the long message stays one line
    hint = "reasonq: is it running (`reasonq up`)? Pass --url or set REASONQ_URL to reach another one."
    assert len(hint) > 80 and hint in unreachable.stderr.splitlines()


def test_a_401_tells_a_cli_user_to_set_reasonq_api_key(keyed: Any) -> None:
    anonymous = reasonq("get", "gen_AAAAAAAAAAAAAAAAAAAAAA", url=keyed.url)
    assert anonymous.returncode == 6 and "set REASONQ_API_KEY=<your key>" in anonymous.stderr


def test_submit_prints_the_id_once_and_follow_ends_with_a_status_line(api_url: str) -> None:
    prompt = "cli once sim:reasoning_tokens=5 sim:content_tokens=5"
    submitted = reasonq("submit", prompt, url=api_url)
    gid = submitted.stdout.strip()
    assert gid.startswith("gen_") and submitted.stdout.count("gen_") == 1 and "gen_" not in submitted.stderr
    followed = reasonq("submit", prompt, "--follow", url=api_url)
    assert (followed.stdout + followed.stderr).count("gen_") == 1
    assert re.search(r"^completed · 10 tokens · \d+\.\d s$", followed.stderr, re.MULTILINE), followed.stderr


def test_ctrl_c_during_follow_prints_the_command_that_resumes(api_url: str) -> None:
    """Issue 11: Ctrl-C during `--follow` left the cursor mid-line and said nothing about resuming."""
    prompt = "cli resume sim:reasoning_tokens=400 sim:content_tokens=5 sim:tokens_per_s=40"
    argv = [sys.executable, "-m", "reasonq", "submit", prompt, "--follow", "--url", api_url]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    gid = proc.stderr.readline().strip()
    assert gid.startswith("gen_")
    with httpx.Client(base_url=api_url, timeout=10) as client:
        wait_until(
            lambda: len(client.get(f"/v1/generations/{gid}").json()["reasoning"]) > 20, timeout_s=30, what="text"
        )
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert out.endswith("\n")  # a new line before the message
    match = re.search(rf"Resume with: reasonq tail {gid} --after (\d+)", err)
    assert match, err
    rest = reasonq("tail", gid, "--after", match.group(1), url=api_url)
    assert rest.returncode == 0
    reasoning, content = expected_text(prompt)
    assert (out + rest.stdout).replace("\n", "") == (reasoning + content).replace("\n", "")  # nothing lost or repeated


def test_ctrl_c_during_batch_says_it_goes_on_and_how_to_resume(api_url: str, tmp_path: Path) -> None:
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions"}
    body = {
        "messages": [
            {"role": "user", "content": f"slow {time.monotonic_ns()} sim:reasoning_tokens=200 sim:tokens_per_s=20"}
        ]
    }
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text(json.dumps({**line, "body": body}) + "\n")
    argv = [sys.executable, "-m", "reasonq", "batch", str(source), "-o", str(out), "--url", api_url, "--poll-s", "0.2"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    submitted = proc.stderr.readline()
    assert "submitted batch" in submitted
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    batch_id = submitted.split()[-1]
    assert f"batch {batch_id} goes on on the server. Resume with: reasonq batch {source} -o {out}" in err
