"""Scenario: one long generation at the simulator's full speed, end to end.

Reports, per run: events written, Redis commands per token (all commands Redis executed, including those
inside scripts, from INFO commandstats, and the client round trips alone), and wall time from POST to the
``done`` event arriving at an SSE viewer.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import httpx
import redis

from bench.stack import Stack

# Commands the benchmark itself sends, not part of the pipeline's cost.
_OWN = {"config|resetstat", "info", "config", "ping"}
# Commands that run inside the store's scripts (counted by Redis, but not round trips).
_IN_SCRIPTS = {"xadd", "append", "hset", "hmget", "hdel", "expire", "time", "del"}


def _commandstats(r: redis.Redis) -> dict[str, int]:
    stats = r.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items() if name not in _OWN}


def _one(client: httpx.Client, r: redis.Redis, tokens: int, rate: float = 0) -> dict[str, Any]:
    r.config_resetstat()
    prompt = (
        f"bench {time.monotonic_ns()} sim:reasoning_tokens={tokens // 2} "
        f"sim:content_tokens={tokens - tokens // 2} sim:tokens_per_s={rate}"
    )
    t0 = time.perf_counter()
    resp = client.post("/v1/generations", json={"messages": [{"role": "user", "content": prompt}]})
    gid = resp.json()["id"]
    last_id = 0
    with client.stream("GET", f"/v1/generations/{gid}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("id: "):
                last_id = int(line[4:])
            if line == "event: done":
                break
    wall_s = time.perf_counter() - t0
    time.sleep(0.3)  # let trailing commands (ack, lease) land before counting
    calls = {k: v for k, v in _commandstats(r).items() if k not in _OWN}
    total = sum(calls.values())
    in_scripts = sum(v for k, v in calls.items() if k in _IN_SCRIPTS)
    return {
        "events": last_id,
        "wall_ms": wall_s * 1000,
        "redis_commands": total,
        "round_trips": total - in_scripts,
        "commands_per_token": total / tokens,
        "round_trips_per_token": (total - in_scripts) / tokens,
        "calls": calls,
    }


def run(runs: int = 5, tokens: int = 2_000) -> dict[str, Any]:
    """Run the scenario ``runs`` times on a fresh stack; medians plus every run."""
    with Stack(sim_tokens_per_s=0) as stack, httpx.Client(base_url=stack.api_url, timeout=60) as client:
        assert stack.redis is not None
        r = redis.Redis.from_url(stack.redis.url)
        _one(client, r, 50)  # warm up connections and scripts
        results = [_one(client, r, tokens) for _ in range(runs)]
    summary = {
        key: statistics.median(res[key] for res in results)
        for key in ("events", "wall_ms", "redis_commands", "round_trips", "commands_per_token", "round_trips_per_token")
    }
    return {"tokens": tokens, "runs": runs, "median": summary, "each": results}


def redis_cost() -> dict[str, Any]:
    """Redis commands per token (one generation, one viewer) at 10 and 1,000 tokens/s, and this Redis's raw
    XADD ceiling (redis-benchmark) for reference."""
    import shutil
    import subprocess

    out: dict[str, Any] = {}
    with Stack(sim_tokens_per_s=0) as stack, httpx.Client(base_url=stack.api_url, timeout=60) as client:
        assert stack.redis is not None
        r = redis.Redis.from_url(stack.redis.url)
        _one(client, r, 20)
        for rate, tokens in ((10, 100), (1_000, 2_000)):
            res = _one(client, r, tokens, rate)
            out[f"{rate}_tokens_per_s"] = {
                "tokens": tokens,
                "events": res["events"],
                "commands_per_token": round(res["commands_per_token"], 4),
                "round_trips_per_token": round(res["round_trips_per_token"], 4),
            }
        benchmark = shutil.which("redis-benchmark")
        if benchmark:
            text = subprocess.run(
                [benchmark, "-p", str(stack.redis.port), "-n", "200000", "-q", "XADD", "bench:xadd", "*", "f", "v"],
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout
            out["redis_benchmark_xadd"] = text.strip().splitlines()[-1] if text.strip() else "no output"
        else:
            out["redis_benchmark_xadd"] = "redis-benchmark not installed"
    return out
