"""Scenario: a burst of generations submitted at once to one worker process, beside idle pickup in the same run
(issue 14: 500 at once waited 1.3 s at the median to start; idle pickup was 6.9 ms).

Pickup is the record's ``started_at - created_at`` (both stamped by Redis' clock via the API and the claim), so the
submission's own pace does not count: a generation waits from the moment it exists.
"""

from __future__ import annotations

import concurrent.futures
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.stack import Stack


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 10 ms


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _pickups(client: httpx.Client, ids: list[str], timeout_s: float) -> list[float]:
    """Each generation's wait to start (ms), once every one has started."""
    return [started - created for created, started in _times(client, ids, timeout_s)]


def _times(client: httpx.Client, ids: list[str], timeout_s: float) -> list[tuple[float, float]]:
    """Each generation's (created, started) in ms, once every one has started."""
    out: dict[str, tuple[float, float]] = {}
    deadline = time.monotonic() + timeout_s
    while len(out) < len(ids) and time.monotonic() < deadline:
        for gid in ids:
            if gid not in out:
                body = client.get(f"/v1/generations/{gid}").json()
                if body.get("started_at"):
                    out[gid] = (body["created_at"] * 1000, body["started_at"] * 1000)
        time.sleep(0.2)
    assert len(out) == len(ids), f"{len(ids) - len(out)} generations never started"
    return list(out.values())


_TTFT = "reasonq_time_to_first_token_seconds"


def _ttft_histogram(client: httpx.Client) -> dict[str, float]:
    """The deployment's time-to-first-token histogram from ``/metrics``: ``le`` bound -> cumulative count, with
    ``count`` and ``sum``."""
    out: dict[str, float] = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{_TTFT}_bucket{{"):
            out[line.split('le="', 1)[1].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
        elif line.startswith((f"{_TTFT}_count ", f"{_TTFT}_sum ")):
            out[line.split(" ", 1)[0].rsplit("_", 1)[1]] = float(line.rsplit(" ", 1)[1])
    return out


def _ttft_after(client: httpx.Client, before: dict[str, float], n: int, timeout_s: float) -> dict[str, float]:
    """The histogram once it holds ``n`` observations more than ``before`` (workers add theirs with each heartbeat)."""
    deadline = time.monotonic() + timeout_s
    after = _ttft_histogram(client)
    while after.get("count", 0) - before.get("count", 0) < n and time.monotonic() < deadline:
        time.sleep(0.5)
        after = _ttft_histogram(client)
    return after


def _ttft_summary(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Time to first token of what started between the two: the mean, and the buckets holding the median and p99."""
    count = after.get("count", 0) - before.get("count", 0)
    if count <= 0:
        return {"observed": 0}
    bounds = sorted((b for b in after if b not in ("count", "sum")), key=float)

    def bucket(q: float) -> str:
        return next(b for b in bounds if after[b] - before.get(b, 0) >= q * count)

    mean_ms = (after["sum"] - before.get("sum", 0)) / count * 1000
    return {"observed": int(count), "mean_ms": round(mean_ms, 1), "p50_le_s": bucket(0.5), "p99_le_s": bucket(0.99)}


def _submit_all(url: str, prompts: list[str]) -> list[str]:
    """POST every prompt from 16 threads (each its own connection), as fast as the API takes them."""
    local = threading.local()

    def one(prompt: str) -> str:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=60)
        r = local.client.post("/v1/generations", json={"messages": [{"role": "user", "content": prompt}]})
        return str(r.json()["id"])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, prompts))


def run(n: int, *, pickup: bool, idle_n: int = 20, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Idle pickup (``idle_n`` one at a time), then ``n`` submitted at once, on one worker process; ``pickup``:
    the worker takes queued generations from the index (``REASONQ_WORKER_PICKUP``), else only from the broker."""
    prompt = "burst {i} sim:reasoning_tokens=10 sim:content_tokens=10 sim:tokens_per_s=10"
    env = {"REASONQ_WORKER_CONCURRENCY": str(n + 50), "REASONQ_WORKER_PICKUP": str(pickup).lower(), **(extra or {})}
    with (
        Stack(env=env) as stack,
        httpx.Client(base_url=stack.api_url, timeout=60) as client,
    ):
        idle_ids = []
        for i in range(idle_n):
            body = {"messages": [{"role": "user", "content": f"idle {i} sim:content_tokens=1"}]}
            idle_ids.append(client.post("/v1/generations", json=body).json()["id"])
            time.sleep(0.05)
        idle = _pickups(client, idle_ids, 30)
        ttft_before = _ttft_after(client, {}, idle_n, 30)
        worker_pid = next(p.pid for p in stack.procs if p.name.startswith("worker"))
        cpu0, t0 = _cpu_s(worker_pid), time.perf_counter()
        ids = _submit_all(stack.api_url, [prompt.format(i=i) for i in range(n)])
        submit_s = time.perf_counter() - t0
        times = _times(client, ids, 120)
        burst = [started - created for created, started in times]
        first = min(created for created, _ in times)
        all_started_s = (max(started for _, started in times) - first) / 1000
        worker_cpu = (_cpu_s(worker_pid) - cpu0) / max(1e-3, time.perf_counter() - t0)
        ttft = _ttft_summary(ttft_before, _ttft_after(client, ttft_before, n, 30))
    return {
        "n": n,
        "pickup_from_index": pickup,
        "submit_s": round(submit_s, 2),
        "all_started_after_s": round(all_started_s, 2),
        "worker_cpu_share": round(worker_cpu, 2),
        "idle_pickup_ms": {"p50": round(statistics.median(idle), 1), "p99": _pct(idle, 0.99)},
        "burst_pickup_ms": {"p50": round(statistics.median(burst), 1), "p99": _pct(burst, 0.99), "max": _pct(burst, 1)},
        # Claimed is not streaming: the first token also waits for the model request to be built and answered
        # (the simulator's first token comes 100 ms after the request, at 10 tokens/s).
        "burst_time_to_first_token": ttft,
    }
