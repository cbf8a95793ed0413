"""A whole reasonq (redis-server, simulator, worker, API) on free ports, for one benchmark run."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from types import TracebackType

import httpx

from reasonq.processes import ManagedProcess, RedisServer, free_port, http_ok, wait_until
from reasonq.topologies import LocalCluster


def _reasonq(*args: str) -> list[str]:
    return [sys.executable, "-m", "reasonq", "--log-level", "WARNING", *args]


class Stack:
    """Starts every part with ``env`` overrides; a context manager that stops them all by pid.

    Args:
        sim_tokens_per_s: the simulator's default rate (0 = unlimited).
        env: extra REASONQ_* settings for the worker and API.
        persist: Redis with an append-only file (for restart scenarios).
        cluster_masters: records on a local Redis Cluster of this many masters (``replicas`` each) instead of one
            server; the Celery broker stays one plain server (kombu cannot use a Cluster).
        worker: start a worker (off for scenarios that write generations' events themselves).
        api_workers: API processes on the port (``reasonq api --workers N``); ``api.pid`` is then their supervisor.
    """

    def __init__(
        self,
        sim_tokens_per_s: float = 0,
        env: dict[str, str] | None = None,
        persist: bool = False,
        *,
        cluster_masters: int = 0,
        replicas: int = 0,
        worker: bool = True,
        api_workers: int = 1,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="reasonq-bench-"))
        self.sim_tokens_per_s = sim_tokens_per_s
        self.extra_env = env or {}
        self.persist = persist
        self.procs: list[ManagedProcess] = []
        self.redis: RedisServer | None = None
        self.api: ManagedProcess | None = None
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.env: dict[str, str] = {}
        self.cluster_masters = cluster_masters
        self.replicas = replicas
        self.with_worker = worker
        self.api_workers = api_workers
        self.cluster: LocalCluster | None = None
        self.store_url = ""  # REASONQ_REDIS_URL: the one server's URL, or the Cluster's

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        self.redis = RedisServer(free_port(), self.dir / "redis", persist=self.persist).start()
        self.procs.append(self.redis)
        self.store_url = self.redis.url
        if self.cluster_masters:
            self.cluster = LocalCluster(self.dir / "cluster", masters=self.cluster_masters, replicas=self.replicas)
            self.procs += self.cluster.nodes
            self.cluster.start()
            self.store_url = self.cluster.url
        sim_port = free_port()
        sim = ManagedProcess(
            "simulator",
            _reasonq("sim", "--port", str(sim_port), "--tokens-per-s", str(self.sim_tokens_per_s)),
            log_path=self.dir / "sim.log",
        ).start()
        self.procs.append(sim)
        wait_until(lambda: http_ok(f"http://127.0.0.1:{sim_port}/healthz"), timeout_s=20, what="sim", process=sim)
        self.env = {
            "REASONQ_REDIS_URL": self.store_url,
            "REASONQ_BROKER_URL": self.redis.url,
            "REASONQ_MODEL_BASE_URL": f"http://127.0.0.1:{sim_port}/v1",
            "REASONQ_MODEL_API_KEY": "bench",
            **self.extra_env,
        }
        if not self.with_worker:
            self.start_api()
            return
        worker = self.add_worker()
        self.start_api()
        self._wait_worker_ready(worker)

    @property
    def auth_headers(self) -> dict[str, str]:
        """The first configured client key as a header (none in open mode)."""
        entries = self.extra_env.get("REASONQ_API_KEYS", "")
        if not entries:
            return {}
        return {"Authorization": f"Bearer {entries.split(',')[0].split(':', 1)[1]}"}

    def add_worker(self, queues: str = "") -> ManagedProcess:
        """Start one more worker process (on ``queues``, default the interactive queue)."""
        n = sum(p.name.startswith("worker") for p in self.procs)
        # INFO, so the log says when Celery is ready (a few lines per generation; none per token)
        argv = [sys.executable, "-m", "reasonq", "--log-level", "INFO", "worker"]
        if queues:
            argv += ["--queues", queues, "--hostname", f"batch{n}@%h"]
        worker = ManagedProcess(f"worker-{n}", argv, self.env, log_path=self.dir / f"worker-{n}.log")
        self.procs.append(worker.start())
        return worker

    def start_api(self) -> ManagedProcess:
        """Start the API (again) on its port and wait until it answers."""
        argv = _reasonq("api", "--port", str(self.api_port), "--workers", str(self.api_workers))
        api = ManagedProcess("api", argv, self.env, self.dir / "api.log")
        self.procs.append(api.start())
        self.api = api
        wait_until(lambda: http_ok(f"{self.api_url}/healthz"), timeout_s=30, what="API", process=api)
        return api

    def _wait_worker_ready(self, worker: ManagedProcess) -> None:
        body = {"messages": [{"role": "user", "content": "warm-up sim:reasoning_tokens=1 sim:content_tokens=1"}]}
        headers = self.auth_headers
        gid = httpx.post(f"{self.api_url}/v1/generations", json=body, headers=headers, timeout=10).json()["id"]

        def completed() -> bool:
            record = httpx.get(f"{self.api_url}/v1/generations/{gid}", headers=headers, timeout=10).json()
            return bool(record["status"] == "completed")

        wait_until(completed, timeout_s=60, what="worker", process=worker)

    def worker_ready(self, worker: ManagedProcess) -> None:
        """Wait until a worker started with ``add_worker`` consumes tasks."""
        log = self.dir / f"{worker.name}.log"
        wait_until(
            lambda: log.exists() and "ready" in log.read_text(errors="replace"),
            timeout_s=30,
            what=worker.name,
            process=worker,
        )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for proc in reversed(self.procs):
            proc.stop(30)
