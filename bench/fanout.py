"""Scenario: one generation at 50 tokens/s watched by many viewers on one API process.

A probe reads the stream straight from Redis (XREAD BLOCK) and stamps when each event lands there; viewers
run in separate processes (``bench/viewers.py``) and stamp when each event reaches them. Lag is the
difference, i.e. what the API's fan-out adds. Also: every viewer got every event, API CPU, RSS per viewer,
and a deliberately slow viewer alongside.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from redis.cluster import ClusterNode

from bench.stack import Stack
from reasonq.shared import keys
from reasonq.shared.redis_urls import parse_redis_url

VIEWERS_PER_PROCESS = 250


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (``reasonq api --workers N``: the supervisor and its API processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):  # exited meanwhile
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def tree_cpu_s(pids: list[int]) -> float:
    return sum(_cpu_s(p) for p in pids)


def tree_rss_kib(pids: list[int]) -> int:
    return sum(_rss_kib(p) for p in pids)


def _probe(redis_url: str, gid: str, out: dict[int, float], stop: threading.Event) -> None:
    target = parse_redis_url(redis_url)
    r: Any = (
        redis.RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.hosts], socket_timeout=10)
        if target.kind == "cluster"
        else redis.Redis.from_url(redis_url, socket_timeout=10)
    )
    last = "0-0"
    while not stop.is_set():
        reply = r.xread({keys.events_key(gid): last}, block=1000, count=1000)
        now = time.time()
        for _, entries in reply or ():
            for entry_id, fields in entries:
                last = entry_id.decode()
                out[int(last.split("-")[0])] = now
                if fields[b"t"] == b"done":
                    return


def start_viewers(port: int, path: str, n: int, tmp: Path) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """``n`` viewers of ``path`` in load-generator processes of ``VIEWERS_PER_PROCESS`` each, writing to ``tmp``."""
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    remaining = n
    while remaining > 0:
        k = min(VIEWERS_PER_PROCESS, remaining)
        remaining -= k
        out = tmp / f"v{len(procs)}.jsonl"
        argv = [sys.executable, "-m", "bench.viewers", "127.0.0.1", str(port), path, str(k), str(out)]
        procs.append((subprocess.Popen(argv), out))
    return procs


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run_one(stack: Stack, n: int, tokens: int = 400, slow: bool = False) -> dict[str, Any]:
    """One generation watched by ``n`` viewers (plus one slow one when ``slow``)."""
    assert stack.redis is not None and stack.api is not None
    api_pids = tree(stack.api.pid)  # one process, or a supervisor and its API processes
    prompt = f"fanout {n} {time.monotonic_ns()} sim:reasoning_tokens={tokens // 2} sim:content_tokens={tokens // 2}"
    tmp = Path(tempfile.mkdtemp(prefix="fanout-"))
    rss0 = tree_rss_kib(api_pids)
    # The model "thinks" silently for connect_s before its first token, so every viewer is live by then; lag is
    # counted for the events after that.
    connect_s = 3 + n / 500
    body = {
        "messages": [
            {"role": "user", "content": f"{prompt} sim:tokens_per_s=50 sim:stall_after=1 sim:stall_s={connect_s}"}
        ]
    }
    gid = httpx.post(f"{stack.api_url}/v1/generations", json=body, timeout=30).json()["id"]
    path = f"/v1/generations/{gid}/events"
    probe_times: dict[int, float] = {}
    stop = threading.Event()
    probe = threading.Thread(target=_probe, args=(stack.store_url, gid, probe_times, stop), daemon=True)
    probe.start()
    procs = start_viewers(stack.api_port, path, n, tmp)
    slow_proc = None
    if slow:
        out = tmp / "slow.jsonl"
        argv = [sys.executable, "-m", "bench.viewers", "127.0.0.1", str(stack.api_port), path, "1", str(out), "--slow"]
        slow_proc = (subprocess.Popen(argv), out)
    cpu0, t0 = tree_cpu_s(api_pids), time.monotonic()
    peak_rss = rss0
    while any(p.poll() is None for p, _ in procs):
        peak_rss = max(peak_rss, tree_rss_kib(api_pids))
        time.sleep(0.2)
    wall = time.monotonic() - t0
    api_cpu = (tree_cpu_s(api_pids) - cpu0) / wall
    stop.set()
    probe.join(5)
    expected = sorted(probe_times)
    ready_files = [Path(str(out) + ".ready") for _, out in procs]
    live_from = max(float(f.read_text()) for f in ready_files if f.exists())  # every viewer connected by then
    lags: list[float] = []
    complete = 0
    problems: list[str] = []
    for _, out in procs:
        for line in out.read_text().splitlines():
            ids, times, *rest = json.loads(line)  # rest: [error], or [connected_at, HTTP status, opened_at]
            err = rest[0] if len(rest) == 1 else f"HTTP {rest[1]}"
            if ids == expected:
                complete += 1
            elif len(problems) < 3:
                missing = sorted(set(expected) - set(ids))
                problems.append(
                    f"got {len(ids)} events, missing {missing[:5]}..., dup {len(ids) - len(set(ids))} {err}"
                )
            lags += [
                (t - probe_times[i]) * 1000
                for i, t in zip(ids, times, strict=True)
                if i in probe_times and probe_times[i] > live_from
            ]
    result: dict[str, Any] = {
        "viewers": n,
        "events": len(expected),
        "viewers_with_every_event": complete,
        "lag_p50_ms": round(statistics.median(lags), 2) if lags else None,
        "lag_p99_ms": round(_percentile(lags, 0.99), 2) if lags else None,
        "api_cpu_share": round(api_cpu, 2),
        "api_rss_mib": round(peak_rss / 1024, 1),
        "rss_per_viewer_kib": round((peak_rss - rss0) / max(n, 1), 1),
        "problems": problems,
        "events_in_lag_stats": len([i for i in expected if probe_times[i] > live_from]),
        "load_generator_cpu_share": round(
            sum(float(Path(str(out) + ".cpu").read_text()) for _, out in procs) / wall, 2
        ),
    }
    if slow_proc is not None:
        slow_proc[0].wait(300)
        ids, _times, *_ = json.loads(slow_proc[1].read_text().splitlines()[0])
        result["slow_viewer_got_every_event"] = ids == expected
    return result


def run(sizes: tuple[int, ...] = (100, 1_000, 5_000), slow_at: int = 1_000, tokens: int = 400) -> list[dict[str, Any]]:
    """The fan-out table: each size, then ``slow_at`` viewers plus one slow viewer."""
    results = []
    with Stack(sim_tokens_per_s=50) as stack:
        for n in sizes:
            results.append(run_one(stack, n, tokens=tokens))
        if slow_at:
            results.append({**run_one(stack, slow_at, tokens=tokens, slow=True), "with_slow_viewer": True})
    return results


if __name__ == "__main__":
    sizes = tuple(int(a) for a in sys.argv[1:]) or (100, 1_000, 5_000)
    for row in run(sizes, slow_at=sizes[min(1, len(sizes) - 1)]):
        print(json.dumps(row))
