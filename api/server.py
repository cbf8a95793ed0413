"""The uvicorn server of ``reasonq api``: its configuration, and a shutdown that ends streams before it waits."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import socket
import sys
import threading
import time
from types import FrameType
from typing import Any

import uvicorn

from reasonq.api.protocol import GuardedHttpToolsProtocol
from reasonq.processes import die_with_parent

# uvicorn's exit status when the app failed to start.
STARTUP_FAILURE = 3
# A process of several that exits with STARTUP_FAILURE this soon after its start could not start at all.
STARTUP_WINDOW_S = 30.0
# How long one of several processes may take to drain and stop before it is killed (its graceful shutdown is 5 s).
SHUTDOWN_WAIT_S = 15.0


class DrainingServer(uvicorn.Server):
    """On SIGTERM or Ctrl-C, tell the hub to end every event stream before uvicorn waits for connections to close.

    uvicorn closes the listening socket, waits up to ``timeout_graceful_shutdown`` for open responses to finish,
    then cancels them, and only after that runs the lifespan shutdown: a live event stream never finishes by
    itself, so every viewer was cut bare (issue 12: the openai SDK raised ``APIConnectionError``). Draining first,
    native streams end with a ``retry`` hint and chat streams with an error chunk that says where to read on.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        from reasonq.api.main import app

        hub = getattr(app.state, "hub", None)
        if hub is not None:
            hub.drain_soon()  # from a signal handler: scheduled on the loop, not run in the middle of it
        super().handle_exit(sig, frame)


def _config(host: str, port: int, *, log_level: str, access_log: bool, backlog: int) -> uvicorn.Config:
    return uvicorn.Config(
        "reasonq.api.main:app",
        host=host,
        port=port,
        loop="uvloop",
        http=GuardedHttpToolsProtocol,
        log_level=log_level,
        log_config=None,  # uvicorn's loggers go through reasonq's handler (plain or JSON lines)
        access_log=access_log,
        timeout_graceful_shutdown=5,
        backlog=backlog,
    )


def run_api(host: str, port: int, *, log_level: str, access_log: bool, backlog: int, workers: int = 1) -> None:
    """Serve the API until a signal stops it; with ``workers`` > 1, that many processes on the port (see
    ``_supervise``)."""
    options = {"log_level": log_level, "access_log": access_log, "backlog": backlog}
    if workers > 1:
        _supervise(host, port, options, workers)
        return
    config = _config(host, port, **options)  # type: ignore[arg-type]
    config.load_app()
    server = DrainingServer(config)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _serve_one(host: str, port: int, options: dict[str, Any]) -> None:
    """One API process of several: its own socket on the shared port (SO_REUSEPORT: the kernel spreads new
    connections evenly over the processes), its own hub, the same shutdown as a single process."""
    die_with_parent()
    config = _config(host, port, **options)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(options["backlog"])
    config.load_app()
    server = DrainingServer(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _supervise(host: str, port: int, options: dict[str, Any], workers: int) -> None:
    """Run ``workers`` API processes on one port (issue 13: the API used one core whatever the host had).

    Each has its own hub; viewer counts, share secrets and per-key limits live in Redis and hold across them. A
    process that dies is started again; one that cannot start stops them all (exit status 3, as one process). On
    SIGTERM or Ctrl-C every process drains its streams and stops.
    """
    log = logging.getLogger("reasonq.api")
    context = multiprocessing.get_context("spawn")  # no fork of a process that has imported the app's threads

    def start(i: int) -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_serve_one, args=(host, port, options), name=f"reasonq-api-{i}")
        process.start()
        return process

    processes = [start(i) for i in range(workers)]
    started_at = [time.monotonic()] * workers
    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.set()
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    log.info("%d API processes on %s:%d", workers, host, port)
    exit_status = 0
    try:
        while not stopping.wait(0.5):
            for i, process in enumerate(processes):
                if process.is_alive():
                    continue
                if process.exitcode == STARTUP_FAILURE and time.monotonic() - started_at[i] < STARTUP_WINDOW_S:
                    log.error("API process %d could not start; stopping", i)
                    exit_status = STARTUP_FAILURE
                    stop(signal.SIGTERM, None)
                    break
                log.warning("API process %d exited (code %s); starting it again", i, process.exitcode)
                processes[i], started_at[i] = start(i), time.monotonic()
    finally:
        for process in processes:
            process.join(SHUTDOWN_WAIT_S)
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if exit_status:
        sys.exit(exit_status)
