"""Scenario ``manystreams`` (issue 14): one API process watching many live generations at a low rate each.

``bench/producer.py`` writes N live generations straight to Redis with the store's own scripts (one ``content``
event per generation every ``1 / RATE`` s); one viewer per generation (``bench/viewers.py``, one path per viewer)
follows it through the API. Lag = the viewer's receipt − the wall time just before the event's write was sent, so
it covers Redis, the hub and the socket. Reported beside each other in one run: 100 generations, N generations, and
N generations with the hub's activity index off (every reader XREADs all its live streams, as before issue 14).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fanout import _cpu_s, _percentile, _rss_kib
from bench.stack import Stack

VIEWERS_PER_PROCESS = 1_000
# REASONQ_HUB_ACTIVITY_TOPICS large enough that a reader never follows its shard's activity stream.
ACTIVITY_OFF = "1000000000"


def _wait_for(path: Path, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} not written within {timeout_s} s")
        time.sleep(0.05)


def run_one(n: int, rate: float = 0.2, seconds: float = 30.0, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``n`` live generations, one viewer each, one event per generation every ``1 / rate`` s for ``seconds``."""
    tmp = Path(tempfile.mkdtemp(prefix="manystreams-"))
    written_path = tmp / "written.json"
    with Stack(worker=False, env=env) as stack:
        assert stack.api is not None
        producer = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.producer",
                stack.store_url,
                str(n),
                str(rate),
                str(seconds),
                str(written_path),
            ]
        )
        viewers: list[tuple[subprocess.Popen[bytes], Path, list[str]]] = []
        try:
            _wait_for(Path(f"{written_path}.ids"), 120, producer)
            ids = Path(f"{written_path}.ids").read_text().split()
            for i in range(0, n, VIEWERS_PER_PROCESS):
                mine = ids[i : i + VIEWERS_PER_PROCESS]
                paths = tmp / f"paths{len(viewers)}"
                paths.write_text("\n".join(f"/v1/generations/{gid}/events" for gid in mine))
                out = tmp / f"v{len(viewers)}.jsonl"
                argv = [sys.executable, "-m", "bench.viewers", "127.0.0.1", str(stack.api_port)]
                viewers.append((subprocess.Popen([*argv, f"@{paths}", str(len(mine)), str(out)]), out, mine))
            for proc, out, _ in viewers:
                _wait_for(Path(f"{out}.ready"), 120, proc)  # every viewer has its first events: all are live
            rss0 = _rss_kib(stack.api.pid)
            cpu0, t0 = _cpu_s(stack.api.pid), time.monotonic()
            Path(f"{written_path}.go").touch()
            peak_rss = rss0
            while producer.poll() is None:
                peak_rss = max(peak_rss, _rss_kib(stack.api.pid))
                time.sleep(0.2)
            api_cpu = (_cpu_s(stack.api.pid) - cpu0) / (time.monotonic() - t0)
            for proc, _, _ in viewers:
                proc.wait(120)
        finally:
            for proc in (producer, *(v[0] for v in viewers)):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    written: dict[str, list[list[float]]] = json.loads(written_path.read_text())
    lags: list[float] = []
    write_ms = [(acked - sent) * 1000 for rows in written.values() for _, sent, acked in rows]
    complete = 0
    for _, out, mine in viewers:
        for gid, line in zip(mine, out.read_text().splitlines(), strict=True):
            got, times, *_ = json.loads(line)
            arrived = dict(zip(got, times, strict=True))
            last = int(written[gid][-1][0]) if written[gid] else 0
            complete += bool(got) and got == list(range(1, got[-1] + 1)) and got[-1] > last  # through its done
            lags += [(arrived[int(seq)] - t) * 1000 for seq, t, _ in written[gid] if int(seq) in arrived]
    return {
        "generations": n,
        "events_per_s": round(n * rate),
        "viewers_with_every_event": complete,
        "lag_p50_ms": round(_percentile(lags, 0.5), 2) if lags else None,
        "lag_p99_ms": round(_percentile(lags, 0.99), 2) if lags else None,
        "events_in_lag_stats": len(lags),
        # the producer's own share of the lag (send -> reply): if it grows, the load generator is the bottleneck
        "write_p50_ms": round(_percentile(write_ms, 0.5), 2) if write_ms else None,
        "write_p99_ms": round(_percentile(write_ms, 0.99), 2) if write_ms else None,
        "api_cpu_share": round(api_cpu, 2),
        "api_rss_mib": round(peak_rss / 1024, 1),
    }


def run(n: int = 10_000, rate: float = 0.2, seconds: float = 30.0) -> list[dict[str, Any]]:
    """100 generations, ``n``, and ``n`` with the activity index off, in one sitting."""
    rows = []
    for label, size, env in (
        ("100 generations", 100, None),
        (f"{n} generations", n, None),
        (f"{n} generations, activity index off", n, {"REASONQ_HUB_ACTIVITY_TOPICS": ACTIVITY_OFF}),
    ):
        rows.append({"run": label, **run_one(size, rate, seconds, env)})
    return rows
