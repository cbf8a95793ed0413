"""The suite's real parts: its own redis-server on a free port, the simulator, a Celery worker, the API."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reasonq.processes import ManagedProcess, RedisServer, free_port, http_ok, wait_until

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
        "REASONQ_SSE_PING_S": "1",
        "REASONQ_LEASE_TTL_S": "3",
    }


class WorkerFactory:
    """Starts Celery worker processes for a test and stops every one of them afterwards."""

    def __init__(self, env: dict[str, str], logs_dir: Path) -> None:
        self.env = env
        self.logs_dir = logs_dir
        self.started: list[ManagedProcess] = []

    def __call__(self, name: str = "w", *, concurrency: int = 50, env: dict[str, str] | None = None) -> ManagedProcess:
        n = len(self.started)
        worker = ManagedProcess(
            f"worker-{name}-{n}",
            python_m("worker", "--concurrency", str(concurrency), "--hostname", f"{name}{n}@%h"),
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
    worker = factory("session")
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
