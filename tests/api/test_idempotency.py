"""Idempotency-Key: scripts can retry blindly; the same key with another body is a conflict."""

from __future__ import annotations

import concurrent.futures
import secrets

import httpx

from tests.helpers import metric_value, wait_status

SUBMITTED = 'reasonq_generations_submitted_total{route="single"}'


def _submitted(client: httpx.Client) -> float:
    """Generations this API process has created (the suite's tests run one at a time)."""
    return metric_value(client.get("/metrics").text, SUBMITTED)


BODY = {"messages": [{"role": "user", "content": "once only sim:reasoning_tokens=3 sim:content_tokens=3"}]}


def _recent_ids(client: httpx.Client) -> list[str]:
    return [row["id"] for row in client.get("/v1/generations", params={"limit": 100}).json()["data"]]


def test_same_key_same_body_returns_the_original(client: httpx.Client) -> None:
    key = secrets.token_hex(8)
    created_before = _submitted(client)
    first = client.post("/v1/generations", json=BODY, headers={"Idempotency-Key": key})
    # the same request again, with the JSON written differently: still the same request
    again = client.post(
        "/v1/generations",
        content=b'{ "messages" : [ {"content": "once only sim:reasoning_tokens=3 sim:content_tokens=3",'
        b' "role": "user"} ] }',
        headers={"Idempotency-Key": key, "content-type": "application/json"},
    )
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert _recent_ids(client).count(first.json()["id"]) == 1
    assert _submitted(client) - created_before == 1
    wait_status(client, first.json()["id"], {"completed"})


def test_concurrent_retries_create_one_generation(client: httpx.Client, api_url: str) -> None:
    """Sixteen concurrent requests with one key: one id for all, and exactly one generation created (not merely
    equal ids: a second, orphaned generation would pass that)."""
    key = secrets.token_hex(8)
    created_before = _submitted(client)

    def post(_: int) -> str:
        with httpx.Client(base_url=api_url, timeout=30) as c:
            r = c.post("/v1/generations", json=BODY, headers={"Idempotency-Key": key})
            assert r.status_code == 202, r.text
            return str(r.json()["id"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(post, range(16)))
    assert len(ids) == 1
    assert _submitted(client) - created_before == 1
    assert _recent_ids(client).count(ids.pop()) == 1


def test_same_key_other_body_is_409(client: httpx.Client) -> None:
    key = secrets.token_hex(8)
    assert client.post("/v1/generations", json=BODY, headers={"Idempotency-Key": key}).status_code == 202
    other = {"messages": [{"role": "user", "content": "something else"}]}
    r = client.post("/v1/generations", json=other, headers={"Idempotency-Key": key})
    assert r.status_code == 409 and r.json()["error"]["type"] == "conflict"
    assert client.post("/v1/generations", json=BODY, headers={"Idempotency-Key": "x" * 300}).status_code == 422


def test_chat_completions_retry_answers_from_the_same_generation(client: httpx.Client) -> None:
    key = secrets.token_hex(8)
    body = {"model": "reasonq-sim", **BODY}
    first = client.post("/v1/chat/completions", json=body, headers={"Idempotency-Key": key})
    again = client.post("/v1/chat/completions", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert first.headers["x-reasonq-generation-id"] == again.headers["x-reasonq-generation-id"]


def test_issue18_a_claim_left_by_a_crashed_request_expires_in_seconds(
    redis_server: object, client: httpx.Client
) -> None:
    """Issue 18: a request that claimed an Idempotency-Key and died before creating left the key answering 409
    for the whole retention time (24 h). A claim now lives ``CLAIM_TTL_S``; a completed one the retention."""
    import asyncio

    from reasonq.api import idempotency
    from reasonq.shared import keys
    from reasonq.shared.redis import create_redis
    from reasonq.shared.store import IdempotencyKeys

    url = redis_server.url  # type: ignore[attr-defined]
    key = secrets.token_hex(8)

    async def crashed_claim() -> int:
        redis = create_redis(url, max_connections=2)
        try:
            assert (
                await idempotency.claim(
                    IdempotencyKeys(redis), "generations:anonymous", key, "d" * 32, "gen_never_created"
                )
                is None
            )
            return int(await redis.ttl(keys.idempotency_key("generations:anonymous", key)))
        finally:
            await redis.aclose()

    ttl_s = asyncio.run(crashed_claim())
    assert 0 < ttl_s <= idempotency.CLAIM_TTL_S <= 60

    # a completed creation keeps its key for the retention time
    done = secrets.token_hex(8)
    assert client.post("/v1/generations", json=BODY, headers={"Idempotency-Key": done}).status_code == 202

    async def ttl_of(client_key: str) -> int:
        redis = create_redis(url, max_connections=2)
        try:
            return int(await redis.ttl(keys.idempotency_key("generations:anonymous", client_key)))
        finally:
            await redis.aclose()

    assert asyncio.run(ttl_of(done)) > 3_600
