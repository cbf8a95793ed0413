"""Issue 13: ``reasonq api --workers N`` runs N processes on one port, each with its own hub. Viewer counts, share
links and limits live in Redis and hold across them; a process that dies is started again; SIGTERM stops all."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx

from reasonq.processes import ManagedProcess, free_port, http_ok, wait_until
from tests.conftest import python_m
from tests.helpers import Ev, expected_text, follow_resuming, submit, text_of


def _children(pid: int) -> list[int]:
    """The API processes of the supervisor ``pid`` (spawned children; not multiprocessing's resource tracker)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            out.append(int(stat.parent.name))
    return out


def test_three_api_processes_share_one_port_and_their_counts(
    stack_env: dict[str, str], logs_dir: Path, session_worker: ManagedProcess
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = ManagedProcess(
        "api-workers", python_m("api", "--port", str(port), "--workers", "3"), stack_env, log_path=logs_dir / "api3.log"
    ).start()
    try:
        wait_until(lambda: http_ok(f"{url}/healthz"), timeout_s=30, what="API", process=api)
        wait_until(lambda: len(_children(api.pid)) >= 3, timeout_s=30, what="3 API processes", process=api)
        prompt = "many processes sim:reasoning_tokens=120 sim:content_tokens=10 sim:tokens_per_s=40"
        with httpx.Client(base_url=url, timeout=30) as client:
            gid = submit(client, prompt)
            seen: list[list[Ev]] = []
            viewers = [
                threading.Thread(target=lambda: seen.append(follow_resuming(url, gid, timeout_s=60)[0]))
                for _ in range(9)
            ]
            for v in viewers:
                v.start()
            # 9 connections spread over 3 processes (SO_REUSEPORT); the count adds up across them
            deadline = time.monotonic() + 5
            while client.get(f"/v1/generations/{gid}/viewers").json()["viewers"] != 9:
                assert time.monotonic() < deadline, "viewer count never reached 9"
                time.sleep(0.1)
            victim = _children(api.pid)[0]
            os.kill(victim, signal.SIGKILL)  # a process dies: its viewers resume elsewhere, it is started again
            wait_until(
                lambda: victim not in _children(api.pid) and len(_children(api.pid)) >= 3,
                timeout_s=30,
                what="a replacement API process",
            )
            for v in viewers:
                v.join(60)
            record = client.get(f"/v1/generations/{gid}").json()
            assert (record["reasoning"], record["content"]) == expected_text(prompt)
            # every viewer, those of the killed process too (they resumed on another), has the whole text
            assert len(seen) == 9 and all(text_of(events) == expected_text(prompt) for events in seen)
        children = _children(api.pid)
        assert api.stop(timeout_s=30) == 0
        wait_until(lambda: not any(Path(f"/proc/{c}").exists() for c in children), timeout_s=10, what="children gone")
    finally:
        api.stop()
