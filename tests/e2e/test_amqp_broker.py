"""An amqp:// broker works as well as Redis (RabbitMQ on 127.0.0.1:5672 when the machine has one)."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reasonq.processes import ManagedProcess, free_port, http_ok, wait_until
from reasonq.shared.queue import create_celery
from reasonq.shared.settings import Settings
from tests.conftest import WorkerFactory, python_m
from tests.helpers import expected_text, read_events, submit

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def _rabbitmq_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def amqp_api(stack_env: dict[str, str], logs_dir: Path) -> Iterator[str]:
    if not _rabbitmq_reachable():
        pytest.skip("no RabbitMQ on 127.0.0.1:5672")
    queue = f"reasonq-test-{secrets.token_hex(4)}"
    env = {**stack_env, "REASONQ_BROKER_URL": AMQP_URL, "REASONQ_QUEUE_NAME": queue}
    workers = WorkerFactory(env, logs_dir)
    workers("amqp", concurrency=8)
    port = free_port()
    api = ManagedProcess("api-amqp", python_m("api", "--port", str(port)), env, logs_dir / "api-amqp.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}/healthz"), timeout_s=30, what="API", process=api)
        yield url
    finally:
        api.stop()
        workers.stop_all()
        app = create_celery(Settings(broker_url=AMQP_URL, queue_name=queue))  # type: ignore[call-arg]
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)


def test_generation_runs_through_rabbitmq(amqp_api: str) -> None:
    prompt = "amqp sim:reasoning_tokens=15 sim:content_tokens=10"
    with httpx.Client(base_url=amqp_api, timeout=30) as client:
        gid = submit(client, prompt)
        events = read_events(client, gid)
    assert events[-1].data["status"] == "completed"
    reasoning = "".join(e.data["delta"] for e in events if e.type == "reasoning")
    content = "".join(e.data["delta"] for e in events if e.type == "content")
    assert (reasoning, content) == expected_text(prompt)
