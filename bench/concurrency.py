"""Scenario: many concurrent generations on one worker process, each at a fixed simulated token rate.

Offered load is ``n × tokens_per_s``. Reports how much longer each generation took than the model needed
(ideal = tokens / rate), pickup delay, worker CPU, and whether every generation's text arrived whole.
"""

from __future__ import annotations

import concurrent.futures
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from bench.stack import Stack
from reasonq.simulator.script import build_script


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 10 ms


def _direct(sim_url: str, n: int, tokens: int) -> list[float]:
    """The baseline: the same n streams read straight from the simulator by one lean client process."""
    import asyncio

    import openai

    from reasonq.worker.chunks import iter_chunks

    async def one(client: openai.AsyncOpenAI, i: int) -> float:
        t0 = time.perf_counter()
        messages = [
            {
                "role": "user",
                "content": f"direct {i} sim:reasoning_tokens={tokens // 2} sim:content_tokens={tokens - tokens // 2}",
            }
        ]
        async with client.chat.completions.with_streaming_response.create(
            model="reasonq-sim",
            messages=messages,
            stream=True,  # type: ignore[arg-type]
        ) as response:
            async for _ in iter_chunks(response.http_response.aiter_bytes()):
                pass
        return time.perf_counter() - t0

    async def main() -> list[float]:
        async with openai.AsyncOpenAI(
            base_url=f"{sim_url}/v1", api_key="bench", max_retries=0, http_client=openai.DefaultAioHttpClient()
        ) as client:
            return list(await asyncio.gather(*(one(client, i) for i in range(n))))

    return asyncio.run(main())


def run(n: int, tokens: int = 150, tokens_per_s: float = 30.0) -> dict[str, Any]:
    """Run ``n`` generations at once on a one-process worker, and the same load straight at the simulator."""
    env = {"REASONQ_WORKER_CONCURRENCY": str(n + 10)}
    with (
        Stack(sim_tokens_per_s=tokens_per_s, env=env) as stack,
        httpx.Client(base_url=stack.api_url, timeout=60, limits=httpx.Limits(max_connections=50)) as client,
    ):
        sim_url = stack.env["REASONQ_MODEL_BASE_URL"].removesuffix("/v1")
        direct = _direct(sim_url, n, tokens)
        worker_pid = next(p.pid for p in stack.procs if p.name.startswith("worker"))
        others = {p.name: p.pid for p in stack.procs if not p.name.startswith("worker")}
        others_cpu0 = {name: _cpu_s(pid) for name, pid in others.items()}
        prompts = [
            f"gen {i} sim:reasoning_tokens={tokens // 2} sim:content_tokens={tokens - tokens // 2}" for i in range(n)
        ]
        cpu0, t0 = _cpu_s(worker_pid), time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            ids = list(
                pool.map(
                    lambda p: client.post(
                        "/v1/generations", json={"messages": [{"role": "user", "content": p}]}
                    ).json()["id"],
                    prompts,
                )
            )
        records: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + tokens / tokens_per_s * 6 + 30
        while len(records) < n and time.monotonic() < deadline:
            for gid in ids:
                if gid not in records:
                    body = client.get(f"/v1/generations/{gid}").json()
                    if body["status"] in ("completed", "failed"):
                        records[gid] = body
            time.sleep(0.5)
        wall_s = time.perf_counter() - t0
        cpu_s = _cpu_s(worker_pid) - cpu0
        others_share = {name: round((_cpu_s(pid) - others_cpu0[name]) / wall_s, 2) for name, pid in others.items()}
    ideal_s = tokens / tokens_per_s
    durations = [r["finished_at"] - r["started_at"] for r in records.values()]
    pickups = [r["started_at"] - r["created_at"] for r in records.values()]
    lost = 0
    for gid, prompt in zip(ids, prompts, strict=True):
        script = build_script({"model": "reasonq-sim", "messages": [{"role": "user", "content": prompt}]})
        record = records.get(gid)
        if record is None or (record["reasoning"], record["content"]) != (
            "".join(script.reasoning),
            "".join(script.content),
        ):
            lost += 1
    return {
        "generations": n,
        "offered_tokens_per_s": n * tokens_per_s,
        "achieved_tokens_per_s": n * tokens / max(durations) if durations else 0,
        "duration_over_ideal_p50": statistics.median(durations) / ideal_s if durations else None,
        "duration_over_ideal_max": max(durations) / ideal_s if durations else None,
        "direct_duration_over_ideal_p50": statistics.median(direct) / ideal_s,
        "direct_duration_over_ideal_max": max(direct) / ideal_s,
        "pickup_p50_ms": statistics.median(pickups) * 1000 if pickups else None,
        "pickup_max_ms": max(pickups) * 1000 if pickups else None,
        "worker_cpu_s": cpu_s,
        "worker_cpu_share": cpu_s / wall_s,
        "other_cpu_share": others_share,
        "wall_s": wall_s,
        "incomplete_or_wrong": lost,
    }
