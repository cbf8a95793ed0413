"""The hub's Redis readers: one blocking loop per slot group that reads its live topics' streams into their rings.

A reader covers one slot group (every topic on one Redis; one shard's on a Cluster, where one XREAD may not span
slots) and has a wake stream of its own in that group's slot, so a new topic interrupts a blocked read.

It reads in one of two ways:

- **Direct**, while it has at most ``activity_topics`` live topics: one blocking XREAD over the wake stream and
  every live topic's stream. Simple and one round trip per batch, but its cost grows with the topics: an XREAD
  over N streams is O(N) on both sides (10,000 streams: 14 ms per call), paid on every batch (issue 14).
- **Activity**, above that: every script that appends to a followed stream also adds the stream's key to its
  shard's activity index (``keys.activity_key``, in the same script: the same slot, atomically). The reader blocks
  on the activity indexes and its wake stream, then reads only the streams that moved (one XREAD over those). Its
  cost follows what moved, not what is watched.

Correctness in activity mode rests on one order: a stream is read directly *after* the reader's activity cursor
was taken (an entry past the cursor is added by any write after that read). So a topic is read directly when it
joins (``dirty``), every topic when the reader enters activity mode, after a Redis error, and when an activity
read came back full (the index is capped at ``keys.ACTIVITY_MAXLEN``: a reader that far behind may have lost
entries) — these three as a sweep; and every ``SWEEP_S`` a sweep starts anyway, a bound on any activity missed
(e.g. a failover to a replica that had not received it). A sweep reads ``SWEEP_CHUNK`` topics per round, so
its cost is spread between rounds instead of one stall. A read that returned ``XREAD_COUNT`` entries of one stream
marks it ``dirty`` too: more may wait, and its activity entries are already consumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from reasonq.api.topics import Topic
from reasonq.shared.backoff import Backoff
from reasonq.shared.events import parse_entry
from reasonq.shared.store.streams import Entries

logger = logging.getLogger(__name__)

# Entries per stream per XREAD of topics' streams.
XREAD_COUNT = 1_000
# Activity entries per read: well under keys.ACTIVITY_MAXLEN, so a full read is the sign of a reader far behind.
ACTIVITY_COUNT = 2_000
# In activity mode, every live topic is read directly at least this often, ``SWEEP_CHUNK`` topics per round (one
# XREAD of 10,000 streams stalled the loop for tens of ms each time: the fan-out's p99).
SWEEP_S = 1.0
SWEEP_CHUNK = 256


@dataclass
class ReaderStats:
    """Counters for tests, benchmarks and metrics."""

    xreads: int = 0  # blocking reads (one per batch)
    activity_reads: int = 0  # of them, reads of the activity indexes
    sweeps: int = 0  # direct reads of every live topic in activity mode


@dataclass(eq=False)
class Reader:
    """One slot group's blocking read loop (see the module's docstring).

    Args:
        wake_key: this reader's wake stream.
        activity_keys: the activity indexes of the shards this reader covers.
        connect: makes the reader's own blocking connection.
        lost: called for each live topic when Redis failed (the hub forgets it; it was already failed).
    """

    wake_key: str
    activity_keys: list[str]
    connect: Callable[[], Redis]
    lost: Callable[[Topic], None]
    block_ms: int
    ring_events: int
    activity_topics: int
    stats: ReaderStats
    topics: dict[bytes, Topic] = field(default_factory=dict)  # by stream key
    wake_cursor: str = "0-0"
    activity: dict[bytes, str] | None = None  # activity index -> cursor, while in activity mode
    dirty: set[bytes] = field(default_factory=set)  # topics to read directly in the next round
    sweep_at: float = 0.0
    sweeping: list[bytes] = field(default_factory=list)  # this sweep's topics, read from ``sweep_pos`` on
    sweep_pos: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    client: Redis | None = None
    task: asyncio.Task[None] | None = None
    closed: bool = False
    wake_sent: bool = False  # a wake is on its way since this round began (the hub sends at most one)
    finished: int = 0  # of ``topics``, those whose stream ended (the rest are live)

    def add(self, topic: Topic) -> None:
        """Start reading ``topic`` (read directly first: see the module's docstring)."""
        self.topics[topic.key] = topic
        self.finished += topic.finished
        self.dirty.add(topic.key)
        self.idle.set()

    def remove(self, topic: Topic) -> None:
        if self.topics.pop(topic.key, None) is not None:
            self.finished -= topic.finished

    def _live(self) -> list[Topic]:
        return [t for t in self.topics.values() if not t.finished]

    def start(self, name: str) -> None:
        self.task = asyncio.create_task(self._run(), name=name)

    async def close(self) -> None:
        # The flag as well as the cancel: redis-py can swallow a cancellation that lands in a blocking read
        # (redis/redis-py#2028, #2551), and the reader then looped on for ever: a hub's stop hung on a Cluster.
        self.closed = True
        self.idle.set()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.aclose()

    async def _run(self) -> None:
        backoff = Backoff()
        while not self.closed:
            # Counted, not listed: listing 10,000 topics each round cost a fifth of the API's time (issue 14).
            live = len(self.topics) - self.finished
            if not live:
                self.idle.clear()
                self.activity = None  # an idle reader's cursor goes stale: take a fresh one when needed again
                await self.idle.wait()
                continue
            self.wake_sent = False  # from here on a new topic may be missed by this round's read: wake it
            try:
                if self.client is None:
                    self.client = self.connect()
                # Hysteresis: a reader that follows the activity indexes keeps doing so down to half the threshold.
                limit = self.activity_topics // 2 if self.activity is not None else self.activity_topics
                if live > limit:
                    await self._activity_round(self.client)
                else:
                    self.activity = None
                    self.dirty.clear()
                    await self._direct_round(self.client, self._live())
            except (RedisError, OSError) as e:
                logger.warning("hub: Redis read failed (%s); ending %d live topics", e, live)
                for topic in self._live():
                    topic.fail(e)
                    self.remove(topic)
                    self.lost(topic)
                self.activity = None
                self.dirty.clear()
                if self.client is not None:
                    with contextlib.suppress(Exception):
                        await self.client.aclose()
                    self.client = None
                await backoff.sleep()
                continue
            backoff.reset()

    async def _direct_round(self, client: Redis, live: list[Topic]) -> None:
        streams = {self.wake_key.encode(): self.wake_cursor, **self._positions(t.key for t in live)}
        reply = await client.xread(streams, count=XREAD_COUNT, block=self.block_ms)
        self.stats.xreads += 1
        self._publish(cast(list[tuple[bytes, Entries]], reply or []))

    async def _activity_round(self, client: Redis) -> None:
        loop = asyncio.get_running_loop()
        if self.activity is None:
            # The cursors first, then every topic read directly: nothing written after that read goes unseen.
            cursors: dict[bytes, str] = {}
            for key in self.activity_keys:
                last = cast(Entries, await client.xrevrange(key, count=1))
                cursors[key.encode()] = last[0][0].decode() if last else "0-0"
            self.activity = cursors
            self.sweep_at = 0.0
        if loop.time() >= self.sweep_at:
            self.sweep_at = loop.time() + SWEEP_S
            self.stats.sweeps += 1
            self.sweeping, self.sweep_pos = list(self.topics), 0
        streams: dict[Any, Any] = {self.wake_key: self.wake_cursor, **self.activity}
        # Not blocking while topics wait to be read directly (they joined, had more entries than one read takes, or
        # the sweep has more to read).
        pending = self.dirty or self.sweep_pos < len(self.sweeping)
        block = None if pending else max(1, min(self.block_ms, int((self.sweep_at - loop.time()) * 1000)))
        reply = cast(list[tuple[bytes, Entries]], await client.xread(streams, count=ACTIVITY_COUNT, block=block) or [])
        self.stats.xreads += 1
        self.stats.activity_reads += 1
        # One read after the index's: the streams that moved, those waiting to be read directly, the sweep's next.
        to_read, self.dirty = self.dirty, set()
        wake_key = self.wake_key.encode()
        for stream, entries in reply:
            if stream == wake_key:
                self.wake_cursor = entries[-1][0].decode()
                continue
            self.activity[stream] = entries[-1][0].decode()
            to_read.update(fields[b"k"] for _, fields in entries)
            if len(entries) >= ACTIVITY_COUNT:
                self.sweep_at = 0.0  # far behind: entries may have been trimmed before this read
        chunk = self.sweeping[self.sweep_pos : self.sweep_pos + SWEEP_CHUNK]
        self.sweep_pos += len(chunk)
        to_read.update(chunk)
        streams = self._positions(to_read)
        if streams:
            reply = cast(list[tuple[bytes, Entries]], await client.xread(streams, count=XREAD_COUNT) or [])
            self._publish(reply)

    def _positions(self, stream_keys: Iterable[bytes]) -> dict[Any, Any]:
        """XREAD positions of the live topics among ``stream_keys``."""
        return {k: f"{t.cursor}-0" for k in stream_keys if (t := self.topics.get(k)) is not None and not t.finished}

    def _publish(self, reply: list[tuple[bytes, Entries]]) -> None:
        wake_key = self.wake_key.encode()
        for key, entries in reply:
            if key == wake_key:
                self.wake_cursor = entries[-1][0].decode()
                continue
            target = self.topics.get(key)
            if target is None or not entries:
                continue  # every viewer left while we were reading
            if len(entries) >= XREAD_COUNT and self.activity is not None:
                self.dirty.add(key)  # more may wait, and its activity entries are consumed: read it again
            events = [parse_entry(entry_id, fields) for entry_id, fields in entries]
            events = [e for e in events if e.seq > target.cursor]
            if events:
                was_finished = target.finished
                target.publish(events, self.ring_events)
                self.finished += target.finished and not was_finished
