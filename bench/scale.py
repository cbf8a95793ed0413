"""Scenario ``scale`` (issue 13): one Redis against a Redis Cluster of 1 and 3 masters, and a master's failover.

Per topology, in one sitting: completed generations per second (200 generations of 60 tokens at the simulator's
full speed, two worker processes), fan-out lag (one generation at 50 tokens/s, ``FANOUT_VIEWERS`` viewers; lag =
the event landing in Redis -> the viewer), and the per-token overhead one viewer sees (emission at the model ->
arrival). Then a failover: a Cluster of 3 masters with a replica each, 5 viewers of a generation, the master that
holds it SIGKILLed mid-stream: the viewers' longest gap between two events, the events sent twice (history written
again after a loss), and whether every viewer's text is the record's.
"""

from __future__ import annotations

import concurrent.futures
import signal
import statistics
import time
from typing import Any

import httpx
import orjson
from httpx_sse import connect_sse
from redis.crc import key_slot

from bench import fanout, latency
from bench.stack import Stack
from reasonq.shared import keys
from reasonq.simulator.script import build_script

FANOUT_VIEWERS = 300
TOPOLOGIES = (("one Redis", 0), ("Cluster, 1 master", 1), ("Cluster, 3 masters", 3))


def _throughput(stack: Stack, n: int) -> float:
    body = [
        {"messages": [{"role": "user", "content": f"scale {i} sim:tokens_per_s=0 sim:reasoning_tokens=40"}]}
        for i in range(n)
    ]
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        t0 = time.monotonic()
        gids = [client.post("/v1/generations", json=b).json()["id"] for b in body]
        pending = set(gids)
        while pending:
            pending = {g for g in pending if client.get(f"/v1/generations/{g}").json()["status"] != "completed"}
            time.sleep(0.05)
        return n / (time.monotonic() - t0)


def _topology(label: str, masters: int, smoke: bool) -> dict[str, Any]:
    with Stack(sim_tokens_per_s=50, cluster_masters=masters) as stack:
        stack.worker_ready(stack.add_worker())
        per_s = _throughput(stack, 40 if smoke else 200)
        fan = fanout.run_one(stack, 30 if smoke else FANOUT_VIEWERS, tokens=100 if smoke else 200)
        overheads = latency.reasonq_overheads(stack, 1 if smoke else 3, 60 if smoke else 200)
    return {
        "topology": label,
        "generations_per_s": round(per_s, 1),
        "fanout_viewers": fan["viewers"],
        "fanout_lag_p50_ms": fan["lag_p50_ms"],
        "fanout_lag_p99_ms": fan["lag_p99_ms"],
        "fanout_complete": fan["viewers_with_every_event"],
        "token_overhead_p50_ms": latency.pct(overheads, 0.5),
        "token_overhead_p99_ms": latency.pct(overheads, 0.99),
    }


def _failover(smoke: bool) -> dict[str, Any]:
    prompt = f"failover {time.monotonic_ns()} sim:reasoning_tokens=200 sim:content_tokens=50 sim:tokens_per_s=50"
    with Stack(sim_tokens_per_s=50, cluster_masters=3, replicas=1) as stack:
        assert stack.cluster is not None
        gid = httpx.post(
            f"{stack.api_url}/v1/generations", json={"messages": [{"role": "user", "content": prompt}]}, timeout=10
        ).json()["id"]
        per = 16_384 // len(stack.cluster.masters)
        holder = stack.cluster.masters[min(key_slot(keys.record_key(gid).encode()) // per, 2)]
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            futures = [pool.submit(_timed_follow, stack.api_url, gid) for _ in range(5)]
            time.sleep(2.0)
            killed_at = time.time()
            holder.signal(signal.SIGKILL)
            results = [f.result(timeout=120) for f in futures]
        record = httpx.get(f"{stack.api_url}/v1/generations/{gid}", timeout=10).json()
    script = build_script({"model": "reasonq-sim", "messages": [{"role": "user", "content": prompt}]})
    whole = ("".join(script.reasoning), "".join(script.content))
    gaps = []
    for events in results:
        times = [t for *_, t in events]
        gaps.append(max((b - a for a, b in zip(times, times[1:], strict=False) if b > killed_at), default=0.0))
    recorded = (record["reasoning"], record["content"])
    return {
        "status": record["status"],
        "viewers_exact": sum(_text(events) == whole == recorded for events in results),
        "viewer_gap_max_s": round(max(gaps), 2),
        "viewer_gap_median_s": round(statistics.median(gaps), 2),
        "events_sent_again": sum(len(events) - len({e[0] for e in events}) for events in results),
        "history_restores": sum(
            kind == "restart" and data.get("reason") == "history_lost" for _, kind, data, _ in results[0]
        ),
    }


def _timed_follow(url: str, gid: str) -> list[tuple[int, str, dict[str, Any], float]]:
    """A viewer following the event contract (resuming with Last-Event-ID); (id, type, data, arrival) per event."""
    out: list[tuple[int, str, dict[str, Any], float]] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        headers = {"Last-Event-ID": str(out[-1][0])} if out else {}
        try:
            with (
                httpx.Client(base_url=url, timeout=httpx.Timeout(10, read=30)) as client,
                connect_sse(client, "GET", f"/v1/generations/{gid}/events", headers=headers) as source,
            ):
                for sse in source.iter_sse():
                    if sse.data:
                        out.append((int(sse.id), sse.event, orjson.loads(sse.data), time.time()))
                        if sse.event == "done":
                            return out
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{gid}: no done event")


def _text(events: list[tuple[int, str, dict[str, Any], float]]) -> tuple[str, str]:
    reasoning: list[str] = []
    content: list[str] = []
    for _, kind, data, _ in events:
        if kind == "restart":
            reasoning, content = [], []
        elif kind in ("reasoning", "content"):
            (reasoning if kind == "reasoning" else content).append(data["delta"])
    return "".join(reasoning), "".join(content)


def run(smoke: bool = False) -> dict[str, Any]:
    """Every topology in turn, then the failover."""
    rows = [_topology(label, masters, smoke) for label, masters in TOPOLOGIES]
    return {"topologies": rows, "failover": _failover(smoke)}
