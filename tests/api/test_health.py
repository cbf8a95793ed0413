"""What operators see: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import time

import httpx

from tests.helpers import read_events, submit


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
    fanned = next(line for line in text.splitlines() if line.startswith("reasonq_events_fanned_out_total"))
    assert float(fanned.split()[-1]) >= 5
