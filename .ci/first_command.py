"""The README's first command, exactly as a new user runs it, in a venv made without the dev extras.

Run by ``.ci/run`` with the fresh venv's python (standard library only): start ``reasonq up`` on a free port
with an empty data dir and no ``REASONQ_*`` settings, wait for ``/readyz`` to answer 200, complete one
generation over HTTP, stop it with SIGINT (Ctrl-C), and check that every process it started has exited.
A runtime dependency missing from ``pyproject.toml`` fails here (issue 11: ``packaging`` was one).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {}
    except (urllib.error.URLError, OSError):
        return 0, {}


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


def main() -> int:
    reasonq = Path(sys.executable).with_name("reasonq")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    work = Path(tempfile.mkdtemp(prefix="reasonq-first-"))
    log = work / "up.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REASONQ_")}
    with log.open("wb") as out:
        up = subprocess.Popen(
            [str(reasonq), "up", "--port", str(port), "--data-dir", str(work / "data")],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=work,
        )  # fmt: skip

    def fail(why: str) -> int:
        print(f"first command: FAILED: {why}\n--- reasonq up output ---\n{log.read_text(errors='replace')}")
        if up.poll() is None:
            up.kill()
        return 1

    deadline = time.monotonic() + 90
    while _get(f"{base}/readyz")[0] != 200:
        if up.poll() is not None:
            return fail(f"reasonq up exited with {up.returncode} before /readyz answered 200")
        if time.monotonic() > deadline:
            return fail("/readyz did not answer 200 within 90 s")
        time.sleep(0.2)
    if "running" not in log.read_text():
        return fail("/readyz answered before reasonq up said it was running")

    body = json.dumps({"messages": [{"role": "user", "content": "first sim:reasoning_tokens=5 sim:content_tokens=5"}]})
    request = urllib.request.Request(
        f"{base}/v1/generations", data=body.encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        generation_id = json.loads(r.read())["id"]
    record: dict[str, object] = {}
    deadline = time.monotonic() + 60
    while record.get("status") != "completed":
        if time.monotonic() > deadline:
            return fail(f"generation {generation_id} not completed within 60 s: {record}")
        time.sleep(0.2)
        record = _get(f"{base}/v1/generations/{generation_id}")[1]
    if not record.get("content"):
        return fail(f"generation {generation_id} completed with no content: {record}")

    pids = [int(p) for p in re.findall(r"\(pid (\d+)", log.read_text())]
    up.send_signal(signal.SIGINT)
    try:
        code = up.wait(60)
    except subprocess.TimeoutExpired:
        return fail("reasonq up did not stop within 60 s of Ctrl-C")
    if code != 0:
        return fail(f"reasonq up exited {code} after Ctrl-C")
    time.sleep(0.2)
    left = [p for p in pids if _alive(p)]
    if len(pids) < 5 or left:
        return fail(f"processes named {pids}; still running after stop: {left}")
    print(f"first command: ok (ready, generation {generation_id} completed, {len(pids)} processes stopped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
