"""Issue 13: a failover to a replica that had not received a generation's last writes. Before: the record fell back
(events 1-570 shown, the new primary at 126), the worker was fenced on its next write, and viewers that had seen
the lost events were never told to start over.

The loss is reproduced exactly as a promoted replica presents it: the generation's keys are snapshotted (DUMP)
mid-stream, more is written and seen by viewers, then the snapshot is put back (RESTORE REPLACE). Runs on one
Redis and on a Cluster."""

from __future__ import annotations

import asyncio
import time

import orjson

from reasonq.api.hub import Hub
from reasonq.shared import keys
from reasonq.shared.events import CONTENT, REASONING, StatusEvent, StoredEvent, encode_event
from reasonq.shared.redis import create_blocking_redis, create_redis
from reasonq.shared.schemas import GenerationCreate, UserMessage
from reasonq.shared.store import Fence, GenerationStore
from reasonq.worker.writer import EventWriter


def _text(events: list[StoredEvent]) -> tuple[str, str]:
    """What a viewer following the event contract shows: ``restart`` discards the text so far."""
    reasoning: list[str] = []
    content: list[str] = []
    for e in events:
        if e.type == "restart":
            reasoning, content = [], []
        elif e.type in ("reasoning", "content"):
            (reasoning if e.type == "reasoning" else content).append(orjson.loads(e.data)["delta"])
    return "".join(reasoning), "".join(content)


async def _until(check: object, timeout_s: float = 10) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_a_history_lost_in_a_failover_is_written_again_and_no_viewer_mixes_histories(store_url: str) -> None:
    async def main() -> None:
        redis = create_redis(store_url, max_connections=16)
        store = GenerationStore(redis)
        hub = Hub(lambda: create_blocking_redis(store_url, block_ms=1_000), store, block_ms=1_000, ring_events=64)
        hub.start()
        try:
            gid = f"gen_history_{time.monotonic_ns()}"
            await store.records.create(
                gid, GenerationCreate(messages=[UserMessage(role="user", content="x")]), time.time(), "q", "anonymous"
            )
            claim = await store.leases.claim(gid, 0, 60_000, [encode_event(StatusEvent(status="running", attempt=1))])
            writer = EventWriter(store, gid, Fence(1, claim.token), claim.seq, 0.002, 30.0, lease_ttl_ms=60_000)
            live: list[StoredEvent] = []
            dropped: list[StoredEvent] = []
            drop_now = asyncio.Event()

            async def follow(into: list[StoredEvent], after: int, stop: asyncio.Event | None = None) -> None:
                async for events in hub.follow_events(gid, after):
                    into += events
                    if stop is not None and stop.is_set():
                        return

            live_task = asyncio.create_task(follow(live, 0))
            dropped_task = asyncio.create_task(follow(dropped, 0, drop_now))

            async def write(kind: object, words: list[str]) -> None:
                for word in words:
                    writer.add(kind, word)  # type: ignore[arg-type]
                    await asyncio.sleep(0.003)

            first = [f"r{i} " for i in range(20)]
            await write(REASONING, first)
            await _until(lambda: _text(live)[0] == "".join(first))
            names = keys.generation_keys(gid)
            snapshot = [await redis.dump(name) for name in names]  # what the replica has
            lost = [f"lost{i} " for i in range(20)]
            await write(REASONING, lost)
            await _until(lambda: _text(live)[0] == "".join(first + lost) and len(dropped) >= len(live))
            highest_seen = live[-1].seq
            drop_now.set()
            writer.add(REASONING, "x ")  # wakes the dropping viewer, which then leaves
            await asyncio.wait_for(dropped_task, 10)
            await _until(lambda: writer.seq > highest_seen)
            for name, dumped in zip(names, snapshot, strict=True):  # the failover: the replica's state wins
                if dumped is None:
                    await redis.delete(name)
                else:
                    await redis.restore(name, 0, dumped, replace=True)
            assert (await store.records.last_seq(gid))[0] < highest_seen

            after = [f"a{i} " for i in range(10)]
            await write(REASONING, after)
            writer.add(CONTENT, "the answer")
            await writer.finish("completed", "stop", retention_s=120)
            # a viewer that saw the lost events resumes where it left off; a new one reads from the start
            resumed: list[StoredEvent] = []
            await asyncio.wait_for(follow(resumed, dropped[-1].seq), 10)
            fresh: list[StoredEvent] = []
            await asyncio.wait_for(follow(fresh, 0), 10)
            await asyncio.wait_for(live_task, 10)

            record = await store.records.get(gid)
            assert record is not None and record.status == "completed" and record.attempt == 1
            # the lost words were written again: the worker's text is whole
            whole = ("".join([*first, *lost, "x ", *after]), "the answer")
            assert (record.reasoning, record.content) == whole
            for name, events in (("live", live), ("resumed", dropped + resumed), ("fresh", fresh)):
                assert _text(events) == whole, name
                assert events[-1].type == "done", name
                assert [e.seq for e in events] == sorted({e.seq for e in events}), name  # no id twice
            assert any(e.type == "restart" and b"history_lost" in e.data for e in live)
        finally:
            await hub.stop()
            await redis.aclose()

    asyncio.run(main())
