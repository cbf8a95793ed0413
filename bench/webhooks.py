"""Scenario: how soon a webhook follows the end it announces (issue 15).

A receiver on 127.0.0.1 answers 200 to every delivery and notes when each arrived; the figure is arrival minus
the generation's ``finished_at`` (both on this machine's clock), for generations ending one at a time (the idle
deliverer's poll) and for a burst ending together (one pass sends them all, concurrently).
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson

from bench.latency import pct
from bench.stack import Stack
from reasonq.processes import free_port, wait_until

SECRET = "bench webhook secret"


class _Receiver(ThreadingHTTPServer):
    request_queue_size = 256  # http.server's 5 drops a burst's connects (each SYN retried after 1 s)

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.arrived[orjson.loads(body)["data"]["id"]] = time.time()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        self.daemon_threads = True


def _lags_ms(client: httpx.Client, receiver: _Receiver, gids: list[str]) -> list[float]:
    wait_until(lambda: all(g in receiver.arrived for g in gids), timeout_s=60, what="every webhook")
    return [(receiver.arrived[g] - client.get(f"/v1/generations/{g}").json()["finished_at"]) * 1000 for g in gids]


def run(one_by_one: int = 20, burst: int = 50) -> dict[str, Any]:
    """End-to-delivery lag of ``one_by_one`` generations in turn, then of ``burst`` ending together."""
    receiver = _Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hooks = [{"url": f"http://127.0.0.1:{receiver.server_port}/hooks", "secret": SECRET}]
    try:
        with Stack(env={"REASONQ_WEBHOOKS": orjson.dumps(hooks).decode()}) as stack:
            stack.worker_ready(stack.add_worker())
            body = {"messages": [{"role": "user", "content": ""}]}
            with httpx.Client(base_url=stack.api_url, timeout=30) as client:

                def submit(text: str) -> str:
                    body["messages"][0]["content"] = f"{text} {time.time()} sim:content_tokens=3"
                    return str(client.post("/v1/generations", json=body).json()["id"])

                single = []
                for i in range(one_by_one):
                    gid = submit(f"hook {i}")
                    single += _lags_ms(client, receiver, [gid])
                together = _lags_ms(client, receiver, [submit(f"burst {i}") for i in range(burst)])
    finally:
        receiver.shutdown()
        receiver.server_close()
    return {
        "one_by_one": {"n": one_by_one, "p50_ms": pct(single, 0.5), "p99_ms": pct(single, 0.99)},
        "burst": {"n": burst, "p50_ms": pct(together, 0.5), "p99_ms": pct(together, 0.99)},
    }
