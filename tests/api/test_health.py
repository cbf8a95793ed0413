"""What operators see: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from reasonq.processes import RedisServer, free_port, http_ok, wait_until
from tests.helpers import metric_value, read_events, submit


def test_healthz_and_readyz(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    deadline = time.monotonic() + 10
    while True:  # the worker's first heartbeat comes a third of a lease after it starts
        ready = client.get("/readyz")
        if ready.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["redis"] is True and checks["broker"] is True and checks["workers"] >= 1


def test_metrics(client: httpx.Client) -> None:
    gid = submit(client, "metrics sim:reasoning_tokens=5 sim:content_tokens=5")
    read_events(client, gid)
    text = client.get("/metrics").text
    assert 'reasonq_generations_submitted_total{route="single"}' in text
    assert "reasonq_events_fanned_out_total" in text and 'reasonq_generations{state="running"}' in text
    assert 'reasonq_queue_depth{queue="reasonq"}' in text and "reasonq_live_workers" in text
    assert metric_value(text, "reasonq_events_fanned_out_total") >= 5


def _settled_metrics(client: httpx.Client, heartbeat_s: float = 1.0) -> str:
    """/metrics once no generation is queued or running and the workers' counters (flushed with each heartbeat)
    stayed the same over more than one heartbeat: earlier tests' observations are all in."""
    names = ("reasonq_tokens_total", "reasonq_queue_pickup_seconds_count")
    deadline = time.monotonic() + 30
    last: list[float] | None = None
    while time.monotonic() < deadline:
        text = client.get("/metrics").text
        idle = all(metric_value(text, f'reasonq_generations{{state="{s}"}}') == 0 for s in ("queued", "running"))
        counters = [metric_value(text, n) for n in names]
        if idle and counters == last:
            return text
        last = counters if idle else None
        time.sleep(heartbeat_s * 1.5)
    raise AssertionError("the deployment's counters did not settle in 30 s")


def test_metrics_carry_the_deployments_tokens_ends_and_latency_histograms(client: httpx.Client) -> None:
    """Exact deltas over three generations of 7 + 5 tokens (issue 18: ``>=`` bounds passed with double counting)."""
    before = _settled_metrics(client)
    gids = [submit(client, f"hist {i} sim:reasoning_tokens=7 sim:content_tokens=5") for i in range(3)]
    for gid in gids:
        read_events(client, gid)

    def delta(text: str, name: str) -> float:
        return metric_value(text, name) - metric_value(before, name)

    def observed() -> bool:
        # Workers add their observations with each heartbeat (1 s here), and a generation's end is counted just
        # after its last event is visible, so it may ride a later heartbeat than its tokens: wait for all of them.
        text = client.get("/metrics").text
        return (
            delta(text, "reasonq_queue_pickup_seconds_count") >= 3
            and delta(text, 'reasonq_generations_ended_total{status="completed"}') >= 3
            and delta(text, "reasonq_tokens_total") >= 36
        )

    wait_until(observed, timeout_s=10, what="the workers' observations")
    text = _settled_metrics(client)  # nothing more arrives later: a double count would show here
    assert delta(text, "reasonq_tokens_total") == 36
    assert delta(text, 'reasonq_generations_ended_total{status="completed"}') == 3
    assert delta(text, 'reasonq_generations_submitted_total{route="single"}') == 3
    for histogram in ("reasonq_time_to_first_token_seconds", "reasonq_queue_pickup_seconds"):
        assert delta(text, f"{histogram}_count") == 3
        inf = metric_value(text, f'{histogram}_bucket{{le="+Inf"}}')
        assert inf == metric_value(text, f"{histogram}_count")  # cumulative buckets end at the count
        assert delta(text, f"{histogram}_sum") > 0


def test_worker_serves_its_own_health(cluster: Any) -> None:
    port = free_port()
    c = cluster()
    worker = c.add_worker(env={"REASONQ_WORKER_HEALTH_PORT": str(port)})
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/healthz"), timeout_s=10, what="worker health", process=worker)
    health = httpx.get(f"{url}/healthz").json()
    assert health["status"] == "ok" and health["running"] == 0 and health["heartbeat_age_s"] < 3
    metrics = httpx.get(f"{url}/metrics").text
    assert "reasonq_worker_running 0.0" in metrics and "process_resident_memory_bytes" in metrics
    # A wedged worker (here: stopped) does not answer; a supervisor's health check times out and restarts it.
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        with pytest.raises(httpx.TimeoutException):
            httpx.get(f"{url}/healthz", timeout=1)
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    wait_until(lambda: http_ok(f"{url}/healthz"), timeout_s=10, what="worker health after SIGCONT", process=worker)


def test_worker_health_fails_while_redis_is_unreachable(cluster: Any, tmp_path: Path) -> None:
    """The heartbeat is what keeps the worker's leases: a worker that cannot reach Redis says it is unhealthy
    (503) once a lease time passes without one, and healthy again once Redis is back."""
    server = RedisServer(free_port(), tmp_path / "redis", persist=True).start()
    try:
        c = cluster(redis_url=server.url)
        port = free_port()
        worker = c.add_worker(env={"REASONQ_WORKER_HEALTH_PORT": str(port)})
        url = f"http://127.0.0.1:{port}/healthz"
        wait_until(lambda: http_ok(url), timeout_s=10, what="worker health", process=worker)
        server.stop()
        started = time.monotonic()
        wait_until(lambda: httpx.get(url, timeout=2).status_code == 503, timeout_s=10, what="503 without Redis")
        unhealthy = httpx.get(url, timeout=2).json()
        assert unhealthy["status"] == "unhealthy" and unhealthy["heartbeat_age_s"] >= 3  # the lease time here
        assert time.monotonic() - started < 6
        server.start()
        wait_until(lambda: http_ok(url), timeout_s=15, what="worker health after Redis returned", process=worker)
    finally:
        server.stop()


def test_issue12_readiness_asks_for_a_worker_on_the_interactive_queue(cluster: Any) -> None:
    """Before: with the interactive queue's only worker gone, ``/readyz`` said ``ready, workers: 2`` (the live
    workers served other queues) while POSTs stayed ``queued`` for ever. After: readiness counts workers per
    queue, is 503 without one on the interactive queue, and says which queue lacks workers."""
    c = cluster()
    batch_queue = f"{c.queue}-batch"
    c.env["REASONQ_BATCH_QUEUE_NAME"] = batch_queue
    c.start_api()
    c.add_worker(queues=batch_queue)

    def readiness() -> httpx.Response:
        return httpx.get(f"{c.url}/readyz", timeout=10)

    wait_until(lambda: readiness().json()["checks"]["queues"][batch_queue] >= 1, timeout_s=10, what="batch beat")
    r = readiness()
    assert r.status_code == 503 and r.json()["status"] == "not_ready"
    assert r.json()["checks"]["workers"] >= 1 and r.json()["checks"]["queues"][c.queue] == 0
    assert r.json()["problems"] == [f"no live worker consumes the queue {c.queue!r}"]
    c.add_worker()
    wait_until(lambda: readiness().status_code == 200, timeout_s=10, what="readiness with an interactive worker")
    assert readiness().json()["problems"] == []
