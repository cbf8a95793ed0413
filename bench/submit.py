"""Scenario: submission rate from a batch client (8 threads), with and without keep-alive, in open mode and
with a client key whose rate and concurrency limits are checked on every POST (high enough never to refuse).

The generations are tiny (2 simulated tokens) and run while the submissions go on, as they would."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any

import httpx

from bench.stack import Stack

BODY = {"messages": [{"role": "user", "content": "batch item sim:reasoning_tokens=1 sim:content_tokens=1"}]}


KEY = "bench-key-0123456789abcdef"
KEYED_ENV = {
    "REASONQ_API_KEYS": f"bench:{KEY}",
    "REASONQ_KEY_LIMITS": '{"bench": {"rpm": 100000, "concurrent": 100000}}',
}


def _rate(base_url: str, n: int, threads: int, keep_alive: bool, headers: dict[str, str] | None = None) -> float:
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            limits = httpx.Limits(max_keepalive_connections=1 if keep_alive else 0)
            local.client = httpx.Client(base_url=base_url, timeout=30, limits=limits, headers=headers)
        c: httpx.Client = local.client
        return c

    def post(_: int) -> int:
        return client().post("/v1/generations", json=BODY).status_code

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        codes = list(pool.map(post, range(n)))
    elapsed = time.perf_counter() - t0
    assert all(code == 202 for code in codes), set(codes)
    return n / elapsed


def run(n: int = 2_000, threads: int = 8) -> dict[str, Any]:
    """POSTs per second with and without keep-alive; and with keep-alive as a limited client key."""
    with Stack() as stack:
        result: dict[str, Any] = {
            "posts": n,
            "client_threads": threads,
            "keep_alive_per_s": round(_rate(stack.api_url, n, threads, keep_alive=True)),
            "new_connection_per_s": round(_rate(stack.api_url, n, threads, keep_alive=False)),
        }
    with Stack(env=KEYED_ENV) as stack:
        headers = {"Authorization": f"Bearer {KEY}"}
        result["keyed_keep_alive_per_s"] = round(_rate(stack.api_url, n, threads, keep_alive=True, headers=headers))
    return result
