"""Scenario: a join storm. N viewers connect at once to one live generation on one API process, before its
first token; beside it, the same viewers against a bare SSE server (``bench/bare_sse.py``), the load
generator's and the kernel's floor on this machine.

Reported per side: the time from the first connect to the last response's status line (``connect_s``), each
viewer's own connect latency (p50 / p99), refused or failed viewers, whether every viewer got every event
exactly once and in order, and the API's CPU and RSS. The connect time is split (p50 / p99 of each viewer's own
phases, ms): ``tcp`` from the storm's start to its connection being open (the listen backlog and the server's
accept loop), ``headers`` from then to its status line (the request's routing, access check, record read and
response start), ``first_event`` from then to its first event (the replay or the ring, the hub's registration).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.fanout import _cpu_s, _percentile, _rss_kib, start_viewers
from bench.stack import Stack
from reasonq.processes import free_port


def _storm(port: int, path: str, n: int, tmp: Path, watch_pid: int | None) -> dict[str, Any]:
    procs = start_viewers(port, path, n, tmp)
    cpu0, t0 = (_cpu_s(watch_pid) if watch_pid else 0.0), time.monotonic()
    peak_rss = 0
    while any(p.poll() is None for p, _ in procs):
        if watch_pid:
            peak_rss = max(peak_rss, _rss_kib(watch_pid))
        time.sleep(0.2)
    wall = time.monotonic() - t0
    started = min(float(Path(str(out) + ".start").read_text()) for _, out in procs)
    connected: list[float] = []
    phases: dict[str, list[float]] = {"tcp": [], "headers": [], "first_event": []}
    sequences: list[list[int]] = []
    failed: dict[str, int] = {}
    for _, out in procs:
        for line in out.read_text().splitlines():
            row = json.loads(line)
            if len(row) == 3:  # [[], [], error]
                failed[row[2][:60]] = failed.get(row[2][:60], 0) + 1
                continue
            ids, times, connected_at, status, opened_at = row
            if status != 200:
                failed[f"HTTP {status}"] = failed.get(f"HTTP {status}", 0) + 1
                continue
            connected.append(connected_at - started)
            phases["tcp"].append(opened_at - started)
            phases["headers"].append(connected_at - opened_at)
            if times:
                phases["first_event"].append(times[0] - connected_at)
            sequences.append(ids)
    last = max((ids[-1] for ids in sequences if ids), default=0)
    result: dict[str, Any] = {
        "connected": len(connected),
        "failed": failed,
        "connect_s": round(max(connected), 2) if connected else None,
        "connect_p50_ms": round(_percentile(connected, 0.5) * 1000) if connected else None,
        "connect_p99_ms": round(_percentile(connected, 0.99) * 1000) if connected else None,
        "every_event_once": sum(ids == list(range(1, last + 1)) for ids in sequences),
        "split_ms": {
            phase: [round(_percentile(values, q) * 1000) for q in (0.5, 0.99)] if values else None
            for phase, values in phases.items()
        },
    }
    if watch_pid:
        result |= {"api_cpu_share": round((_cpu_s(watch_pid) - cpu0) / wall, 2), "api_rss_mib": round(peak_rss / 1024)}
    return result


def run(n: int = 3_000) -> dict[str, Any]:
    """``n`` viewers joining one live generation at once, then the same against the bare server."""
    stall_s = 4 + n / 1_000  # the model's silence before its first token: every viewer joins while it is live
    tmp = Path(tempfile.mkdtemp(prefix="joinstorm-"))
    with Stack(sim_tokens_per_s=200) as stack:
        assert stack.api is not None
        prompt = f"storm {time.monotonic_ns()} sim:reasoning_tokens=20 sim:content_tokens=80 sim:stall_after=1"
        body = {"messages": [{"role": "user", "content": f"{prompt} sim:stall_s={stall_s}"}]}
        gid = httpx.post(f"{stack.api_url}/v1/generations", json=body, timeout=30).json()["id"]
        (tmp / "reasonq").mkdir()
        reasonq = _storm(stack.api_port, f"/v1/generations/{gid}/events", n, tmp / "reasonq", stack.api.pid)
    port = free_port()
    bare = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_sse", str(port), "100", str(stall_s)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert bare.stdout is not None and bare.stdout.readline().strip() == "ready"
        (tmp / "bare").mkdir()
        baseline = _storm(port, "/", n, tmp / "bare", None)
    finally:
        bare.kill()
        bare.wait(10)
    return {"viewers": n, "reasonq": reasonq, "bare_server": baseline}


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 3_000)))
