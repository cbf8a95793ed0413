"""The store's scripts against a real redis-server: claims, fencing, idempotent writes, retention."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from reasonq.processes import RedisServer
from shared import keys
from shared.events import StatusEvent, encode_delta, encode_event
from shared.redis import create_redis
from shared.schemas import GenerationCreate, Message
from shared.store import GenerationStore

T = TypeVar("T")


@pytest.fixture
def with_store(redis_server: RedisServer) -> Callable[[Callable[[GenerationStore], Awaitable[T]]], T]:
    def run(body: Callable[[GenerationStore], Awaitable[T]]) -> T:
        async def main() -> T:
            redis = create_redis(redis_server.url, max_connections=8)
            try:
                return await body(GenerationStore(redis))
            finally:
                await redis.aclose()

        return asyncio.run(main())

    return run


def _request() -> GenerationCreate:
    return GenerationCreate(model="m", messages=[Message(role="user", content="hi")])


def _running(attempt: int) -> list[tuple[str, bytes]]:
    return [encode_event(StatusEvent(status="running", attempt=attempt))]


def _delta(kind: str, text: str) -> tuple[str, bytes, str]:
    return (kind, encode_delta(text), text)


def test_create_then_claim_append_finish(with_store: Any) -> None:
    async def body(store: GenerationStore) -> None:
        gid = f"gen_store_{time.monotonic_ns()}"
        await store.create(gid, _request(), time.time())
        target = await store.load_claim_target(gid)
        assert target is not None and target.status == "queued" and target.attempt == 0
        claim = await store.claim(gid, 0, 5_000, _running(1))
        assert (claim.outcome, claim.seq) == ("claimed", 2)
        # a second claim while the lease is live is refused
        assert (await store.claim(gid, 1, 5_000, _running(2))).outcome == "busy"
        seq = await store.append(gid, 1, 2, [_delta("reasoning", "ab"), _delta("content", "cd")])
        assert seq == 4
        # the same write retried (its reply lost) is not applied twice
        assert await store.append(gid, 1, 2, [_delta("reasoning", "ab"), _delta("content", "cd")]) == 4
        # a writer with a stale idea of the stream is refused
        assert await store.append(gid, 1, 3, [_delta("content", "x")]) == -1
        # another attempt is refused
        assert await store.append(gid, 2, 4, [_delta("content", "x")]) == -1
        seq = await store.finish(gid, 1, 4, 120, ("completed", "stop", {"total_tokens": 3}, None), [])
        assert seq == 4
        record = await store.get(gid)
        assert record is not None
        assert (record.status, record.reasoning, record.content, record.finish_reason) == (
            "completed",
            "ab",
            "cd",
            "stop",
        )
        assert record.usage == {"total_tokens": 3}
        for key in keys.generation_keys(gid):
            ttl = await store.redis.ttl(key)
            assert 0 < ttl <= 120, key
        # finished: no more writes, no more claims
        assert await store.append(gid, 1, 4, [_delta("content", "x")]) == -1
        assert (await store.claim(gid, 1, 5_000, _running(2))).outcome == "finished"
        events = await store.read_events(gid, 0, 100)
        assert [e.seq for e in events] == [1, 2, 3, 4]
        assert [e.type for e in events] == ["status", "status", "reasoning", "content"]
        assert [e.seq for e in await store.read_events(gid, 2, 100)] == [3, 4]

    with_store(body)


def test_expired_lease_lets_a_new_attempt_take_over_and_fences_the_old(with_store: Any) -> None:
    async def body(store: GenerationStore) -> None:
        gid = f"gen_lease_{time.monotonic_ns()}"
        await store.create(gid, _request(), time.time())
        assert (await store.claim(gid, 0, 50, _running(1))).outcome == "claimed"
        await store.append(gid, 1, 2, [_delta("content", "old text")])
        await asyncio.sleep(0.1)
        # a stale claimer that read attempt 0 loses the compare-and-set
        assert (await store.claim(gid, 0, 5_000, _running(2))).outcome == "conflict"
        claim = await store.claim(gid, 1, 5_000, _running(2))
        assert claim.outcome == "claimed"
        record = await store.get(gid)
        assert record is not None and record.attempt == 2 and record.content == ""
        assert await store.append(gid, 1, 3, [_delta("content", "zombie")]) == -1
        assert await store.renew_leases([(gid, 1)], 5_000) == [gid]
        assert await store.renew_leases([(gid, 2)], 5_000) == []

    with_store(body)


def test_missing_generation(with_store: Any) -> None:
    async def body(store: GenerationStore) -> None:
        assert await store.get("gen_none") is None
        assert await store.load_claim_target("gen_none") is None
        assert (await store.claim("gen_none", 0, 1000, _running(1))).outcome == "missing"

    with_store(body)
