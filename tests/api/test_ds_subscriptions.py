"""Issue 17: the Durable Streams subscription APIs (PROTOCOL.md 6-7) beyond the protocol's own suite: wakes are
signed with a key the JWKS publishes, retried on failure with the schedule in Redis, delivered once per wake by
several API processes and after a restart, re-issued (and the old one fenced) when a lease runs out; input and
webhook URLs are checked; subscriptions belong to their key; the signing key and wake tokens stay out of Redis and
logs."""

from __future__ import annotations

import base64
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from reasonq.api.ds_signing import WebhookSigner
from reasonq.processes import free_port, wait_until
from tests.conftest import ALICE, BOB, Cluster

JSON = {"content-type": "application/json"}


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify(jwks: dict[str, Any], raw: bytes, header: str) -> bool:
    """A receiver's check of ``Webhook-Signature`` (PROTOCOL.md 7.1), written from the protocol text."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    key = next((k for k in jwks["keys"] if k["kid"] == parts["kid"]), None)
    if key is None or abs(time.time() - int(parts["t"])) > 300:
        return False
    public = Ed25519PublicKey.from_public_bytes(_b64url_decode(key["x"]))
    try:
        public.verify(_b64url_decode(parts["ed25519"]), parts["t"].encode() + b"." + raw)
    except InvalidSignature:
        return False
    return True


class Receiver:
    """A webhook receiver: answers each POST from ``answers`` (status, JSON body) in turn, then the last one."""

    def __init__(self, answers: list[tuple[int, Any]], port: int | None = None) -> None:
        self.answers = answers
        self.got: list[tuple[bytes, str, int]] = []  # raw body, signature header, status answered
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["content-length"]))
                with receiver.lock:
                    status, body = receiver.answers[min(len(receiver.got), len(receiver.answers) - 1)]
                    receiver.got.append((raw, self.headers.get("webhook-signature", ""), status))
                payload = orjson.dumps(body)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port or free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, status: int | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [orjson.loads(raw) for raw, _, s in self.got if status is None or s == status]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Any]:
    made: list[Receiver] = []

    def make(answers: list[tuple[int, Any]], port: int | None = None) -> Receiver:
        made.append(Receiver(answers, port))
        return made[-1]

    yield make
    for r in made:
        r.stop()


def _unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


def _create(http: httpx.Client, sub: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    r = http.put(f"/v1/stream/__ds/subscriptions/{sub}", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def _put_stream(http: httpx.Client, path: str, body: Any, headers: dict[str, str] | None = None) -> None:
    r = http.put(f"/v1/stream/{path}", content=orjson.dumps(body), headers={**JSON, **(headers or {})})
    assert r.status_code == 201, r.text


def _append(http: httpx.Client, path: str, body: Any) -> str:
    r = http.post(f"/v1/stream/{path}", content=orjson.dumps(body), headers=JSON)
    assert r.status_code == 204, r.text
    return r.headers["stream-next-offset"]


def _status(http: httpx.Client, sub: str) -> str:
    return str(http.get(f"/v1/stream/__ds/subscriptions/{sub}").json()["status"])


def _callback(http: httpx.Client, wake: dict[str, Any], acks: list[dict[str, str]], done: bool = True) -> Any:
    body = {"wake_id": wake["wake_id"], "generation": wake["generation"], "acks": acks, "done": done}
    return http.post(wake["callback_url"], json=body, headers={"authorization": f"Bearer {wake['callback_token']}"})


@pytest.mark.parametrize("topology", ["one-redis", "redis-cluster"])
def test_a_webhook_wake_is_signed_retried_until_delivered_and_acked_once(
    cluster: Any, receivers: Any, topology: str, request: pytest.FixtureRequest, own_redis_url: str
) -> None:
    """The receiver fails twice (500) then accepts: the same wake (generation, wake id) is retried with the
    protocol's backoff, every try verifies against the JWKS, the subscription shows ``failed`` meanwhile; the
    callback acks the tail and ends the wake, a second use of it is fenced, and the next append is a new
    generation."""
    hook = receivers([(500, {}), (500, {}), (200, {})])
    redis_url = request.getfixturevalue("redis_cluster").url if topology == "redis-cluster" else own_redis_url
    c = cluster({"REASONQ_REDIS_URL": redis_url})
    with httpx.Client(base_url=c.start_api(), timeout=10) as http:
        sub, path = _unique("sub"), _unique("orders") + "/a"
        created = _create(
            http, sub, {"type": "webhook", "pattern": path.split("/")[0] + "/*", "webhook": {"url": hook.url}}
        )
        jwks = http.get("/v1/stream/__ds/jwks.json").json()
        assert created["webhook"]["signing"]["kid"] in {k["kid"] for k in jwks["keys"]}
        _put_stream(http, path, {"n": 1})
        wait_until(lambda: len(hook.got) >= 1, timeout_s=5, what="the first try")
        wait_until(lambda: _status(http, sub) == "failed", timeout_s=5, what="the failed status")
        wait_until(lambda: len(hook.got) >= 3, timeout_s=10, what="two retries (1 s, then 2 s)")
        tries = hook.bodies()
        assert len({(b["wake_id"], b["generation"]) for b in tries}) == 1, tries
        assert all(verify(jwks, raw, sig) for raw, sig, _ in hook.got)
        wake = tries[-1]
        [info] = [s for s in wake["streams"] if s["path"] == path]
        assert info["has_pending"] and info["acked_offset"] == "0000000000000000_0000000000000000"
        ok = _callback(http, wake, [{"stream": path, "offset": info["tail_offset"]}])
        assert ok.status_code == 200 and ok.json() == {"ok": True, "next_wake": False}, ok.text
        again = _callback(http, wake, [{"stream": path, "offset": info["tail_offset"]}])
        assert again.status_code == 409 and again.json()["error"]["code"] == "FENCED"
        shown = http.get(f"/v1/stream/__ds/subscriptions/{sub}").json()
        assert shown["status"] == "active" and shown["streams"][0]["acked_offset"] == info["tail_offset"]

        tail = _append(http, path, {"n": 2})
        wait_until(lambda: len(hook.got) >= 4, timeout_s=5, what="the next wake")
        second = hook.bodies()[-1]
        assert second["generation"] == wake["generation"] + 1 and second["wake_id"] != wake["wake_id"]
        assert [s["tail_offset"] for s in second["streams"] if s["path"] == path] == [tail]
        assert len(hook.got) == 4  # nothing more: one delivery per wake once accepted


def test_wakes_outlive_an_api_process_and_two_processes_deliver_each_once(
    cluster: Any, receivers: Any, own_redis_url: str
) -> None:
    """Two API processes over one Redis; the receiver is down when the first wake is issued. The process that
    tried is SIGKILLed; the receiver comes up; the other process delivers the wake from the schedule in Redis.
    Then 20 appends spread over both processes: the receiver (answering done) sees no wake twice, and the
    cursor ends at the tail."""
    port = free_port()
    c = cluster({"REASONQ_REDIS_URL": own_redis_url})
    first = c.start_api()
    second = c.add_api()
    sub, path = _unique("sub"), _unique("jobs")
    with httpx.Client(base_url=first, timeout=10) as a, httpx.Client(base_url=second, timeout=10) as b:
        _create(a, sub, {"type": "webhook", "streams": [path], "webhook": {"url": f"http://127.0.0.1:{port}/hook"}})
        _put_stream(a, path, {"n": 0})  # the first process is told, and tries at once
        wait_until(lambda: _status(b, sub) == "failed", timeout_s=5, what="a failed try")
        assert c.api is not None and c.api.proc is not None
        os.kill(c.api.pid, signal.SIGKILL)
        c.api.proc.wait(10)
        hook = receivers([(200, {"done": True})], port=port)
        # a retry (or, had the kill caught a try in flight, its hold running out) from the surviving process
        wait_until(lambda: len(hook.got) >= 1, timeout_s=30, what="the wake, delivered by the surviving process")

        clients = [b, httpx.Client(base_url=c.add_api(), timeout=10)]
        tail = ""
        for i in range(20):
            tail = _append(clients[i % 2], path, {"n": i + 1})

        def caught_up() -> bool:
            shown = b.get(f"/v1/stream/__ds/subscriptions/{sub}").json()
            return bool(shown["streams"][0]["acked_offset"] == tail)

        wait_until(caught_up, timeout_s=15, what="the cursor at the tail")
        time.sleep(1.0)  # anything still in flight arrives
        delivered = [(x["wake_id"], x["generation"]) for x in hook.bodies(200)]
        assert len(delivered) == len(set(delivered)), delivered
        generations = [g for _, g in delivered]
        assert generations == sorted(generations)
        clients[1].close()


def test_a_lease_that_runs_out_wakes_again_and_fences_the_old_wake(
    cluster: Any, receivers: Any, own_redis_url: str
) -> None:
    """A receiver that accepts but never calls back: when the lease (1 s + the 1 s delivery timeout) runs out the
    subscription is woken again with the next generation; the first wake's callback is then fenced. Pull-wake:
    a claim holds the lease against another worker until it runs out; the old holder's ack is then fenced."""
    hook = receivers([(202, {})])
    c = cluster({"REASONQ_WEBHOOK_TIMEOUT_S": "1", "REASONQ_REDIS_URL": own_redis_url})
    with httpx.Client(base_url=c.start_api(), timeout=10) as http:
        sub, path = _unique("sub"), _unique("leased")
        _create(http, sub, {"type": "webhook", "streams": [path], "webhook": {"url": hook.url}, "lease_ttl_ms": 1000})
        _put_stream(http, path, {"n": 1})
        wait_until(lambda: len(hook.got) >= 2, timeout_s=8, what="a second wake after the lease")
        old, new = hook.bodies()[:2]
        assert new["generation"] == old["generation"] + 1
        tail = new["streams"][0]["tail_offset"]
        fenced = _callback(http, old, [{"stream": path, "offset": tail}])
        assert fenced.status_code == 409 and fenced.json()["error"]["code"] == "FENCED"
        assert _callback(http, new, [{"stream": path, "offset": tail}]).status_code == 200

        pool, pull, events = _unique("wake/pool"), _unique("pull"), _unique("work")
        _put_stream(http, pool, [])
        _create(http, pull, {"type": "pull-wake", "streams": [events], "wake_stream": pool, "lease_ttl_ms": 1000})
        _put_stream(http, events, {"job": 1})
        wait_until(lambda: len(http.get(f"/v1/stream/{pool}").json()) >= 1, timeout_s=5, what="a wake event")
        claim_url = f"/v1/stream/__ds/subscriptions/{pull}/claim"
        one = http.post(claim_url, json={"worker": "w1"}).json()
        busy = http.post(claim_url, json={"worker": "w2"})
        assert busy.status_code == 409 and busy.json()["error"]["current_holder"] == "w1"
        time.sleep(1.3)
        two = http.post(claim_url, json={"worker": "w2"})
        assert two.status_code == 200 and two.json()["generation"] == one["generation"] + 1, two.text
        ack = {"wake_id": one["wake_id"], "generation": one["generation"], "done": True}
        late = http.post(
            f"/v1/stream/__ds/subscriptions/{pull}/ack", json=ack, headers={"authorization": f"Bearer {one['token']}"}
        )
        assert late.status_code == 409 and late.json()["error"]["code"] == "FENCED"


BAD_BODIES: list[tuple[Any, str]] = [
    ({"type": "webhook", "pattern": "a/*"}, "webhook.url"),
    ({"type": "pull-wake", "pattern": "a/*"}, "wake_stream"),
    ({"type": "webhook", "webhook": {"url": "https://example.com/h"}}, "pattern, streams"),
    ({"type": "poll", "pattern": "a/*"}, "type"),
    ({"type": "pull-wake", "pattern": "a/*", "wake_stream": "w", "lease_ttl_ms": 10}, "lease_ttl_ms"),
    ({"type": "pull-wake", "pattern": "a/*", "wake_stream": "w", "streams": "a"}, "streams"),
    ({"type": "pull-wake", "pattern": "a/*", "wake_stream": "w", "colour": "red"}, "colour"),
    ({"type": "pull-wake", "streams": ["w", "x"], "wake_stream": "/w"}, "wake stream"),
    ("not json", "JSON"),
]
UNSAFE_URLS = [
    "http://10.0.0.1/hook",
    "http://example.com/hook",
    "https://10.1.2.3/hook",
    "https://192.168.1.1/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://[::1]/hook",
    "https://[fd00::1]/hook",
    "https://[::ffff:10.0.0.1]/hook",
    "https://localhost/hook",
    "https://user:pw@example.com/hook",
    "ftp://example.com/hook",
    "https:///nohost",
]


def test_subscription_input_and_webhook_urls_are_checked(client: httpx.Client) -> None:
    """Every malformed body is a 400 ``INVALID_REQUEST`` naming the field; every URL the protocol's SSRF rule
    refuses is a 400 ``WEBHOOK_URL_REJECTED``; token problems are 401, stale wakes 409; nothing is a 500."""
    sub = _unique("bad")
    for body, named in BAD_BODIES:
        content = body.encode() if isinstance(body, str) else orjson.dumps(body)
        r = client.put(f"/v1/stream/__ds/subscriptions/{sub}", content=content, headers=JSON)
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_REQUEST", (body, r.text)
        assert named in r.json()["error"]["message"], (body, r.text)
    for url in UNSAFE_URLS:
        r = client.put(
            f"/v1/stream/__ds/subscriptions/{sub}", json={"type": "webhook", "pattern": "a/*", "webhook": {"url": url}}
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "WEBHOOK_URL_REJECTED", (url, r.text)
    assert client.get(f"/v1/stream/__ds/subscriptions/{sub}").status_code == 404

    hook_sub = _unique("hooked")
    _create(client, hook_sub, {"type": "webhook", "streams": ["x"], "webhook": {"url": "https://example.com/h"}})
    assert client.post(f"/v1/stream/__ds/subscriptions/{hook_sub}/claim", json={"worker": "w"}).status_code == 400
    conflict = client.put(
        f"/v1/stream/__ds/subscriptions/{hook_sub}",
        json={"type": "webhook", "streams": ["y"], "webhook": {"url": "https://example.com/h"}},
    )
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "SUBSCRIPTION_ALREADY_EXISTS"
    wake = {"wake_id": "w_1", "generation": 1, "done": True}
    callback = f"/v1/stream/__ds/subscriptions/{hook_sub}/callback"
    assert client.post(callback, json=wake).status_code == 401
    assert client.post(callback, json=wake, headers={"authorization": "Bearer nonsense"}).status_code == 401
    forged = "0" * 32 + ".1." + "A" * 32  # well-formed, names no subscription
    assert client.post(callback, json=wake, headers={"authorization": f"Bearer {forged}"}).status_code == 404
    for reserved in ("/v1/stream/__ds", "/v1/stream/__ds/other"):
        assert client.put(reserved, content=b"x", headers={"content-type": "text/plain"}).status_code == 400
        assert client.get(reserved).status_code in (400, 404)
    assert client.delete(f"/v1/stream/__ds/subscriptions/{hook_sub}").status_code == 204
    assert client.get(f"/v1/stream/__ds/subscriptions/{hook_sub}").status_code == 404


def test_subscriptions_belong_to_the_key_that_created_them(keyed: Cluster) -> None:
    """With keys configured: another key's subscription is a 404, a pattern only links its own key's streams,
    and loopback webhooks are refused (the protocol's development exception is for open deployments)."""
    alice = {"authorization": f"Bearer {ALICE}"}
    bob = {"authorization": f"Bearer {BOB}"}
    sub, folder = _unique("mine"), _unique("events")
    with httpx.Client(base_url=keyed.url, timeout=10) as http:
        _put_stream(http, f"{folder}/pool", [], alice)
        spec = {"type": "pull-wake", "pattern": f"{folder}/*", "wake_stream": f"{folder}/pool"}
        _create(http, sub, spec, alice)
        assert http.get(f"/v1/stream/__ds/subscriptions/{sub}", headers=bob).status_code == 404
        assert http.get(f"/v1/stream/__ds/subscriptions/{sub}").status_code == 401
        assert (
            http.post(f"/v1/stream/__ds/subscriptions/{sub}/claim", json={"worker": "b"}, headers=bob).status_code
            == 404
        )
        _put_stream(http, f"{folder}/bobs", {"n": 1}, bob)
        _put_stream(http, f"{folder}/alices", {"n": 1}, alice)
        shown = http.get(f"/v1/stream/__ds/subscriptions/{sub}", headers=alice).json()
        # the wake stream matches the pattern too, but is never linked: each wake would wake it again
        assert {s["path"] for s in shown["streams"]} == {f"{folder}/alices"}
        loop = {"type": "webhook", "pattern": "x/*", "webhook": {"url": "http://127.0.0.1:9/hook"}}
        r = http.put(f"/v1/stream/__ds/subscriptions/{_unique('loop')}", json=loop, headers=alice)
        assert r.status_code == 400 and r.json()["error"]["code"] == "WEBHOOK_URL_REJECTED"


SEED = os.urandom(32)  # random: no other test's data can contain it by chance


def _all_values(r: redis.Redis) -> Iterator[bytes]:
    for key in r.scan_iter(count=1000):
        kind = r.type(key)
        if kind == b"string":
            yield r.get(key) or b""
        elif kind == b"hash":
            yield from r.hgetall(key).values()
        elif kind == b"set":
            yield from r.smembers(key)
        elif kind == b"stream":
            for _, fields in r.xrange(key):
                yield from fields.values()


def test_the_signing_key_and_wake_tokens_stay_out_of_redis_and_logs(
    cluster: Any, receivers: Any, logs_dir: Path, own_redis_url: str
) -> None:
    """A configured key is the kid every process announces and signs with; its seed is in no Redis value and no
    log line, and neither is a wake's token (Redis keeps its digest)."""
    seed_text = base64.b64encode(SEED).decode()
    hook = receivers([(200, {})])
    c = cluster({"REASONQ_DS_WEBHOOK_SIGNING_KEY": seed_text, "REASONQ_REDIS_URL": own_redis_url})
    with httpx.Client(base_url=c.start_api(), timeout=10) as http:
        other = c.add_api()
        sub, path = _unique("secret"), _unique("s")
        _create(http, sub, {"type": "webhook", "streams": [path], "webhook": {"url": hook.url}})
        _put_stream(http, path, {"n": 1})
        wait_until(lambda: len(hook.got) >= 1, timeout_s=5, what="a wake")
        kid = WebhookSigner(SEED).kid
        raw, signature, _ = hook.got[0]
        for api in (str(http.base_url), other):  # any process's JWKS verifies any process's signature
            jwks = httpx.get(f"{api}/v1/stream/__ds/jwks.json").json()
            assert kid in [k["kid"] for k in jwks["keys"]] and verify(jwks, raw, signature)
        assert f"kid={kid}," in signature
        token = orjson.loads(raw)["callback_token"]
        secrets_ = [SEED, seed_text.encode(), token.encode(), token.rsplit(".", 1)[1].encode()]
        values = list(_all_values(redis.Redis.from_url(c.env["REASONQ_REDIS_URL"])))
        assert not [v for v in values for s in secrets_ if s in v]
        logs = b"".join(p.read_bytes() for p in logs_dir.glob(f"api-{c.name}*.log"))
        assert not [s for s in secrets_ if s in logs]
