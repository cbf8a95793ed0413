"""Scenario: interactive queue pickup while a large batch is in flight.

Batch generations go to their own queue and worker, so the interactive worker's slots stay free: the
interactive pickup (POST → ``running`` event at a viewer) should stay within 2x its idle value.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx
import orjson

from bench.latency import _read_sse
from bench.stack import Stack


def _pickups(stack: Stack, client: httpx.Client, n: int) -> list[float]:
    out = []
    for _ in range(n):
        body = {"messages": [{"role": "user", "content": "pickup sim:reasoning_tokens=1 sim:content_tokens=1"}]}
        t0 = time.time()
        gid = client.post("/v1/generations", json=body).json()["id"]
        events = asyncio.run(_read_sse("127.0.0.1", stack.api_port, f"/v1/generations/{gid}/events"))
        out.append((next(t for t, kind, data in events if kind == "status" and b'"running"' in data) - t0) * 1000)
    return out


def run(lines: int = 2_000, samples: int = 30) -> dict[str, Any]:
    """Pickup p50/p99 idle, then with a ``lines``-line batch (each line ~5 s of tokens) in flight."""
    with Stack(sim_tokens_per_s=30) as stack, httpx.Client(base_url=stack.api_url, timeout=60) as client:
        stack.worker_ready(stack.add_worker(queues="reasonq-batch"))
        idle = _pickups(stack, client, samples)
        batch_lines = [
            {
                "custom_id": f"b{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "messages": [
                        {"role": "user", "content": f"batch {i} sim:reasoning_tokens=100 sim:content_tokens=50"}
                    ]
                },
            }
            for i in range(lines)
        ]
        t0 = time.perf_counter()
        batch = client.post("/v1/batches", json=batch_lines).json()
        submit_s = time.perf_counter() - t0
        time.sleep(2)  # the batch worker is busy now
        busy = _pickups(stack, client, samples)
        in_flight = client.get(f"/v1/batches/{batch['id']}").json()["request_counts"]
        client.post(f"/v1/batches/{batch['id']}/cancel")
    return {
        "batch_lines": lines,
        "batch_submit_s": round(submit_s, 2),
        "batch_done_when_measured": in_flight,
        "pickup_idle_ms": {"p50": round(statistics.median(idle), 2), "max": round(max(idle), 2)},
        "pickup_with_batch_ms": {"p50": round(statistics.median(busy), 2), "max": round(max(busy), 2)},
        "ratio_p50": round(statistics.median(busy) / statistics.median(idle), 2),
    }


if __name__ == "__main__":
    print(orjson.dumps(run(), option=orjson.OPT_INDENT_2).decode())
