"""Scenarios: per-token overhead through reasonq vs the direct proxy, and queue pickup.

The simulator stamps each token when it emits it (``sim:record=1``); a lean viewer stamps each token when it
arrives. Overhead is arrival minus emission, per token, at the same token rate through both paths, measured
side by side in one run. Queue pickup is POST to the first ``running`` status event at a viewer.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from bench.stack import Stack
from reasonq.processes import ManagedProcess, free_port, http_ok, wait_until
from reasonq.simulator.script import build_script


async def _read_sse(host: str, port: int, path: str) -> list[tuple[float, str, bytes]]:
    """(arrival time, event type, data) of every event until ``done``."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    out: list[tuple[float, str, bytes]] = []
    pending, event = b"", ""
    while True:
        piece = await reader.read(65536)
        if not piece:
            break
        now = time.time()
        pending += piece
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.startswith(b"event: "):
                event = line[7:].decode().strip()
            elif line.startswith(b"data: "):
                out.append((now, event, line[6:]))
                if event == "done":
                    writer.close()
                    return out
    writer.close()
    return out


def _token_arrivals(events: list[tuple[float, str, bytes]], tokens: list[str]) -> list[float]:
    """Arrival time of each token, mapping deltas (possibly coalesced) onto tokens by text length."""
    arrivals: list[float] = []
    received = 0
    boundary = 0
    k = 0
    for t, kind, data in events:
        if kind not in ("reasoning", "content", "delta"):
            continue
        received += len(orjson.loads(data)["delta"])
        while k < len(tokens) and boundary + len(tokens[k]) <= received:
            boundary += len(tokens[k])
            arrivals.append(t)
            k += 1
    return arrivals


def _emitted(sim_url: str, label: str) -> list[float]:
    stamps: list[float] = httpx.get(f"{sim_url}/sim/stats", timeout=10).json()["emitted"][label]
    return stamps


def _overheads(arrivals: list[float], emitted: list[float]) -> list[float]:
    return [(a - e) * 1000 for a, e in zip(arrivals, emitted, strict=False)]


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values``, rounded."""
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def _prompt(kind: str, i: int, tokens: int) -> tuple[str, list[str]]:
    """A prompt whose model waits 0.5 s before its first token (so the viewer is live for every token), and its
    tokens."""
    prompt = (
        f"latency {kind} {i} {time.monotonic_ns()} sim:reasoning_tokens={tokens // 2} "
        f"sim:content_tokens={tokens // 2} sim:record=1 sim:stall_after=0 sim:stall_s=0.5"
    )
    script = build_script({"model": "reasonq-sim", "messages": [{"role": "user", "content": prompt}]})
    return prompt, script.reasoning + script.content


def reasonq_overheads(stack: Stack, runs: int, tokens: int) -> list[float]:
    """Per-token overhead (ms, emission at the model -> arrival at one viewer) through ``stack``."""
    sim_url = stack.env["REASONQ_MODEL_BASE_URL"].removesuffix("/v1")
    out: list[float] = []
    for i in range(runs):
        prompt, words = _prompt("reasonq", i, tokens)
        body = {"messages": [{"role": "user", "content": prompt}]}
        gid = httpx.post(f"{stack.api_url}/v1/generations", json=body, timeout=10).json()["id"]
        events = asyncio.run(_read_sse("127.0.0.1", stack.api_port, f"/v1/generations/{gid}/events"))
        out += _overheads(_token_arrivals(events, words), _emitted(sim_url, prompt))
    return out


def run(runs: int = 3, tokens: int = 200, rate: float = 50.0) -> dict[str, Any]:
    """Overhead p50/p99 through reasonq and through the direct proxy; queue pickup p50/p99 when idle."""
    with Stack(sim_tokens_per_s=rate) as stack:
        sim_port = int(stack.env["REASONQ_MODEL_BASE_URL"].split(":")[2].split("/")[0])
        sim_url = f"http://127.0.0.1:{sim_port}"
        proxy_port = free_port()
        proxy = ManagedProcess(
            "proxy", [sys.executable, "-m", "bench.proxy", str(proxy_port), sim_url], log_path=stack.dir / "proxy.log"
        ).start()
        stack.procs.append(proxy)
        wait_until(lambda: http_ok(f"http://127.0.0.1:{proxy_port}/docs"), timeout_s=20, what="proxy")
        reasonq: list[float] = []
        direct: list[float] = []
        for i in range(runs):  # the two paths alternate, so both see the same machine
            prompt, words = _prompt("direct", i, tokens)
            events = asyncio.run(_read_sse("127.0.0.1", proxy_port, f"/proxy?prompt={quote(prompt)}"))
            direct += _overheads(_token_arrivals(events, words), _emitted(sim_url, prompt))
            reasonq += reasonq_overheads(stack, 1, tokens)
        pickups = []
        client = httpx.Client(base_url=stack.api_url, timeout=10)  # keep-alive: measure reasonq, not TCP setup
        for _ in range(30):
            body = {"messages": [{"role": "user", "content": "pickup sim:reasoning_tokens=1 sim:content_tokens=1"}]}
            t0 = time.time()
            gid = client.post("/v1/generations", json=body).json()["id"]
            events = asyncio.run(_read_sse("127.0.0.1", stack.api_port, f"/v1/generations/{gid}/events"))
            running = next(t for t, kind, data in events if kind == "status" and b'"running"' in data)
            pickups.append((running - t0) * 1000)
    return {
        "token_rate": rate,
        "tokens_measured": {"reasonq": len(reasonq), "direct": len(direct)},
        "overhead_ms": {
            "reasonq": {"p50": pct(reasonq, 0.5), "p99": pct(reasonq, 0.99)},
            "direct_proxy": {"p50": pct(direct, 0.5), "p99": pct(direct, 0.99)},
            "extra": {
                "p50": round(pct(reasonq, 0.5) - pct(direct, 0.5), 2),
                "p99": round(pct(reasonq, 0.99) - pct(direct, 0.99), 2),
            },
        },
        "queue_pickup_idle_ms": {"p50": round(statistics.median(pickups), 2), "p99": pct(pickups, 0.99)},
    }


if __name__ == "__main__":
    print(orjson.dumps(run(), option=orjson.OPT_INDENT_2).decode())
