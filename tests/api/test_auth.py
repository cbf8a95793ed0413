"""Keys, ownership, share links and per-key limits, on an API with REASONQ_API_KEYS set (real processes)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest
import redis

from reasonq.processes import wait_until
from reasonq.shared import keys
from tests.conftest import ALICE, BOB, CAROL, DAVE, Cluster
from tests.helpers import read_events, text_of, wait_status

QUICK = "sim:reasoning_tokens=3 sim:content_tokens=3"


def _client(cluster: Cluster, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=cluster.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def alice(keyed: Cluster) -> Iterator[httpx.Client]:
    with _client(keyed, ALICE) as c:
        yield c


@pytest.fixture(scope="module")
def bob(keyed: Cluster) -> Iterator[httpx.Client]:
    with _client(keyed, BOB) as c:
        yield c


@pytest.fixture(scope="module")
def anonymous(keyed: Cluster) -> Iterator[httpx.Client]:
    with _client(keyed, None) as c:
        yield c


def _submit(client: httpx.Client, content: str, **params: object) -> str:
    r = client.post("/v1/generations", json={"messages": [{"role": "user", "content": content}], **params})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/generations"),
        ("POST", "/v1/generations"),
        ("GET", "/v1/generations/gen_AAAAAAAAAAAAAAAAAAAAAA"),
        ("GET", "/v1/generations/gen_AAAAAAAAAAAAAAAAAAAAAA/events"),
        ("POST", "/v1/generations/gen_AAAAAAAAAAAAAAAAAAAAAA/cancel"),
        ("POST", "/v1/generations/gen_AAAAAAAAAAAAAAAAAAAAAA/share"),
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/batches"),
        ("GET", "/v1/batches/batch_AAAAAAAAAAAAAAAAAAAAAA"),
    ],
)
@pytest.mark.parametrize("credential", [None, "Bearer wrong-key-0123456789", f"Basic {ALICE}", "Bearer", ALICE])
def test_every_endpoint_but_health_asks_for_a_key(
    keyed: Cluster, method: str, path: str, credential: str | None
) -> None:
    headers = {"Authorization": credential} if credential else {}
    body = {"messages": [{"role": "user", "content": "x"}]} if method == "POST" else None
    r = httpx.request(method, keyed.url + path, headers=headers, json=body, timeout=10)
    assert r.status_code == 401, (path, r.text)
    assert r.json()["error"]["type"] == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert ALICE not in r.text


def test_health_and_pages_need_no_key(anonymous: httpx.Client, alice: httpx.Client) -> None:
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/readyz").status_code in (200, 503)
    assert anonymous.get("/metrics").status_code == 200
    assert anonymous.get("/").status_code == 200  # static code only; data needs a key or a share link
    gid = _submit(alice, f"a page {QUICK}")
    page = anonymous.get(f"/g/{gid}")  # the page's code; what it shows still needs a key or a share link
    assert page.status_code == 200 and "alice" not in page.text and "a page" not in page.text
    assert anonymous.get("/g/gen_AAAAAAAAAAAAAAAAAAAAAA").status_code == 404  # an id that does not exist


def test_plain_and_hashed_keys_both_work(alice: httpx.Client, bob: httpx.Client) -> None:
    for client in (alice, bob):
        gid = _submit(client, f"hello {QUICK}")
        assert wait_status(client, gid, {"completed"})["status"] == "completed"


def test_another_keys_generation_is_404_like_an_unknown_one(alice: httpx.Client, bob: httpx.Client) -> None:
    gid = _submit(alice, f"mine {QUICK}")
    wait_status(alice, gid, {"completed"})
    unknown = "gen_AAAAAAAAAAAAAAAAAAAAAA"
    for suffix, method in [
        ("", "GET"),
        ("/events", "GET"),
        ("/viewers", "GET"),
        ("/cancel", "POST"),
        ("/share", "POST"),
    ]:
        theirs = bob.request(method, f"/v1/generations/{gid}{suffix}")
        never = bob.request(method, f"/v1/generations/{unknown}{suffix}")
        assert theirs.status_code == never.status_code == 404, (suffix, theirs.text)
        assert theirs.json() == never.json()
    assert gid in {g["id"] for g in alice.get("/v1/generations").json()["data"]}
    assert gid not in {g["id"] for g in bob.get("/v1/generations").json()["data"]}
    assert bob.delete(f"/v1/generations/{gid}/share").status_code == 404


def test_idempotency_keys_are_per_client_key(alice: httpx.Client, bob: httpx.Client) -> None:
    body = {"messages": [{"role": "user", "content": f"same {QUICK}"}]}
    headers = {"Idempotency-Key": "shared-key-1"}
    a = alice.post("/v1/generations", json=body, headers=headers)
    b = bob.post("/v1/generations", json=body, headers=headers)
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] != b.json()["id"]  # bob cannot learn alice's id by reusing her key
    again = alice.post("/v1/generations", json=body, headers=headers)
    assert again.json()["id"] == a.json()["id"]


def test_batches_belong_to_their_key(alice: httpx.Client, bob: httpx.Client) -> None:
    line = {"custom_id": "a", "body": {"messages": [{"role": "user", "content": f"b {QUICK}"}]}}
    r = alice.post("/v1/batches", content=orjson.dumps(line) + b"\n", headers={"content-type": "application/jsonl"})
    assert r.status_code == 200, r.text
    batch_id = r.json()["id"]
    assert alice.get(f"/v1/batches/{batch_id}").status_code == 200
    for suffix, method in [("", "GET"), ("/results", "GET"), ("/events", "GET"), ("/cancel", "POST")]:
        assert bob.request(method, f"/v1/batches/{batch_id}{suffix}").status_code == 404


def test_share_link_opens_one_generation_read_only(
    keyed: Cluster, alice: httpx.Client, anonymous: httpx.Client
) -> None:
    prompt = f"share me {QUICK}"
    gid = _submit(alice, prompt)
    other = _submit(alice, f"not shared {QUICK}")
    wait_status(alice, gid, {"completed"})
    r = alice.post(f"/v1/generations/{gid}/share", json={"ttl_s": 600})
    assert r.status_code == 200, r.text
    share = r.json()
    token = share["token"]
    assert share["page_url"] == f"/g/{gid}?token={token}"
    assert share["expires_at"] == pytest.approx(time.time() + 600, abs=5)

    # The token alone (no header) opens the record, the events and the viewer count of that generation.
    record = anonymous.get(f"/v1/generations/{gid}", params={"token": token})
    assert record.status_code == 200
    events = read_events(anonymous, gid, token=token)
    assert text_of(events) == (record.json()["reasoning"], record.json()["content"])
    assert anonymous.get(f"/v1/generations/{gid}/viewers", params={"token": token}).status_code == 200
    assert anonymous.get(share["events_url"]).status_code == 200

    # And nothing else: not another generation, not writes, not lists, not creation.
    assert anonymous.get(f"/v1/generations/{other}", params={"token": token}).status_code == 404
    assert anonymous.post(f"/v1/generations/{gid}/cancel", params={"token": token}).status_code == 401
    assert anonymous.post(f"/v1/generations/{gid}/share", params={"token": token}).status_code == 401
    assert anonymous.get("/v1/generations", params={"token": token}).status_code == 401
    body = {"messages": [{"role": "user", "content": "x"}]}
    assert anonymous.post("/v1/generations", params={"token": token}, json=body).status_code == 401

    # A tampered token is the same 404 as an unknown id.
    expires, _, mac = token.partition(".")
    for bad in [f"{int(expires) + 1000}.{mac}", f"{expires}.{mac[:-2]}AA", "garbage", "1.2.3"]:
        assert anonymous.get(f"/v1/generations/{gid}", params={"token": bad}).status_code == 404


def test_share_links_expire_and_can_be_revoked(alice: httpx.Client, anonymous: httpx.Client) -> None:
    gid = _submit(alice, f"short-lived {QUICK}")
    short = alice.post(f"/v1/generations/{gid}/share", json={"ttl_s": 1}).json()["token"]
    long = alice.post(f"/v1/generations/{gid}/share").json()["token"]

    def expired() -> bool:  # the link says 1 s; no fixed sleep (issue 18)
        return anonymous.get(f"/v1/generations/{gid}", params={"token": short}).status_code != 200

    started = time.monotonic()
    wait_until(expired, timeout_s=5, what="the 1 s share link's expiry")
    assert time.monotonic() - started < 2.5
    r = anonymous.get(f"/v1/generations/{gid}/events", params={"token": short})
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "share_link_expired"
    assert anonymous.get(f"/v1/generations/{gid}", params={"token": long}).status_code == 200
    assert alice.delete(f"/v1/generations/{gid}/share").status_code == 204
    assert anonymous.get(f"/v1/generations/{gid}", params={"token": long}).status_code == 404
    fresh = alice.post(f"/v1/generations/{gid}/share").json()["token"]
    assert anonymous.get(f"/v1/generations/{gid}", params={"token": fresh}).status_code == 200


def test_model_and_max_tokens_limits_refuse_before_writing(keyed: Cluster) -> None:
    r = redis.Redis.from_url(keyed.env["REASONQ_REDIS_URL"])

    def carols_keys() -> dict[bytes, object]:
        return {k: r.dump(k) for k in [*r.scan_iter("rq:key:{carol}:*"), b"rq:recent:carol"]}

    with _client(keyed, CAROL) as carol:
        before = carols_keys()
        denied = carol.post(
            "/v1/generations", json={"model": "gpt-big", "messages": [{"role": "user", "content": "x"}]}
        )
        assert denied.status_code == 403
        assert "gpt-big" in denied.json()["error"]["message"]
        too_many = carol.post(
            "/v1/generations", json={"max_tokens": 501, "messages": [{"role": "user", "content": "x"}]}
        )
        assert too_many.status_code == 422
        assert too_many.json()["error"]["message"].startswith("max_tokens: at most 500")
        assert carols_keys() == before  # nothing written, and no request counted
        assert carol.get("/v1/models").json()["data"][0]["id"] == "reasonq-sim"
        # Without max_tokens the key's cap is the request's max_tokens.
        gid = _submit(carol, f"capped {QUICK}")
        request = orjson.loads(r.hget(keys.record_key(gid), "request"))  # type: ignore[arg-type]
        assert request["max_tokens"] == 500


def test_rate_limit_is_429_with_retry_after_and_nothing_half_created(keyed: Cluster) -> None:
    r = redis.Redis.from_url(keyed.env["REASONQ_REDIS_URL"])
    r.delete(keys.key_rate_key("carol"))
    with _client(keyed, CAROL) as carol:
        body = {"messages": [{"role": "user", "content": f"rate {QUICK}"}]}
        first = carol.post("/v1/generations", json=body, headers={"Idempotency-Key": "rate-1"})
        assert first.status_code == 202
        ids = [first.json()["id"]] + [_submit(carol, f"rate {i} {QUICK}") for i in range(2)]
        listed_before = {g["id"] for g in carol.get("/v1/generations").json()["data"]}
        over = carol.post("/v1/generations", json=body)
        assert over.status_code == 429, over.text
        assert over.json()["error"]["type"] == "rate_limited"
        assert 1 <= int(over.headers["Retry-After"]) <= 60
        assert {g["id"] for g in carol.get("/v1/generations").json()["data"]} == listed_before
        assert set(ids) <= listed_before
        # A retry of an earlier request is not a new request: it answers with the original.
        again = carol.post("/v1/generations", json=body, headers={"Idempotency-Key": "rate-1"})
        assert again.status_code == 202 and again.json()["id"] == ids[0]
        # The OpenAI front door counts against the same limit.
        sdk = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key=CAROL, max_retries=0)
        with pytest.raises(openai.RateLimitError):
            sdk.chat.completions.create(model="reasonq-sim", messages=[{"role": "user", "content": "x"}])


def test_concurrency_limit_counts_queued_and_running(keyed: Cluster) -> None:
    with _client(keyed, DAVE) as dave:
        slow = _submit(dave, "slow sim:reasoning_tokens=200 sim:content_tokens=1 sim:tokens_per_s=50")
        over = dave.post("/v1/generations", json={"messages": [{"role": "user", "content": f"two {QUICK}"}]})
        assert over.status_code == 429
        assert over.json()["error"]["type"] == "too_many_running"
        assert over.headers["Retry-After"] == "1"
        assert dave.post(f"/v1/generations/{slow}/cancel").status_code in (200, 202)
        wait_status(dave, slow, {"cancelled"})
        assert dave.post("/v1/generations", json={"messages": [{"role": "user", "content": QUICK}]}).status_code == 202


def test_openai_sdk_authenticates_with_its_api_key(keyed: Cluster) -> None:
    sdk = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key=ALICE, max_retries=0)
    completion = sdk.chat.completions.create(model="reasonq-sim", messages=[{"role": "user", "content": QUICK}])
    assert completion.choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="nope-nope-nope-nope", max_retries=0).models.list()


def test_keys_never_reach_logs_or_records(keyed: Cluster, alice: httpx.Client) -> None:
    gid = _submit(alice, f"secret-free {QUICK}")
    wait_status(alice, gid, {"completed"})
    r = redis.Redis.from_url(keyed.env["REASONQ_REDIS_URL"])
    dump = b"".join(
        orjson.dumps({k.decode(): v.decode(errors="replace") for k, v in r.hgetall(key).items()})
        for key in r.scan_iter(keys.record_key(gid) + "*")
        if r.type(key) == b"hash"
    )
    assert dump and ALICE.encode() not in dump and b"alice" in dump  # owned by name, never by secret
    assert keyed.api is not None and keyed.api.log_path is not None
    logs = keyed.api.log_path.read_text() + "".join(
        w.log_path.read_text() for w in keyed.workers.started if w.log_path is not None
    )
    for secret in (ALICE, BOB, CAROL, DAVE, "secret-free"):
        assert secret not in logs
    assert "API keys required; 4 key(s): alice, bob, carol, dave" in logs


def test_issue12_a_share_token_has_one_spelling(alice: httpx.Client, anonymous: httpx.Client) -> None:
    """Before: ``0<expiry>.<mac>`` was accepted as a second valid string for the same grant. After: only the
    token as issued opens the generation."""
    gid = _submit(alice, f"one spelling {QUICK}")
    token = alice.post(f"/v1/generations/{gid}/share").json()["token"]
    assert anonymous.get(f"/v1/generations/{gid}", params={"token": token}).status_code == 200
    assert anonymous.get(f"/v1/generations/{gid}", params={"token": "0" + token}).status_code == 404


def test_issue12_the_owners_valid_key_wins_over_a_bad_share_token(alice: httpx.Client, bob: httpx.Client) -> None:
    """Before: the owner's own key plus a bad ``?token=`` answered 404 on their own generation. After: a valid key
    that owns the generation is enough; another key with a bad token still gets 404."""
    gid = _submit(alice, f"own key wins {QUICK}")
    assert alice.get(f"/v1/generations/{gid}", params={"token": "1.garbage"}).status_code == 200
    assert bob.get(f"/v1/generations/{gid}", params={"token": "1.garbage"}).status_code == 404
