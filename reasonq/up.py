"""``reasonq up``: one command that runs a whole reasonq on this machine and stops it cleanly.

It refuses to start on a port or a data dir already in use, says ``running`` only once every child is healthy
(the workers consuming, the API ready), and exits non-zero naming a child that dies, with its last lines.
Ctrl-C first lets running generations finish for ``REASONQ_SHUTDOWN_GRACE_S``; a second Ctrl-C hands them
back at once, and they continue on the next start (``restart`` event, reason ``worker_shutdown``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import IO

import httpx

from reasonq.processes import ManagedProcess, RedisServer, free_port, http_ok
from reasonq.shared.errors import ConfigurationError, ReasonqError
from reasonq.shared.settings import Settings, get_settings

# A worker hands back what is still running when its grace ends; it needs a moment more than the grace to do
# so and exit (a stop timeout equal to the grace SIGKILLed workers mid-hand-back, issue 18).
WORKER_EXIT_MARGIN_S = 15.0
START_TIMEOUT_S = 60.0
LOCK_NAME = "reasonq-up.lock"


class StartupError(ReasonqError):
    """A child did not come up; the message names it (and the caller quotes its last lines)."""

    def __init__(self, message: str, process: ManagedProcess | None = None) -> None:
        super().__init__(message)
        self.process = process


class _Stop:
    """Counts SIGINT/SIGTERM: the first asks for a graceful stop, the second for handing back at once."""

    def __init__(self) -> None:
        self.count = 0
        self.event = threading.Event()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        self.event.set()


def _python_m(*args: str) -> list[str]:
    return [sys.executable, "-m", "reasonq", *args]


def _say(message: str, stream: IO[str] | None = None) -> None:
    print(f"reasonq: {message}", file=stream or sys.stdout, flush=True)


_print_lock = threading.Lock()


def _relay_line(process: ManagedProcess, line: str) -> None:
    with _print_lock:
        print(f"{process.name:<12} | {line}", flush=True)


def check_port_free(host: str, port: int, what: str) -> None:
    """Refuse a port something already listens on (before anything starts)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is not "in use"
        try:
            s.bind((host, port))
        except OSError as e:
            flag = "--redis-port" if what == "Redis" else "--port"
            raise ConfigurationError(
                f"{what} port {port} on {host} is already in use ({e.strerror}); stop what uses it, or pass {flag}"
            ) from e


@contextlib.contextmanager
def lock_data_dir(data_dir: Path) -> Iterator[None]:
    """Hold ``data_dir`` for this process: a second ``reasonq up`` on it is refused, naming the holder's pid.

    An ``flock`` (released by the kernel however this process ends) guards a file that names the pid, so a
    stale file left by a killed ``reasonq up`` never blocks the next one.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise ConfigurationError(
                f"data dir {data_dir} is in use by another `reasonq up` (pid {holder}); stop it, or pass --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (it names no live holder once unlocked)


def _wait_ready(check: Callable[[], bool], what: str, process: ManagedProcess, stop: _Stop) -> bool:
    """Poll ``check`` until true; ``False`` if a stop was asked for; a dead child or a timeout raises."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not check():
        if stop.count:
            return False
        if not process.alive():
            raise StartupError(f"{process.name} exited with code {process.proc and process.proc.returncode}", process)
        if time.monotonic() > deadline:
            raise StartupError(f"{what} not ready after {START_TIMEOUT_S:.0f} s", process)
        time.sleep(0.05)
    return True


def _health_check(port: int) -> Callable[[], bool]:
    return lambda: http_ok(f"http://127.0.0.1:{port}/healthz")


def _running_generations(health_ports: list[int]) -> int:
    total = 0
    for port in health_ports:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            total += int(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).json()["running"])
    return total


class Up:
    """The processes of one ``reasonq up`` and their start and stop order."""

    def __init__(self, args: argparse.Namespace, settings: Settings) -> None:
        self.args = args
        self.settings = settings
        self.data_dir = Path(args.data_dir).resolve()
        self.logs_dir = self.data_dir / "logs"
        self.stop = _Stop()
        self.workers: list[ManagedProcess] = []
        self.others: list[ManagedProcess] = []  # started in order: redis-server, simulator, API
        self.health_ports: list[int] = []

    def _child(self, name: str, argv: list[str], env: dict[str, str]) -> ManagedProcess:
        # Each child's lines are relayed with its name (its log, for the operator) and kept in <data dir>/logs/.
        return ManagedProcess(name, argv, env, log_path=self.logs_dir / f"{name}.log", on_line=_relay_line).start()

    def start(self) -> bool:
        """Start every child and wait until each is healthy; ``False`` if a stop was asked for meanwhile."""
        args, settings, stop = self.args, self.settings, self.stop
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        redis_server = RedisServer(args.redis_port or free_port(), self.data_dir / "redis").start()
        self.others.append(redis_server)
        _say(f"redis-server (pid {redis_server.pid}) on {redis_server.url}, data in {self.data_dir / 'redis'}")
        env = {"REASONQ_REDIS_URL": redis_server.url, "REASONQ_BROKER_URL": redis_server.url}
        if not settings.provider_routes.providers:  # no model_base_url, no REASONQ_PROVIDERS: the simulator
            sim_port = free_port()
            sim = self._child("simulator", _python_m("sim", "--port", str(sim_port)), {})
            self.others.append(sim)
            if not _wait_ready(lambda: http_ok(f"http://127.0.0.1:{sim_port}/healthz"), "simulator", sim, stop):
                return False
            env |= {
                "REASONQ_MODEL_BASE_URL": f"http://127.0.0.1:{sim_port}/v1",
                "REASONQ_MODEL_API_KEY": "simulator",
                "REASONQ_DEFAULT_MODEL": "reasonq-sim",
                "REASONQ_MODEL_SIMULATED": "true",
            }
            _say(
                f"no REASONQ_MODEL_BASE_URL set: using the built-in SIMULATED model (pid {sim.pid}, port {sim_port}); "
                "its output is not from a real model"
            )
        # Batch generations have their own queue and worker, so a long batch never delays interactive work.
        batch_args = ["--queues", settings.batch_queue_name, "--hostname", "batch@%h"]
        for name, extra in (("worker", []), ("batch-worker", batch_args)):
            port = free_port()
            self.health_ports.append(port)
            worker = self._child(name, _python_m("worker", *extra), env | {"REASONQ_WORKER_HEALTH_PORT": str(port)})
            self.workers.append(worker)
        for worker, port in zip(self.workers, self.health_ports, strict=True):
            if not _wait_ready(_health_check(port), worker.name, worker, stop):
                return False
        _say(
            f"worker (pid {self.workers[0].pid}) and batch worker (pid {self.workers[1].pid}) consuming; "
            f"health on http://127.0.0.1:{self.health_ports[0]}/healthz and :{self.health_ports[1]}/healthz"
        )
        api = self._child(
            "api",
            _python_m("api", "--host", args.host, "--port", str(args.port), "--workers", str(args.api_workers)),
            env,
        )
        self.others.append(api)
        base = f"http://{args.host}:{args.port}"
        if not _wait_ready(lambda: http_ok(f"{base}/readyz"), "API", api, stop):
            return False
        self._announce(base, api)
        return True

    def _announce(self, base: str, api: ManagedProcess) -> None:
        _say(f"API (pid {api.pid}) on {base}")
        keyed = bool(self.settings.api_keys.get_secret_value())
        if not keyed:
            _say("OPEN MODE (no REASONQ_API_KEYS): anyone who can reach the API can use it")
        _say(f"in a browser: {base}/   API docs: {base}/docs   logs: {self.logs_dir}")
        auth = " -H 'authorization: Bearer <key>'" if keyed else ""
        _say("try it:")
        print(f"  curl -s {base}/v1/generations{auth} -H 'content-type: application/json' \\")
        print('       -d \'{"messages":[{"role":"user","content":"Why is the sky blue?"}]}\'')
        print(f"  curl -N {base}/v1/generations/<id>/events{auth}")
        _say("running; Ctrl-C stops everything")

    def watch(self) -> int:
        """Until a stop is asked for: 0, or 1 (naming it) if a child exits by itself."""
        while not self.stop.event.wait(0.2):
            dead = [p for p in [*self.others, *self.workers] if not p.alive()]
            if dead:
                self._report_dead(dead[0], "exited unexpectedly")
                return 1
        return 0

    def _report_dead(self, process: ManagedProcess, what: str) -> None:
        code = process.proc.returncode if process.proc else None
        _say(f"{process.name} (pid {process.pid}) {what} with code {code}; its last lines:", sys.stderr)
        for line in process.last_lines()[-10:]:
            print(f"  {line}", file=sys.stderr)

    def shutdown(self) -> None:
        """Stop the workers first (grace, then hand back), then the API, the simulator and redis-server."""
        grace_s = self.settings.shutdown_grace_s
        live = [w for w in self.workers if w.alive()]
        if live:
            running = _running_generations(self.health_ports)
            for worker in live:
                worker.signal(signal.SIGTERM)
            terms_sent = 1
            if running:
                noun = "generation" if running == 1 else "generations"
                _say(
                    f"waiting up to {grace_s:.0f} s for {running} running {noun}; "
                    f"Ctrl-C again to hand {'it' if running == 1 else 'them'} back now"
                )
            deadline = time.monotonic() + grace_s + WORKER_EXIT_MARGIN_S
            last_term = time.monotonic()
            while any(w.alive() for w in live) and time.monotonic() < deadline:
                # After a second Ctrl-C, a SIGTERM every second until the workers exit: a draining worker hands
                # its generations back on the next one. Signals sent close together can merge into one (under
                # load the worker may not have run its handler for the first yet), so one resend is not enough.
                if self.stop.count >= 2 and time.monotonic() - last_term >= (0.2 if terms_sent == 1 else 1.0):
                    if terms_sent == 1:
                        _say("handing back now; they continue on the next start")
                    for worker in live:
                        worker.signal(signal.SIGTERM)
                    terms_sent += 1
                    last_term = time.monotonic()
                time.sleep(0.05)
        for proc in [*self.workers, *reversed(self.others)]:
            if proc.proc is not None:
                rc = proc.stop(10.0)
                _say(f"stopped {proc.name} (pid {proc.pid}, exit {rc})")
        _say("all processes stopped")


def run_up(args: argparse.Namespace) -> int:
    """Start redis-server, the simulator (when no model is configured), the workers and the API; stop on a signal."""
    settings = get_settings()
    check_port_free(args.host, args.port, "API")
    if args.redis_port:
        check_port_free("127.0.0.1", args.redis_port, "Redis")
    up = Up(args, settings)
    with lock_data_dir(up.data_dir):
        signal.signal(signal.SIGINT, up.stop)
        signal.signal(signal.SIGTERM, up.stop)
        code = 0
        try:
            if up.start():
                code = up.watch()
        except StartupError as e:
            _say(f"could not start: {e}", sys.stderr)
            if e.process is not None:
                for line in e.process.last_lines()[-10:]:
                    print(f"  {line}", file=sys.stderr)
            code = 1
        except (ConfigurationError, OSError, RuntimeError, TimeoutError) as e:
            _say(f"could not start: {e}", sys.stderr)
            code = 1
        finally:
            up.shutdown()
    return code
