"""The hub's fan-out against a real redis-server: identical sequences, slow viewers, no leaks."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from reasonq.api import hub_reader
from reasonq.api.hub import REDIS_GONE_FRAME, Hub
from reasonq.shared import keys
from reasonq.shared.events import CONTENT, DoneEvent, StatusEvent, delta_args, encode_event, event_args
from reasonq.shared.redis import create_blocking_redis, create_redis
from reasonq.shared.schemas import GenerationCreate, UserMessage
from reasonq.shared.store import Fence, GenerationStore

_ID = re.compile(rb"^id: (\d+)$", re.M)


class Producer:
    """Plays the worker: creates a generation and appends events through the store's fenced scripts."""

    def __init__(self, store: GenerationStore) -> None:
        self.store = store
        self.gid = f"gen_hub_{time.monotonic_ns()}"
        self.seq = 0
        self.fence = Fence(0, "")

    async def start(self) -> None:
        await self.store.records.create(
            self.gid, GenerationCreate(messages=[UserMessage(role="user", content="x")]), time.time(), "q", "anonymous"
        )
        claim = await self.store.leases.claim(
            self.gid, 0, 60_000, [encode_event(StatusEvent(status="running", attempt=1))]
        )
        self.seq = claim.seq
        self.fence = Fence(1, claim.token)

    async def emit(self, n: int) -> None:
        for i in range(n):
            text = f"t{self.seq + 1};"
            self.seq = await self.store.streams.append(self.gid, self.fence, self.seq, [delta_args(CONTENT, text)])
            if i % 7 == 0:
                await asyncio.sleep(0.002)

    async def finish(self) -> None:
        self.seq = await self.store.streams.finish(
            self.gid,
            self.fence,
            self.seq,
            60,
            ("completed", "stop", None, None),
            [event_args(DoneEvent(status="completed", finish_reason="stop"))],
        )


async def collect(stream: AsyncIterator[bytes], delay_s: float = 0.0) -> list[int]:
    ids: list[int] = []
    async for chunk in stream:
        if delay_s and ids:  # stall only once live (after the first replayed chunk)
            await asyncio.sleep(delay_s)
        ids += [int(m) for m in _ID.findall(chunk)]
    return ids


@pytest.fixture
def hub_runner(store_url: str) -> Callable[..., Any]:
    """Runs ``body(hub, store)`` on a fresh hub over ``store_url``."""

    def run(
        body: Callable[[Hub, GenerationStore], Awaitable[Any]], ring_events: int = 64, activity_topics: int = 200
    ) -> Any:
        async def main() -> Any:
            redis = create_redis(store_url, max_connections=8)
            store = GenerationStore(redis)
            hub = Hub(
                lambda: create_blocking_redis(store_url, block_ms=2_000),
                store,
                block_ms=2_000,
                ring_events=ring_events,
                activity_topics=activity_topics,
            )
            hub.start()
            try:
                return await asyncio.wait_for(body(hub, store), 30)
            finally:
                await hub.stop()
                await redis.aclose()

        return asyncio.run(main())

    return run


@pytest.fixture(params=["direct", "activity"])
def with_hub(hub_runner: Callable[..., Any], request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``hub_runner``, each test twice: the reader XREADing every watched stream, and following the shards'
    activity indexes (``api/hub_reader.py``; ``activity_topics`` 0: from the first topic on)."""
    activity_topics = 200 if request.param == "direct" else 0

    def run(body: Callable[[Hub, GenerationStore], Awaitable[Any]], ring_events: int = 64) -> Any:
        return hub_runner(body, ring_events=ring_events, activity_topics=activity_topics)

    return run


def test_many_viewers_get_identical_complete_sequences(with_hub: Any) -> None:
    async def body(hub: Hub, store: GenerationStore) -> None:
        producer = Producer(store)
        await producer.start()
        viewers = [asyncio.create_task(collect(hub.follow(producer.gid, 0))) for _ in range(50)]
        while hub.viewer_count < 50:  # each viewer replays from Redis first, then attaches
            await asyncio.sleep(0.01)
        assert hub.topic_count == 1 and hub.viewer_count == 50
        await producer.emit(300)
        await producer.finish()
        results = await asyncio.gather(*viewers)
        assert all(r == list(range(1, producer.seq + 1)) for r in results)
        assert hub.topic_count == 0 and hub.viewer_count == 0
        assert hub.stats.topics_opened == 1

    with_hub(body)


def test_a_stalled_viewer_catches_up_from_redis_while_others_proceed(with_hub: Any) -> None:
    async def body(hub: Hub, store: GenerationStore) -> None:
        producer = Producer(store)
        await producer.start()
        fast = asyncio.create_task(collect(hub.follow(producer.gid, 0)))
        slow = asyncio.create_task(collect(hub.follow(producer.gid, 0), delay_s=0.3))
        while hub.viewer_count < 2:
            await asyncio.sleep(0.01)
        await producer.emit(400)  # far more than the 16-event ring while the slow one sleeps
        await producer.finish()
        fast_ids = await asyncio.wait_for(fast, 5)
        assert not slow.done()  # the fast viewer finished without waiting for the slow one
        slow_ids = await slow
        assert fast_ids == slow_ids == list(range(1, producer.seq + 1))
        assert hub.stats.catchups > 0

    with_hub(body, ring_events=16)


def test_viewers_come_and_go_without_leaks(with_hub: Any) -> None:
    async def body(hub: Hub, store: GenerationStore) -> None:
        producer = Producer(store)
        await producer.start()
        for _ in range(20):
            stream = hub.follow(producer.gid, 0)
            task = asyncio.create_task(collect(stream))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert hub.topic_count == 0 and hub.viewer_count == 0
        late = asyncio.create_task(collect(hub.follow(producer.gid, 5)))
        await producer.emit(20)
        await producer.finish()
        assert await late == list(range(6, producer.seq + 1))
        assert hub.topic_count == 0

    with_hub(body)


def test_a_finished_generation_replays_without_touching_the_hub(with_hub: Any) -> None:
    async def body(hub: Hub, store: GenerationStore) -> None:
        producer = Producer(store)
        await producer.start()
        await producer.emit(600)
        await producer.finish()
        opened = hub.stats.topics_opened
        ids = await collect(hub.follow(producer.gid, 0))
        assert ids == list(range(1, producer.seq + 1))
        assert hub.stats.topics_opened == opened and hub.topic_count == 0

    with_hub(body)


def test_one_read_serves_every_viewer(with_hub: Any, unit_redis_url: str) -> None:
    """Issue 18: this test passed with one viewer (a fixed sleep, no check that 200 were attached)."""

    async def xread_calls(redis: Any) -> int:
        return int((await redis.info("commandstats")).get("cmdstat_xread", {}).get("calls", 0))

    async def body(hub: Hub, store: GenerationStore) -> None:
        producer = Producer(store)
        await producer.start()
        viewers = [asyncio.create_task(collect(hub.follow(producer.gid, 0))) for _ in range(200)]
        while hub.viewer_count < 200:  # every viewer attached before the first event
            await asyncio.sleep(0.01)
        assert hub.total_watching == 200
        before, server_before = hub.stats.xreads, await xread_calls(store.redis)
        await producer.emit(50)
        await producer.finish()
        results = await asyncio.gather(*viewers)
        assert all(r == list(range(1, producer.seq + 1)) for r in results)  # each got every id, in order
        assert hub.stats.catchups == 0  # nobody fell behind the ring and re-read from Redis
        # one XREAD per batch for all 200 viewers, not one per viewer; Redis's own count agrees (other API
        # processes of the suite block on XREAD too: a few calls of theirs may fall in the window)
        assert hub.stats.xreads - before <= 60
        assert await xread_calls(store.redis) - server_before <= 80
        assert hub.total_watching == 0 and hub.viewer_count == 0

    with_hub(body)


def test_a_viewer_behind_the_ring_of_a_deleted_stream_ends_instead_of_spinning(with_hub: Any) -> None:
    """Regression: a viewer that fell behind the ring re-read from Redis, and when Redis no longer had the events
    (the generation deleted, ``DELETE /v1/responses/{id}``), it read again at once, forever."""

    async def body(hub: Hub, store: GenerationStore) -> None:
        producer = Producer(store)
        await producer.start()
        watching = asyncio.create_task(collect(hub.follow(producer.gid, 0)))
        while hub.viewer_count < 1:
            await asyncio.sleep(0.01)
        await producer.emit(40)  # well past the ring of 4
        while hub._topics[producer.gid].cursor < producer.seq:
            await asyncio.sleep(0.01)
        await store.redis.delete(keys.events_key(producer.gid))
        reads_before = hub.stats.catchups
        late = await asyncio.wait_for(collect(hub.follow(producer.gid, 0)), 5)
        assert late == [] and hub.stats.catchups - reads_before == 1
        watching.cancel()

    with_hub(body, ring_events=4)


async def _stop(tasks: list[asyncio.Task[list[int]]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _watched(
    hub: Hub, store: GenerationStore, n: int, shard: int = 0
) -> tuple[list[Producer], list[asyncio.Task[list[int]]]]:
    """``n`` live generations of one shard (one reader, also on a Cluster), a viewer each."""
    producers = [Producer(store) for _ in range(n)]
    for i, p in enumerate(producers):
        while keys.shard_of(p.gid) != shard:
            p.gid = f"gen_hub_{time.monotonic_ns()}_{i}"
    for p in producers:
        await p.start()
    viewers = [asyncio.create_task(collect(hub.follow(p.gid, 0))) for p in producers]
    while hub.viewer_count < n:
        await asyncio.sleep(0.01)
    return producers, viewers


def test_many_generations_interleaved_through_the_activity_index(hub_runner: Any) -> None:
    async def body(hub: Hub, store: GenerationStore) -> None:
        producers, viewers = await _watched(hub, store, 12)
        more = [asyncio.create_task(collect(hub.follow(p.gid, 0))) for p in producers]
        while hub.viewer_count < 24:
            await asyncio.sleep(0.01)
        await asyncio.gather(*(p.emit(40) for p in producers))
        await asyncio.gather(*(p.finish() for p in producers))
        results = await asyncio.gather(*viewers, *more)
        assert results == [list(range(1, p.seq + 1)) for p in producers * 2]
        assert hub.stats.activity_reads > 0 and hub.stats.sweeps >= 1

    hub_runner(body, activity_topics=4)


def test_a_generation_written_while_its_topic_opens_misses_nothing(
    hub_runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the activity mode must close: events written after the new topic's tail was read and before it was
    registered, their activity entries consumed by the reader meanwhile (so no later entry names them)."""
    monkeypatch.setattr(hub_reader, "SWEEP_S", 60.0)  # no periodic sweep to hide a miss

    async def body(hub: Hub, store: GenerationStore) -> None:
        _, others = await _watched(hub, store, 3)  # the reader follows the activity index
        late = Producer(store)
        while keys.shard_of(late.gid) != 0:  # the shard whose reader follows the index
            late.gid = f"gen_hub_{time.monotonic_ns()}"
        await late.start()
        tail_key = store.streams.tail_key

        async def tail_then_write(key: str, count: int) -> Any:
            tail = await tail_key(key, count)
            await late.emit(3)
            await late.finish()
            await asyncio.sleep(0.3)  # the reader reads those activity entries before the topic is registered
            return tail

        store.streams.tail_key = tail_then_write  # type: ignore[method-assign]
        reads = hub.stats.activity_reads
        ids = await asyncio.wait_for(collect(hub.follow(late.gid, 0)), 10)
        assert ids == list(range(1, late.seq + 1))
        assert hub.stats.activity_reads > reads
        await _stop(others)

    hub_runner(body, activity_topics=0)


def test_a_stream_that_moved_more_than_one_read_takes_is_read_to_its_end(
    hub_runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_reader, "XREAD_COUNT", 5)
    monkeypatch.setattr(hub_reader, "SWEEP_S", 60.0)

    async def body(hub: Hub, store: GenerationStore) -> None:
        producers, viewers = await _watched(hub, store, 3)
        await producers[0].emit(60)  # one activity entry per write; 12 reads' worth of entries
        await producers[0].finish()
        assert await asyncio.wait_for(viewers[0], 10) == list(range(1, producers[0].seq + 1))
        await _stop(viewers[1:])

    hub_runner(body, activity_topics=0)


def test_a_write_the_activity_index_never_saw_is_read_by_the_sweep(
    hub_runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bound on any activity lost (a failover to a replica that had not received it): every live topic is read
    directly every SWEEP_S."""
    monkeypatch.setattr(hub_reader, "SWEEP_S", 0.3)

    async def body(hub: Hub, store: GenerationStore) -> None:
        producers, viewers = await _watched(hub, store, 3)
        producer = producers[0]
        await producer.emit(2)
        while hub._topics[producer.gid].cursor < producer.seq:  # read through the index: nothing left to read
            await asyncio.sleep(0.01)
        _, done = event_args(DoneEvent(status="completed", finish_reason="stop"))[:2]
        # written around the scripts: no activity entry names it
        await store.redis.xadd(keys.events_key(producer.gid), {"t": "done", "d": done}, id=f"{producer.seq + 1}-0")
        sweeps = hub.stats.sweeps
        assert await asyncio.wait_for(viewers[0], 5) == list(range(1, producer.seq + 2))
        assert hub.stats.sweeps > sweeps
        await _stop(viewers[1:])

    hub_runner(body, activity_topics=0)


def test_a_viewer_opening_its_topic_while_the_server_drains_is_ended_too(hub_runner: Any) -> None:
    """Draining ends the topics there are and refuses new ones, but a viewer already past that check, reading the
    stream's tail to open its topic, opened it after the drain: nothing ended it, and uvicorn cut the response
    5 s later (a CI run of ``test_an_idle_sse_read_ends_on_time_and_a_shutdown_ends_reads_cleanly``)."""

    async def body(hub: Hub, store: GenerationStore) -> None:
        producer = Producer(store)
        await producer.start()
        entered, release = asyncio.Event(), asyncio.Event()
        real_tail = store.streams.tail_key

        async def slow_tail(key: str, count: int) -> Any:
            entered.set()
            await release.wait()
            return await real_tail(key, count)

        store.streams.tail_key = slow_tail  # type: ignore[method-assign]
        frames: list[bytes] = []

        async def read() -> None:
            async for chunk in hub.follow(producer.gid, producer.seq):  # at the live end: straight to its topic
                frames.append(chunk)

        viewer = asyncio.create_task(read())
        await asyncio.wait_for(entered.wait(), 5)
        hub.drain()  # the server starts shutting down while the viewer opens its topic
        release.set()
        await asyncio.wait_for(viewer, 3)
        assert frames[-1] == REDIS_GONE_FRAME and hub.topic_count == 0  # ends with a hint to resume elsewhere

    hub_runner(body)
