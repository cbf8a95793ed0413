"""`reasonq up` runs everything from one command, keeps data across restarts, and stops with no orphans."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from reasonq.processes import free_port, http_ok, wait_until
from tests.helpers import expected_text, submit, wait_status


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it has exited all the same
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][:1] != "Z"


def _start_up(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REASONQ_")}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "reasonq", "up", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def _stop_up(proc: subprocess.Popen[bytes], log: Path) -> list[int]:
    pids = [int(p) for p in re.findall(r"\(pid (\d+)", log.read_text())]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(40) == 0, log.read_text()
    return pids


def test_up_serves_keeps_data_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "up.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start_up(data_dir, port, log)
    try:
        wait_until(lambda: "running; Ctrl-C" in log.read_text(), timeout_s=60, what="reasonq up")
        text = log.read_text()
        assert "SIMULATED model" in text and f"{base}/docs" in text and "curl" in text
        prompt = "up sim:reasoning_tokens=20 sim:content_tokens=10 sim:tokens_per_s=0"
        with httpx.Client(base_url=base, timeout=10) as client:
            gid = submit(client, prompt)
            record = wait_status(client, gid, {"completed"}, timeout_s=30)
        assert (record["reasoning"], record["content"]) == expected_text(prompt)
    finally:
        pids = _stop_up(proc, log)
    assert len(pids) == 5  # redis-server, simulator, worker, batch worker, API
    time.sleep(0.2)
    assert [p for p in pids if _alive(p)] == []
    assert "all processes stopped" in log.read_text()

    # the same data dir after a restart still has the generation
    port = free_port()
    proc = _start_up(data_dir, port, log)
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), timeout_s=60, what="reasonq up again")
        again = httpx.get(f"http://127.0.0.1:{port}/v1/generations/{gid}", timeout=10).json()
        assert again["status"] == "completed" and again["content"] == record["content"]
    finally:
        _stop_up(proc, log)
