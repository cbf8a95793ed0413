"""`reasonq up` runs everything from one command, keeps data across restarts, and stops with no orphans."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from reasonq.processes import free_port, http_ok, wait_until
from tests.helpers import expected_text, read_events, submit, text_of, wait_status


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it has exited all the same
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][:1] != "Z"


def _start_up(data_dir: Path, port: int, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REASONQ_")}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "reasonq", "up", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**clean, **(env or {})},
            start_new_session=True,
        )


def _pids(log: Path) -> list[int]:
    return sorted({int(p) for p in re.findall(r"\(pid (\d+)", log.read_text())})


def _stop_up(proc: subprocess.Popen[bytes], log: Path) -> list[int]:
    pids = _pids(log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log.read_text()
    return pids


def _wait_running(log: Path, proc: subprocess.Popen[bytes]) -> None:
    def ready() -> bool:
        assert proc.poll() is None, log.read_text()
        return "reasonq: running; Ctrl-C" in log.read_text()

    wait_until(ready, timeout_s=90, what="reasonq up")


def test_up_serves_keeps_data_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "up.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start_up(data_dir, port, log)
    try:
        _wait_running(log, proc)
        # `running` is said only once the API is ready (Redis, broker and a worker's heartbeat)
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
        text = log.read_text()
        assert "SIMULATED model" in text and f"{base}/docs" in text and "curl" in text
        prompt = "up sim:reasoning_tokens=20 sim:content_tokens=10 sim:tokens_per_s=0"
        with httpx.Client(base_url=base, timeout=10) as client:
            gid = submit(client, prompt)
            record = wait_status(client, gid, {"completed"}, timeout_s=30)
        assert (record["reasoning"], record["content"]) == expected_text(prompt)
        assert record["simulated"] is True  # served by the simulator, and labelled so
    finally:
        pids = _stop_up(proc, log)
    assert len(pids) == 5  # redis-server, simulator, worker, batch worker, API
    wait_until(lambda: not [p for p in pids if _alive(p)], timeout_s=5, what="every child gone")
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


def test_output_is_ordered_and_quiet(tmp_path: Path) -> None:
    """Issue 11: per-request httpx INFO lines, the OPEN MODE warning between `try it:` and its commands, no
    browser URL."""
    log = tmp_path / "up.log"
    port = free_port()
    proc = _start_up(tmp_path / "data", port, log)
    try:
        _wait_running(log, proc)
    finally:
        _stop_up(proc, log)
    lines = log.read_text().splitlines()
    assert not [line for line in lines if "HTTP Request:" in line]
    index = {
        key: next(i for i, line in enumerate(lines) if key in line)
        for key in ("celery@", "OPEN MODE (no", "try it:", "running; Ctrl-C")
    }
    assert index["celery@"] < index["OPEN MODE (no"] < index["try it:"] < index["running; Ctrl-C"]
    assert lines[index["try it:"] + 1].lstrip().startswith("curl")
    assert any(f"http://127.0.0.1:{port}/ " in line for line in lines)  # the browser page


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        log = tmp_path / "up.log"
        proc = _start_up(tmp_path / "data", port, log)
        assert proc.wait(30) == 2
    text = log.read_text()
    assert f"API port {port} on 127.0.0.1 is already in use" in text and "--port" in text
    assert _pids(log) == []  # nothing was started
    assert "Traceback" not in text


def test_a_data_dir_in_use_is_refused_naming_its_holder(tmp_path: Path) -> None:
    """Issue 11: a second `reasonq up` on the same data dir started a second redis-server on the same
    append-only file."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    holder = data_dir / "reasonq-up.lock"
    with holder.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write("424242\n")
        f.flush()
        log = tmp_path / "up.log"
        proc = _start_up(data_dir, free_port(), log)
        assert proc.wait(30) == 2
    text = log.read_text()
    assert f"data dir {data_dir} is in use by another `reasonq up` (pid 424242)" in text
    assert _pids(log) == [424242] and not (data_dir / "redis").exists()  # only the holder named


def test_a_configuration_error_is_one_line(tmp_path: Path) -> None:
    for env, expected in (
        (
            {"REASONQ_API_KEYS": "alice:short"},
            "reasonq: REASONQ_API_KEYS entry 1: the secret must be at least 16 characters",
        ),
        ({"REASONQ_RETENTION_S": "a day"}, "reasonq: REASONQ_RETENTION_S: Input should be a valid integer"),
    ):
        log = tmp_path / "up.log"
        log.unlink(missing_ok=True)
        proc = _start_up(tmp_path / "data", free_port(), log, env)
        assert proc.wait(30) == 2
        output = log.read_text().strip().splitlines()
        assert len(output) == 1 and output[0].startswith(expected), output
        assert "short" not in output[0]  # never the value: it may be a secret


def test_a_child_dying_at_start_is_named_with_its_last_lines(tmp_path: Path) -> None:
    """Issue 11: `reasonq up` had printed `running` when its workers died 7 s later; now a child that dies
    while starting makes it exit non-zero, naming the child and quoting what it said."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(
        "import sys\n"
        "if sys.argv[1:2] == ['worker'] and '--queues' in sys.argv:\n"
        "    print('boom: injected start-up failure', flush=True)\n"
        "    import os; os._exit(3)\n"
    )
    log = tmp_path / "up.log"
    proc = _start_up(tmp_path / "data", free_port(), log, {"PYTHONPATH": str(inject)})
    assert proc.wait(90) == 1
    text = log.read_text()
    assert "running; Ctrl-C" not in text
    assert "could not start: batch-worker exited with code 3" in text
    assert "  boom: injected start-up failure" in text  # quoted from the child's own output
    pids = _pids(log)
    wait_until(lambda: not [p for p in pids if _alive(p)], timeout_s=10, what="every child gone")


def test_ctrl_c_waits_then_hands_back_and_the_next_start_continues(tmp_path: Path) -> None:
    """Issue 11: after Ctrl-C the generation came back as `worker_lost`, attempt 2, after 23 s of silence (the
    worker was SIGKILLed at its grace, mid-hand-back). Now Ctrl-C says what it waits for, a second Ctrl-C hands
    back at once, and the next start continues it as `restart worker_shutdown`."""
    data_dir, log = tmp_path / "data", tmp_path / "up.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    prompt = "up handback sim:reasoning_tokens=600 sim:content_tokens=20 sim:tokens_per_s=40"
    proc = _start_up(data_dir, port, log)
    try:
        _wait_running(log, proc)
        with httpx.Client(base_url=base, timeout=10) as client:
            gid = submit(client, prompt)
            wait_until(
                lambda: client.get(f"/v1/generations/{gid}").json()["reasoning"] != "", timeout_s=30, what="tokens"
            )
        proc.send_signal(signal.SIGINT)
        wait_until(lambda: "waiting up to" in log.read_text(), timeout_s=10, what="the waiting message")
        assert "waiting up to 20 s for 1 running generation; Ctrl-C again to hand it back now" in log.read_text()
        asked_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, log.read_text()
        assert time.monotonic() - asked_at < 10  # at once, not after the grace
        assert "handing back now" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    log = tmp_path / "up-again.log"
    proc = _start_up(data_dir, port, log)
    try:
        _wait_running(log, proc)
        with httpx.Client(base_url=base, timeout=10) as client:
            record = wait_status(client, gid, {"completed", "failed"}, timeout_s=60)
            events = read_events(client, gid)
        assert record["status"] == "completed" and record["attempt"] == 2
        restarts = [e.data for e in events if e.type == "restart"]
        assert restarts == [{"attempt": 2, "reason": "worker_shutdown"}]
        assert text_of(events) == expected_text(prompt)  # the second attempt's text, exactly
    finally:
        _stop_up(proc, log)
