"""A whole reasonq (redis-server, simulator, worker, API) on free ports, for one benchmark run."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from types import TracebackType

import httpx

from reasonq.processes import ManagedProcess, RedisServer, free_port, http_ok, wait_until


class Stack:
    """Starts every part with ``env`` overrides; a context manager that stops them all by pid.

    Args:
        sim_tokens_per_s: the simulator's default rate (0 = unlimited).
        env: extra REASONQ_* settings for the worker and API.
    """

    def __init__(self, sim_tokens_per_s: float = 0, env: dict[str, str] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="reasonq-bench-"))
        self.sim_tokens_per_s = sim_tokens_per_s
        self.extra_env = env or {}
        self.procs: list[ManagedProcess] = []
        self.redis: RedisServer | None = None
        self.api_url = ""

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        self.redis = RedisServer(free_port(), self.dir / "redis", persist=False).start()
        self.procs.append(self.redis)
        sim_port = free_port()
        sim = ManagedProcess(
            "simulator",
            [
                sys.executable,
                "-m",
                "reasonq",
                "sim",
                "--port",
                str(sim_port),
                "--tokens-per-s",
                str(self.sim_tokens_per_s),
            ],
            log_path=self.dir / "sim.log",
        ).start()
        self.procs.append(sim)
        wait_until(lambda: http_ok(f"http://127.0.0.1:{sim_port}/healthz"), timeout_s=20, what="sim", process=sim)
        env = {
            "REASONQ_REDIS_URL": self.redis.url,
            "REASONQ_MODEL_BASE_URL": f"http://127.0.0.1:{sim_port}/v1",
            "REASONQ_MODEL_API_KEY": "bench",
            **self.extra_env,
        }
        worker = ManagedProcess(
            "worker",
            [sys.executable, "-m", "reasonq", "--log-level", "WARNING", "worker"],
            env,
            log_path=self.dir / "worker.log",
        ).start()
        self.procs.append(worker)
        api_port = free_port()
        api = ManagedProcess(
            "api",
            [sys.executable, "-m", "reasonq", "--log-level", "WARNING", "api", "--port", str(api_port)],
            env,
            log_path=self.dir / "api.log",
        ).start()
        self.procs.append(api)
        self.api_url = f"http://127.0.0.1:{api_port}"
        wait_until(lambda: http_ok(f"{self.api_url}/healthz"), timeout_s=30, what="API", process=api)
        self._wait_worker_ready(worker)

    def _wait_worker_ready(self, worker: ManagedProcess) -> None:
        body = {"messages": [{"role": "user", "content": "warm-up sim:reasoning_tokens=1 sim:content_tokens=1"}]}
        gid = httpx.post(f"{self.api_url}/v1/generations", json=body, timeout=10).json()["id"]

        def completed() -> bool:
            status = httpx.get(f"{self.api_url}/v1/generations/{gid}", timeout=10).json()["status"]
            return status == "completed"

        wait_until(completed, timeout_s=60, what="worker", process=worker)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for proc in reversed(self.procs):
            proc.stop(15)
