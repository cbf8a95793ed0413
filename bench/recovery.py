"""Scenario: recovery times with the default settings, for the README's "What survives what" table.

Each case runs one generation at 40 tokens/s with a viewer that resumes with Last-Event-ID the way the
contract says, breaks something, and measures how long it took to recover.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import httpx
import orjson

from bench.stack import Stack

PROMPT = "recovery sim:reasoning_tokens={n} sim:content_tokens={n} sim:tokens_per_s=40"


class Viewer(threading.Thread):
    """Follows a generation to ``done``, resuming on any drop; records each event's arrival time."""

    def __init__(self, base_url: str, generation_id: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.generation_id = generation_id
        self.arrivals: list[tuple[float, int, str]] = []
        self.reconnects = 0

    def run(self) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            last = self.arrivals[-1][1] if self.arrivals else 0
            try:
                with (
                    httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(5, read=30)) as client,
                    client.stream(
                        "GET", f"/v1/generations/{self.generation_id}/events", headers={"Last-Event-ID": str(last)}
                    ) as r,
                ):
                    block: dict[str, str] = {}
                    for line in r.iter_lines():
                        if line:
                            field, _, value = line.partition(": ")
                            block[field] = value
                            continue
                        if "data" in block:
                            self.arrivals.append((time.monotonic(), int(block["id"]), block["event"]))
                            if block["event"] == "done":
                                return
                        block = {}
            except httpx.HTTPError:
                pass
            self.reconnects += 1
            time.sleep(0.1)

    def longest_gap_s(self) -> float:
        times = [t for t, _, _ in self.arrivals]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)


def _submit(stack: Stack, n: int = 120, extra: str = "") -> str:
    body = {"messages": [{"role": "user", "content": PROMPT.format(n=n) + extra + f" {time.monotonic_ns()}"}]}
    return str(httpx.post(f"{stack.api_url}/v1/generations", json=body, timeout=10).json()["id"])


def _record(stack: Stack, gid: str) -> dict[str, Any]:
    return dict(httpx.get(f"{stack.api_url}/v1/generations/{gid}", timeout=10).json())


def _wait(stack: Stack, gid: str, predicate: Any, timeout_s: float = 120) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if predicate(_record(stack, gid)):
            return time.monotonic() - t0
        time.sleep(0.02)
    raise TimeoutError(gid)


def _running_words(n: int) -> Any:
    return lambda r: len(r["reasoning"].split()) >= n


def _running_on(stack: Stack, gid: str) -> Any:
    """The worker process whose log says it started this generation."""
    for proc in stack.procs:
        log = stack.dir / f"{proc.name}.log"
        if proc.name.startswith("worker") and proc.alive() and log.exists():
            if f"generation {gid}: attempt" in log.read_text(errors="replace"):
                return proc
    raise LookupError(gid)


def _worker_case(stack: Stack, sig: int) -> dict[str, Any]:
    gid = _submit(stack)
    _wait(stack, gid, _running_words(5))
    victim = _running_on(stack, gid)
    spare = stack.add_worker()
    stack.worker_ready(spare)
    victim.signal(sig)
    takeover_s = _wait(stack, gid, lambda r: r["attempt"] >= 2)
    if sig == signal.SIGSTOP:
        victim.signal(signal.SIGCONT)
    _wait(stack, gid, lambda r: r["status"] in ("completed", "failed"))
    return {"takeover_s": takeover_s, "status": _record(stack, gid)["status"]}


def run() -> dict[str, Any]:
    """Every recovery case on one stack with default lease, sweep and grace settings."""
    out: dict[str, Any] = {}
    with Stack(sim_tokens_per_s=40, persist=True) as stack:
        # API restart: the viewer's stream ends; it resumes on the new process.
        gid = _submit(stack)
        viewer = Viewer(stack.api_url, gid)
        viewer.start()
        _wait(stack, gid, _running_words(10))
        assert stack.api is not None
        stack.api.stop()
        stack.start_api()
        viewer.join(120)
        out["api_restart"] = {"viewer_gap_s": viewer.longest_gap_s(), "reconnects": viewer.reconnects}

        # Redis restart (graceful, AOF): SSE ends with retry, the worker buffers, the viewer resumes.
        gid = _submit(stack)
        viewer = Viewer(stack.api_url, gid)
        viewer.start()
        _wait(stack, gid, _running_words(10))
        assert stack.redis is not None
        stack.redis.stop()
        time.sleep(1.0)
        stack.redis.start()
        viewer.join(120)
        out["redis_restart_1s_down"] = {
            "viewer_gap_s": viewer.longest_gap_s(),
            "reconnects": viewer.reconnects,
            "status": _record(stack, gid)["status"],
        }

        out["worker_sigkill"] = _worker_case(stack, signal.SIGKILL)
        out["worker_sigstop"] = _worker_case(stack, signal.SIGSTOP)

        # SIGTERM: a long generation outlives the grace period and is handed back.
        gid = _submit(stack, n=800)
        _wait(stack, gid, _running_words(5))
        victim = _running_on(stack, gid)
        spare = stack.add_worker()
        stack.worker_ready(spare)
        victim.signal(signal.SIGTERM)
        out["worker_sigterm"] = {"takeover_s": _wait(stack, gid, lambda r: r["attempt"] >= 2)}

        # Provider 429 twice (Retry-After: 1) before the first token.
        gid = _submit(stack, n=5, extra=" sim:status=429 sim:fail_times=2")
        t0 = time.monotonic()
        _wait(stack, gid, lambda r: r["status"] in ("completed", "failed"))
        events = httpx.get(f"{stack.api_url}/v1/generations/{gid}/events", timeout=30).text
        retries = [orjson.loads(line[6:]) for line in events.splitlines() if line.startswith('data: {"status"')]
        out["provider_429_twice"] = {
            "total_s": time.monotonic() - t0,
            "retry_in_s": [r["retry_in_s"] for r in retries if "retry_in_s" in r],
        }
    return out


if __name__ == "__main__":
    print(orjson.dumps(run(), option=orjson.OPT_INDENT_2).decode())
