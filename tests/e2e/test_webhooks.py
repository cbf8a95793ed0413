"""Signed webhooks from a durable outbox (issue 15), to a real receiver that checks every delivery with the
unchanged openai SDK's ``webhooks.unwrap``: each end of a response, a generation and a batch arrives, a receiver
that fails the first tries still gets exactly one accepted delivery per event id, the delivery log shows every
try, and a worker SIGKILLed mid-delivery loses nothing."""

from __future__ import annotations

import base64
import signal
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import openai
import orjson
import pytest

from reasonq.processes import free_port, wait_until
from tests.helpers import submit, wait_status

SECRET = "whsec_" + base64.b64encode(b"reasonq test webhook secret 0001").decode()


class Receiver:
    """An HTTP server that verifies each webhook with the SDK, answers 500 to the first ``fail_first`` tries of
    each event id, and can hold the first try of every event open until released."""

    def __init__(self, fail_first: int = 0, hold_first: bool = False) -> None:
        self.fail_first = fail_first
        self.hold_first = hold_first
        self.release = threading.Event()
        self.tries: Counter[str] = Counter()
        self.accepted: list[Any] = []  # the SDK's parsed events, one per 2xx answered
        self.arrived: dict[str, float] = {}  # object id -> when its accepted delivery arrived
        self.rejected: list[str] = []  # signatures the SDK refused
        self.lock = threading.Lock()
        sdk = openai.OpenAI(api_key="unused")
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                try:
                    event = sdk.webhooks.unwrap(body, dict(self.headers), secret=SECRET)
                except openai.InvalidWebhookSignatureError as e:
                    with receiver.lock:
                        receiver.rejected.append(str(e))
                    self._answer(400)
                    return
                with receiver.lock:
                    receiver.tries[event.id] += 1
                    n = receiver.tries[event.id]
                if n == 1 and receiver.hold_first:
                    receiver.release.wait(30)
                    return  # no answer: the sender is gone by now
                if n <= receiver.fail_first:
                    self._answer(500)
                    return
                with receiver.lock:
                    receiver.accepted.append(event)
                    receiver.arrived[event.data.id] = time.time()
                self._answer(200)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # http.server's 5 drops a burst's connects (SYN retried after 1 s)

        self.server = Server(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks?token=not-for-logs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accepted_types(self) -> dict[str, str]:
        with self.lock:
            return {e.data.id: e.type for e in self.accepted}

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Any:
    made: list[Receiver] = []

    def make(**kwargs: Any) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.stop()


def _env(url: str, **more: str) -> dict[str, str]:
    hooks = [{"url": url, "secret": SECRET}]
    return {"REASONQ_WEBHOOKS": orjson.dumps(hooks).decode(), "REASONQ_WEBHOOK_BACKOFF_S": "0.2", **more}


@pytest.mark.parametrize("topology", ["one-redis", "redis-cluster"])
def test_each_end_arrives_once_accepted_through_three_failures_and_the_log_shows_every_try(
    cluster: Any, receiver: Any, topology: str, request: pytest.FixtureRequest
) -> None:
    hooks = receiver(fail_first=3)
    store = {"REASONQ_REDIS_URL": request.getfixturevalue("redis_cluster").url} if topology == "redis-cluster" else {}
    c = cluster({**_env(hooks.url), **store})  # on a Cluster every outbox script stays in one slot (CROSSSLOT)
    c.env["REASONQ_BATCH_QUEUE_NAME"] = f"{c.queue}-batch"
    c.start_api()
    worker = c.add_worker(queues=f"{c.queue},{c.queue}-batch")
    sdk = openai.OpenAI(base_url=f"{c.url}/v1", api_key="unused", max_retries=0)
    with httpx.Client(base_url=c.url, timeout=30) as client:
        done = sdk.responses.create(model="reasonq-sim", input="hook done sim:content_tokens=3", background=True)
        cut = sdk.responses.create(
            model="reasonq-sim", input="hook cut sim:content_tokens=50", max_output_tokens=16, background=True
        )
        long = sdk.responses.create(
            model="reasonq-sim", input="hook cancel sim:reasoning_tokens=500 sim:tokens_per_s=50", background=True
        )
        wait_status(client, long.id, {"running"})
        sdk.responses.cancel(long.id)
        native = submit(client, "hook native sim:reasoning_tokens=2 sim:content_tokens=2")
        failed = submit(client, "hook refused sim:status=400")
        lines = b"".join(
            orjson.dumps(
                {
                    "custom_id": f"line-{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": "reasonq-sim", "messages": [{"role": "user", "content": f"hook line {i}"}]},
                }
            )
            + b"\n"
            for i in range(5)
        )
        upload = sdk.files.create(file=("hooks.jsonl", lines), purpose="batch")
        batch = sdk.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        expected = {
            done.id: "response.completed",
            cut.id: "response.incomplete",
            long.id: "response.cancelled",
            native: "generation.completed",
            failed: "generation.failed",
            batch.id: "batch.completed",
        }
        wait_until(lambda: hooks.accepted_types() == expected, timeout_s=60, what=f"webhooks {expected}")
        time.sleep(1.0)  # nothing more arrives: no second acceptance, no event per batch line
        assert hooks.accepted_types() == expected
        assert Counter(e.id for e in hooks.accepted) == {f"evt_{oid}": 1 for oid in expected}
        assert set(hooks.tries.values()) == {4} and not hooks.rejected
        log = client.get(f"/v1/webhook_events/evt_{done.id}").json()
        assert (log["type"], log["data"]) == ("response.completed", {"id": done.id})
        assert [a["status_code"] for a in log["attempts"]] == [500, 500, 500, 200]
        assert [a["attempt"] for a in log["attempts"]] == [1, 2, 3, 4]
        assert log["deliveries"] == [
            {"endpoint": hooks.url.split("?")[0], "status": "delivered", "attempts": 4, "next_attempt_at": None}
        ]
        assert client.get(f"/v1/webhook_events/evt_{done.id}", headers={}).status_code == 200
        assert client.get("/v1/webhook_events/evt_gen_unknown").status_code == 404
    text = (worker.log_path.read_text() + c.api.log_path.read_text()) if c.api.log_path else ""
    assert "not-for-logs" not in text and SECRET not in text  # the query token and the secret never logged


def test_a_worker_killed_mid_delivery_loses_nothing(cluster: Any, receiver: Any) -> None:
    hooks = receiver(hold_first=True)
    c = cluster(_env(hooks.url, REASONQ_WEBHOOK_TIMEOUT_S="1"))
    c.start_api()
    first = c.add_worker()
    with httpx.Client(base_url=c.url, timeout=30) as client:
        gid = submit(client, "hook kill sim:content_tokens=3")
        wait_until(lambda: hooks.tries[f"evt_{gid}"] == 1, timeout_s=30, what="the first try, held open")
        first.signal(signal.SIGKILL)
        assert first.proc is not None
        first.proc.wait(10)
        hooks.release.set()
        c.add_worker()
        wait_until(lambda: hooks.accepted_types() == {gid: "generation.completed"}, timeout_s=30, what="redelivery")
        log = client.get(f"/v1/webhook_events/evt_{gid}").json()
    assert hooks.tries[f"evt_{gid}"] == 2  # at least once: the killed worker's try, then the next worker's
    assert log["deliveries"][0]["status"] == "delivered"


def test_a_batch_past_its_window_sends_batch_expired_without_being_read(cluster: Any, receiver: Any) -> None:
    hooks = receiver()
    c = cluster(_env(hooks.url, REASONQ_BATCH_WINDOW_S="2"))
    c.env["REASONQ_BATCH_QUEUE_NAME"] = f"{c.queue}-batch"
    c.start_api()
    c.add_worker(queues=f"{c.queue},{c.queue}-batch")
    lines = [
        {
            "custom_id": "slow",
            "body": {
                "messages": [{"role": "user", "content": "hook slow sim:reasoning_tokens=5000 sim:tokens_per_s=50"}]
            },
        }
    ]
    with httpx.Client(base_url=c.url, timeout=30) as client:
        r = client.post("/v1/batches", json=lines)
        assert r.status_code in (200, 201, 202), r.text
        batch_id = r.json()["id"]
        # no read of the batch from here on: the deliverer notices the deadline itself
        wait_until(lambda: hooks.accepted_types() == {batch_id: "batch.expired"}, timeout_s=30, what="batch.expired")
        assert client.get(f"/v1/batches/{batch_id}").json()["status"] == "expired"
