"""An amqp:// broker works as well as Redis (RabbitMQ on 127.0.0.1:5672 when the machine has one)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reasonq.processes import ManagedProcess, free_port, http_ok, wait_until
from tests.conftest import WorkerFactory, python_m
from tests.helpers import expected_text, read_events, submit


def _rabbitmq_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def amqp_vhost() -> Iterator[str]:
    """A vhost of the test's own on the machine's RabbitMQ (deleted afterwards, queues and all); its URL."""
    if not _rabbitmq_reachable() or shutil.which("rabbitmqctl") is None:
        if os.environ.get("CI") == "true":  # issue 18: in CI a missing broker is a failure, not a skip
            pytest.fail("CI=true but no RabbitMQ (with rabbitmqctl) on 127.0.0.1:5672")
        pytest.skip("no RabbitMQ on 127.0.0.1:5672")
    vhost = f"reasonq-test-{secrets.token_hex(4)}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def amqp_api(stack_env: dict[str, str], logs_dir: Path, amqp_vhost: str) -> Iterator[str]:
    queue = f"reasonq-test-{secrets.token_hex(4)}"
    env = {**stack_env, "REASONQ_BROKER_URL": amqp_vhost, "REASONQ_QUEUE_NAME": queue}
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


def test_generation_runs_through_rabbitmq(amqp_api: str) -> None:
    prompt = "amqp sim:reasoning_tokens=15 sim:content_tokens=10"
    with httpx.Client(base_url=amqp_api, timeout=30) as client:
        gid = submit(client, prompt)
        events = read_events(client, gid)
    assert events[-1].data["status"] == "completed"
    reasoning = "".join(e.data["delta"] for e in events if e.type == "reasoning")
    content = "".join(e.data["delta"] for e in events if e.type == "content")
    assert (reasoning, content) == expected_text(prompt)


def test_issue12_a_queue_declared_with_other_arguments_is_named_not_a_500(
    stack_env: dict[str, str], logs_dir: Path, amqp_vhost: str
) -> None:
    """Before: with the interactive queue already declared as a quorum queue, the worker died with
    ``PreconditionFailed 406`` and a traceback, and ``POST`` answered 500. After: the worker refuses to start in
    one line naming the queue and what to do; ``POST`` answers 503 naming the broker's refusal."""
    import amqp

    queue = f"reasonq-test-{secrets.token_hex(4)}"
    vhost = amqp_vhost.rsplit("/", 1)[1]
    with amqp.Connection("127.0.0.1:5672", userid="guest", password="guest", virtual_host=vhost) as conn:
        conn.channel().queue_declare(queue, durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"})
    env = {**stack_env, "REASONQ_BROKER_URL": amqp_vhost, "REASONQ_QUEUE_NAME": queue}
    worker = subprocess.run(python_m("worker"), env=env, capture_output=True, text=True, timeout=60)
    assert worker.returncode != 0
    assert f"the broker already has the queue '{queue}'" in worker.stderr and "Traceback" not in worker.stderr
    assert "guest:guest" not in worker.stderr  # the broker URL's password is never shown
    port = free_port()
    api = ManagedProcess("api-amqp-406", python_m("api", "--port", str(port)), env, logs_dir / "api-amqp-406.log")
    api.start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(f"{url}/healthz"), timeout_s=30, what="API", process=api)
        r = httpx.post(f"{url}/v1/generations", json={"messages": [{"role": "user", "content": "hi"}]}, timeout=30)
        assert r.status_code == 503, r.text
        assert "the task queue refused the task" in r.json()["error"]["message"]
        assert "x-queue-type" in r.json()["error"]["message"]
    finally:
        api.stop()
