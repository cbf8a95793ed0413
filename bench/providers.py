"""Scenario: a provider limited to N concurrent streams, shared by two worker processes (issue 16).

Submits a burst of generations to a provider with ``max_concurrent`` set, and reports: the most streams the
simulator saw at once (must equal the limit), the slot hand-off gap (a generation's start minus the end that freed
its slot: the release is published, so waiting workers try at once rather than at their next poll), the burst's
wall time against the ideal (rounds of ``limit`` generations), and the pickup of a generation that finds a free
slot next to the same provider without a limit (the cost of taking a slot).
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import httpx
import orjson

from bench.latency import pct
from bench.stack import Stack

RATE = 50  # simulator tokens/s


def _burst(stack: Stack, n: int, tokens: int) -> list[dict[str, Any]]:
    with httpx.Client(base_url=stack.api_url, timeout=60) as client:
        ids = []
        for i in range(n):
            prompt = f"burst {i} {time.time()} sim:reasoning_tokens={tokens // 2} sim:content_tokens={tokens // 2}"
            ids.append(
                client.post("/v1/generations", json={"messages": [{"role": "user", "content": prompt}]}).json()["id"]
            )
        deadline = time.monotonic() + 120
        records: list[dict[str, Any]] = []
        for gid in ids:
            while True:
                record = client.get(f"/v1/generations/{gid}").json()
                if record["status"] in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
                    records.append(record)
                    break
                time.sleep(0.05)
    return records


def _pickups_ms(records: list[dict[str, Any]]) -> list[float]:
    return [(r["started_at"] - r["created_at"]) * 1000 for r in records if r.get("started_at")]


def run(n: int = 60, limit: int = 4, tokens: int = 10) -> dict[str, Any]:
    """``n`` generations of ``tokens`` tokens at once, on a provider limited to ``limit`` streams, two workers."""
    out: dict[str, Any] = {"generations": n, "limit": limit, "tokens_each": tokens, "sim_tokens_per_s": RATE}
    for label, env in (("unlimited", {}), ("limited", {"REASONQ_MODEL_MAX_CONCURRENT": str(limit)})):
        with Stack(sim_tokens_per_s=RATE, env=env) as stack:
            stack.worker_ready(stack.add_worker())
            sim = stack.env["REASONQ_MODEL_BASE_URL"].removesuffix("/v1")
            t0 = time.time()
            records = _burst(stack, n if label == "limited" else limit, tokens)
            wall_s = time.time() - t0
            stats = httpx.get(f"{sim}/sim/stats", timeout=10).json()
        completed = sum(r["status"] == "completed" for r in records)
        row: dict[str, Any] = {
            "completed": completed,
            "max_upstream_streams": stats["max_active"],
            "first_pickup_p50_ms": round(statistics.median(_pickups_ms(records[:limit])), 1),
        }
        if label == "limited":
            starts = sorted(r["started_at"] for r in records)
            ends = sorted(r["finished_at"] for r in records)
            gaps = [(starts[k] - ends[k - limit]) * 1000 for k in range(limit, len(starts))]
            per_generation_s = statistics.median(r["finished_at"] - r["started_at"] for r in records)
            row |= {
                "handoff_gap_ms": {"p50": round(pct(gaps, 0.5), 1), "p99": round(pct(gaps, 0.99), 1)},
                "wall_s": round(wall_s, 2),
                "ideal_s": round(math.ceil(n / limit) * per_generation_s, 2),
            }
        out[label] = row
    return out


if __name__ == "__main__":
    print(orjson.dumps(run(), option=orjson.OPT_INDENT_2).decode())
