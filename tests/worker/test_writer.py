"""The coalescing writer against a real redis-server: few writes for fast models, one per token for slow ones."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from reasonq.shared import keys
from reasonq.shared.errors import FencedError
from reasonq.shared.events import CONTENT, REASONING, StatusEvent, encode_event
from reasonq.shared.redis import create_redis
from reasonq.shared.schemas import GenerationCreate, UserMessage
from reasonq.shared.store import Fence, GenerationStore
from reasonq.worker.writer import MAX_EVENT_CHARS, EventWriter


def run_with_writer(unit_redis_url: str, body: Any, interval_s: float = 0.01) -> Any:
    async def main() -> Any:
        redis = create_redis(unit_redis_url, max_connections=4)
        store = GenerationStore(redis)
        gid = f"gen_writer_{time.monotonic_ns()}"
        await store.records.create(
            gid, GenerationCreate(messages=[UserMessage(role="user", content="x")]), time.time(), "q", "anonymous"
        )
        claim = await store.leases.claim(gid, 0, 60_000, [encode_event(StatusEvent(status="running", attempt=1))])
        writer = EventWriter(store, gid, Fence(1, claim.token), claim.seq, interval_s, outage_s=30.0)
        try:
            return await body(store, gid, writer)
        finally:
            await redis.aclose()

    return asyncio.run(main())


def test_a_burst_of_tokens_becomes_few_events(unit_redis_url: str) -> None:
    async def body(store: GenerationStore, gid: str, writer: EventWriter) -> None:
        for i in range(2_000):
            writer.add(REASONING if i < 1_500 else CONTENT, f" t{i}")
            if i % 100 == 0:
                await asyncio.sleep(0)  # let the writer run, as a real stream's awaits would
        await writer.finish("completed", "stop", {"completion_tokens": 2000}, None, retention_s=120)
        record = await store.records.get(gid)
        assert record is not None
        assert record.reasoning == "".join(f" t{i}" for i in range(1_500))
        assert record.content == "".join(f" t{i}" for i in range(1_500, 2_000))
        assert writer.writes < 30
        events = await store.streams.read(gid, 0, 1000)
        assert [e.type for e in events][-2:] == ["status", "done"]
        assert [e.seq for e in events] == list(range(1, len(events) + 1))

    run_with_writer(unit_redis_url, body)


def test_slow_tokens_are_written_at_once(unit_redis_url: str) -> None:
    async def body(store: GenerationStore, gid: str, writer: EventWriter) -> None:
        for i in range(5):
            writer.add(CONTENT, f"w{i}")
            await asyncio.sleep(0.03)  # slower than the 10 ms window
            events = await store.streams.read(gid, 0, 100)
            assert events[-1].data == b'{"delta":"w%d"}' % i  # already in Redis, not held back
        await writer.finish("completed", "stop", retention_s=120)

    run_with_writer(unit_redis_url, body)


def test_a_fenced_writer_stops(unit_redis_url: str) -> None:
    async def body(store: GenerationStore, gid: str, writer: EventWriter) -> None:
        await store.redis.hset(keys.record_key(gid), "attempt", "2")  # another attempt took over
        writer.add(CONTENT, "late")
        await asyncio.sleep(0.05)
        with pytest.raises(FencedError):
            writer.add(CONTENT, "later")
        with pytest.raises(FencedError):
            await writer.finish("completed", "stop", retention_s=120)
        assert (await store.records.get(gid)).content == ""  # type: ignore[union-attr]

    run_with_writer(unit_redis_url, body)


def test_the_interval_grows_for_a_fast_stream_and_resets_for_a_slow_one(unit_redis_url: str) -> None:
    async def body(store: GenerationStore, gid: str, writer: EventWriter) -> None:
        for i in range(500):  # ~1,000 tokens/s for half a second
            writer.add(CONTENT, f" f{i}")
            if i % 5 == 4:
                await asyncio.sleep(0.005)
        fast_writes = writer.writes
        assert fast_writes <= 25  # a fixed 10 ms interval would take ~50
        for i in range(3):  # then slow: each token written at once again
            await asyncio.sleep(0.12)
            writer.add(CONTENT, f" s{i}")
            await asyncio.sleep(0.02)
            assert (await store.records.get_text(gid))[1].endswith(f" s{i}")
        await writer.finish("completed", "stop", retention_s=120)
        text = (await store.records.get(gid)).content  # type: ignore[union-attr]
        assert text == "".join(f" f{i}" for i in range(500)) + " s0 s1 s2"

    async def run_adaptive(store: GenerationStore, gid: str, writer: EventWriter) -> None:
        await writer.abandon()
        adaptive = EventWriter(store, gid, writer._attempt, writer.seq, 0.01, outage_s=30.0, max_interval_s=0.05)
        await body(store, gid, adaptive)

    run_with_writer(unit_redis_url, run_adaptive)


def test_a_fast_streams_events_stay_under_max_event_chars(unit_redis_url: str) -> None:
    """Issue 18: 20,000 tokens of 500 characters within one interval became events of ~500 KB, and every viewer
    that stopped reading pinned whole events in the API. Coalesced text is split at ``MAX_EVENT_CHARS``; the
    number of writes is unchanged and the text exact."""

    async def body(store: GenerationStore, gid: str, writer: EventWriter) -> None:
        tokens = [f"{i:04d}" + "x" * 496 for i in range(1_000)]  # 500 KB, added before the writer wakes
        for token in tokens:
            writer.add(CONTENT, token)
        await writer.finish("completed", "stop", retention_s=120)
        record = await store.records.get(gid)
        assert record is not None and record.content == "".join(tokens)
        events = await store.streams.read(gid, 0, 1000)
        deltas = [e for e in events if e.type == "content"]
        assert len(deltas) == -(-500_000 // MAX_EVENT_CHARS)  # 8 events of at most 64 Ki characters
        assert all(len(e.data) < MAX_EVENT_CHARS + 600 for e in deltas)  # one token past the limit, plus JSON
        assert writer.writes <= 2

    run_with_writer(unit_redis_url, body)
