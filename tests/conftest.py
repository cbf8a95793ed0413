"""The suite's real parts: its own redis-server on a free port, the simulator, a Celery worker, the API."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from reasonq.processes import ManagedProcess, RedisServer, free_port, http_ok, wait_until
from reasonq.shared.redis import create_redis
from reasonq.shared.store import GenerationStore
from reasonq.topologies import LocalCluster

# Shows up in every error path test: it must never leak into events, records or logs.
MODEL_API_KEY = "sk-test-SECRET-0123456789abcdef"


def python_m(*args: str) -> list[str]:
    return [sys.executable, "-m", "reasonq", *args]


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"), persist=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of the module's own. For API processes whose shared schedules (the Durable Streams
    subscriptions' due set) must not be served by the session's long-lived API processes, which run other
    settings (the ``keyed`` API refuses loopback webhooks that these tests' receivers listen on)."""
    server = RedisServer(free_port(), tmp_path_factory.mktemp("own-redis"), persist=False).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def unit_redis_url(redis_server: RedisServer) -> str:
    """Database 1 of the suite's redis-server: unit tests of store, hub and writer, away from the workers'
    recovery sweeps, which watch database 0."""
    return redis_server.url.removesuffix("/0") + "/1"


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A Redis Cluster of 3 masters with a replica each (issue 13), started on first use."""
    c = LocalCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield c
    c.stop()


@pytest.fixture(params=["one-redis", "redis-cluster"])
def store_url(request: pytest.FixtureRequest) -> str:
    """A unit test's Redis, as a single server and as a Cluster: every script and call site of the store runs on
    both, so a key of another slot fails the Cluster case (``CROSSSLOT``)."""
    if request.param == "one-redis":
        return str(request.getfixturevalue("unit_redis_url"))
    return str(request.getfixturevalue("redis_cluster").url)


T = TypeVar("T")


@pytest.fixture
def with_store(store_url: str) -> Callable[[Callable[[GenerationStore], Awaitable[T]]], T]:
    """Runs ``body(store)`` on a fresh store over ``store_url`` (one server, then a Cluster), closing it after."""

    def run(body: Callable[[GenerationStore], Awaitable[T]]) -> T:
        async def main() -> T:
            redis = create_redis(store_url, max_connections=8)
            try:
                return await body(GenerationStore(redis))
            finally:
                await redis.aclose()

        return asyncio.run(main())

    return run


@pytest.fixture(scope="session")
def sim_url(logs_dir: Path) -> Iterator[str]:
    port = free_port()
    sim = ManagedProcess(
        "simulator", python_m("sim", "--port", str(port), "--tokens-per-s", "0"), log_path=logs_dir / "sim.log"
    ).start()
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/healthz"), timeout_s=20, what="simulator", process=sim)
    yield url
    sim.stop()


@pytest.fixture(scope="session")
def stack_env(redis_server: RedisServer, sim_url: str) -> dict[str, str]:
    return {
        "REASONQ_REDIS_URL": redis_server.url,
        "REASONQ_BROKER_URL": redis_server.url,
        "REASONQ_MODEL_BASE_URL": f"{sim_url}/v1",
        "REASONQ_MODEL_API_KEY": MODEL_API_KEY,
        "REASONQ_MODEL_SIMULATED": "true",  # the simulator serves every test: the pages label it
        "REASONQ_SSE_PING_S": "1",
        "REASONQ_LEASE_TTL_S": "3",
        "REASONQ_SWEEP_INTERVAL_S": "0.5",
        "REASONQ_PROVIDER_MAX_RETRIES": "2",
        "REASONQ_PROVIDER_BACKOFF_S": "0.05",
    }


class WorkerFactory:
    """Starts Celery worker processes for a test and stops every one of them afterwards."""

    def __init__(self, env: dict[str, str], logs_dir: Path) -> None:
        self.env = env
        self.logs_dir = logs_dir
        self.started: list[ManagedProcess] = []

    def __call__(
        self, name: str = "w", *, concurrency: int = 50, env: dict[str, str] | None = None, queues: str = ""
    ) -> ManagedProcess:
        n = len(self.started)
        extra = ["--queues", queues] if queues else []
        worker = ManagedProcess(
            f"worker-{name}-{n}",
            python_m("worker", "--concurrency", str(concurrency), "--hostname", f"{name}{n}@%h", *extra),
            {**self.env, **(env or {})},
            log_path=self.logs_dir / f"worker-{name}-{n}.log",
        ).start()
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop(15)


@pytest.fixture(scope="session")
def session_worker(stack_env: dict[str, str], logs_dir: Path) -> Iterator[ManagedProcess]:
    factory = WorkerFactory(stack_env, logs_dir)
    worker = factory("session", queues="reasonq,reasonq-batch")  # interactive and batch queues
    yield worker
    factory.stop_all()


@pytest.fixture(scope="session")
def api_url(stack_env: dict[str, str], logs_dir: Path, session_worker: ManagedProcess) -> Iterator[str]:
    port = free_port()
    api = ManagedProcess("api", python_m("api", "--port", str(port)), stack_env, log_path=logs_dir / "api.log").start()
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/healthz"), timeout_s=30, what="API", process=api)
    yield url
    api.stop()


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as c:
        yield c


class Cluster:
    """An API and workers on a private Celery queue (so tests can kill workers without touching others).

    Args:
        env: the stack's environment plus overrides.
        logs_dir: where process logs go.
        name: label for logs and the queue name.
    """

    def __init__(self, env: dict[str, str], logs_dir: Path, name: str) -> None:
        import secrets

        queue = f"test-{name}-{secrets.token_hex(3)}"
        self.env = {**env, "REASONQ_QUEUE_NAME": queue}
        self.queue = queue
        self.workers = WorkerFactory(self.env, logs_dir)
        self.logs_dir = logs_dir
        self.name = name
        self.api: ManagedProcess | None = None
        self.api_port = free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.more_apis: list[ManagedProcess] = []

    def start_api(self) -> str:
        self.api = ManagedProcess(
            f"api-{self.name}",
            python_m("api", "--port", str(self.api_port)),
            self.env,
            log_path=self.logs_dir / f"api-{self.name}.log",
        ).start()
        wait_until(lambda: http_ok(f"{self.url}/healthz"), timeout_s=30, what="API", process=self.api)
        return self.url

    def add_api(self) -> str:
        """Another API process over the same Redis and queue; returns its URL."""
        port = free_port()
        api = ManagedProcess(
            f"api-{self.name}-{port}",
            python_m("api", "--port", str(port)),
            self.env,
            log_path=self.logs_dir / f"api-{self.name}-{port}.log",
        ).start()
        self.more_apis.append(api)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(f"{url}/healthz"), timeout_s=30, what="API", process=api)
        return url

    def add_worker(self, concurrency: int = 50, env: dict[str, str] | None = None, queues: str = "") -> ManagedProcess:
        worker = self.workers(self.name, concurrency=concurrency, env=env, queues=queues)
        log = worker.log_path
        assert log is not None
        wait_until(lambda: "ready" in log.read_text(errors="replace"), timeout_s=30, what="worker", process=worker)
        return worker

    def stop(self) -> None:
        self.workers.stop_all()
        for api in [*self.more_apis, *([self.api] if self.api else [])]:
            api.stop()


@pytest.fixture
def cluster(stack_env: dict[str, str], logs_dir: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A factory of private clusters, stopped after the test: ``cluster(env_overrides)``."""
    made: list[Cluster] = []

    def make(overrides: dict[str, str] | None = None, redis_url: str | None = None) -> Cluster:
        env = {**stack_env, **(overrides or {})}
        if redis_url:
            env |= {"REASONQ_REDIS_URL": redis_url, "REASONQ_BROKER_URL": redis_url}
        c = Cluster(env, logs_dir, f"{request.node.name[:20]}-{len(made)}".replace("[", "-").replace("]", ""))
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


# Client keys of the ``keyed`` deployment (bob's is configured by its SHA-256 only).
ALICE = "alice-secret-0123456789"
BOB = "bob-secret-0123456789abc"
CAROL = "carol-secret-0123456789"
DAVE = "dave-secret-0123456789ab"
KEY_LIMITS = {
    "carol": {"rpm": 3, "max_tokens": 500, "models": ["reasonq-sim"]},
    "dave": {"concurrent": 1},
}


@pytest.fixture(scope="session")
def keyed(stack_env: dict[str, str], logs_dir: Path) -> Iterator[Cluster]:
    """An API and a worker with REASONQ_API_KEYS set (alice, bob, carol and dave; carol and dave limited)."""
    import hashlib

    import orjson

    bob_digest = hashlib.sha256(BOB.encode()).hexdigest()
    env = {
        **stack_env,
        "REASONQ_API_KEYS": f"alice:{ALICE}, bob:sha256:{bob_digest}, carol:{CAROL}, dave:{DAVE}",
        "REASONQ_KEY_LIMITS": orjson.dumps(KEY_LIMITS).decode(),
    }
    c = Cluster(env, logs_dir, "keyed")
    c.start_api()
    c.add_worker()
    yield c
    c.stop()
