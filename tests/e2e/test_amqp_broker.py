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


def _queue_types(vhost: str) -> dict[str, str]:
    out = subprocess.run(
        ["rabbitmqctl", "list_queues", "-p", vhost, "name", "type", "--quiet", "--no-table-headers"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return dict(line.split("\t")[:2] for line in out.splitlines() if "\t" in line)


def test_quorum_queues_end_to_end_and_through_a_worker_kill(
    stack_env: dict[str, str], logs_dir: Path, amqp_vhost: str
) -> None:
    """Issue 13 (its RabbitMQ part): ``REASONQ_BROKER_QUEUE_TYPE=quorum`` declares quorum queues (no setting reached
    them before, and a pre-declared one killed the worker); a generation runs through them, and one whose worker is
    SIGKILLed mid-stream completes on attempt 2 with the exact text."""
    queue = f"reasonq-test-{secrets.token_hex(4)}"
    env = {
        **stack_env,
        "REASONQ_BROKER_URL": amqp_vhost,
        "REASONQ_BROKER_QUEUE_TYPE": "quorum",
        "REASONQ_QUEUE_NAME": queue,
        "REASONQ_LEASE_TTL_S": "2",
        "REASONQ_SWEEP_INTERVAL_S": "0.5",
    }
    workers = WorkerFactory(env, logs_dir)
    doomed = workers("quorum", concurrency=8)
    port = free_port()
    api = ManagedProcess("api-quorum", python_m("api", "--port", str(port)), env, logs_dir / "api-quorum.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}/healthz"), timeout_s=30, what="API", process=api)
        wait_until(lambda: http_ok(f"{url}/readyz"), timeout_s=30, what="a consuming worker", process=doomed)
        assert _queue_types(amqp_vhost.rsplit("/", 1)[1]).get(queue) == "quorum"
        with httpx.Client(base_url=url, timeout=30) as client:
            quick = "quorum quick sim:reasoning_tokens=5 sim:content_tokens=5"
            assert read_events(client, submit(client, quick))[-1].data["status"] == "completed"
            prompt = "quorum kill sim:reasoning_tokens=40 sim:content_tokens=40 sim:tokens_per_s=30"
            gid = submit(client, prompt)
            wait_until(
                lambda: len(client.get(f"/v1/generations/{gid}").json()["reasoning"].split()) >= 5,
                timeout_s=30,
                what="the first words",
            )
            workers("quorum", concurrency=8)
            doomed.kill()
            events = read_events(client, gid, timeout_s=90)
            record = client.get(f"/v1/generations/{gid}").json()
        assert record["status"] == "completed" and record["attempt"] == 2
        reasoning = "".join(e.data["delta"] for e in events if e.type == "reasoning" and e.id > 0)
        assert (record["reasoning"], record["content"]) == expected_text(prompt)
        assert reasoning.endswith(record["reasoning"])  # the restart's text follows the restart event
    finally:
        api.stop()
        workers.stop_all()
