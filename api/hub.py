"""The event hub: one Redis reader per API process, fanning each batch of events out to every local viewer.

Each watched generation is a *topic* with a small shared ring of recent SSE frames, encoded once. The reader
XREADs (BLOCK) all live topics in one call and appends to their rings; viewers wake, take every frame after
their own cursor as one joined chunk, and write it in one send. A viewer that falls behind the ring (a slow
socket) simply re-reads from Redis with XRANGE at its own pace: the stream in Redis is the buffer, so memory
stays bounded whatever viewers do, and no viewer holds a Redis connection while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from reasonq.api import metrics
from reasonq.shared import keys
from reasonq.shared.backoff import Backoff
from reasonq.shared.errors import ReasonqError
from reasonq.shared.events import StoredEvent, parse_entry, to_sse
from reasonq.shared.redis import create_blocking_redis
from reasonq.shared.store import GenerationStore

logger = logging.getLogger(__name__)

# Events fetched per XRANGE when a viewer catches up from Redis.
CATCHUP_COUNT = 256
# Entries per stream per XREAD.
XREAD_COUNT = 1_000
# How often this process tells Redis how many viewers it has per generation.
VIEWERS_PUBLISH_S = 2.0
# Tells EventSource to reconnect after 1 s when a stream ends because Redis is unreachable.
REDIS_GONE_FRAME = b"retry: 1000\n: event source unavailable; reconnect with Last-Event-ID\n\n"


class HubUnavailable(ReasonqError):
    """The hub lost Redis; viewers end their response and the client resumes with Last-Event-ID."""


@dataclass(eq=False)
class Topic:
    """One watched generation: the reader's cursor and a ring of the most recent frames."""

    generation_id: str
    key: bytes
    cursor: int
    finished: bool = False
    viewers: int = 0
    first_seq: int = 0
    frames: list[bytes] = field(default_factory=list)
    done_seq: int | None = None
    error: BaseException | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _joined: tuple[int, int, bytes] = (0, 0, b"")

    def publish(self, events: list[StoredEvent], ring_events: int) -> None:
        """Append events (consecutive ids after the cursor) and wake every viewer."""
        if not self.frames:
            self.first_seq = events[0].seq
        for event in events:
            self.frames.append(to_sse(event))
            if event.type == "done":
                self.done_seq = event.seq
                self.finished = True
        self.cursor = events[-1].seq
        metrics.EVENTS_FANNED_OUT.inc(len(events) * self.viewers)  # counted once per batch, not per send
        if len(self.frames) > 2 * ring_events:
            drop = len(self.frames) - ring_events
            del self.frames[:drop]
            self.first_seq += drop
        self._wake()

    def fail(self, error: BaseException) -> None:
        """Wake every viewer with an error."""
        self.error = error
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def frames_after(self, cursor: int) -> bytes | None:
        """Every frame after ``cursor`` joined in one chunk, or ``None`` when the ring no longer reaches back."""
        start = cursor + 1
        if start < self.first_seq or not self.frames:
            return None
        joined_from, joined_to, joined = self._joined
        if joined_from == start and joined_to == self.cursor:
            return joined  # most viewers sit at the same cursor: join once, share the bytes
        chunk = b"".join(self.frames[start - self.first_seq :])
        self._joined = (start, self.cursor, chunk)
        return chunk

    async def wait(self) -> None:
        """Wait until the reader publishes something or fails."""
        if self.error is not None:
            raise HubUnavailable(str(self.error))
        await self._changed.wait()
        if self.error is not None:
            raise HubUnavailable(str(self.error))


@dataclass
class HubStats:
    """Counters for tests, benchmarks and metrics."""

    xreads: int = 0
    catchups: int = 0
    topics_opened: int = 0


class Hub:
    """Fans events out from Redis to the viewers of this process.

    Args:
        redis_url: where the streams live (the blocking reader opens its own connection).
        store: the generation store (pooled connection, for XRANGE catch-ups).
        block_ms: how long one XREAD blocks.
        ring_events: frames kept per topic.
    """

    def __init__(self, redis_url: str, store: GenerationStore, *, block_ms: int, ring_events: int) -> None:
        self._redis_url = redis_url
        self._store = store
        self._block_ms = block_ms
        self._ring_events = ring_events
        self._topics: dict[str, Topic] = {}
        self._by_key: dict[bytes, Topic] = {}
        self._hub_id = secrets.token_hex(8)
        self._wake_key = keys.hub_wake_key(self._hub_id)
        self._wake_cursor = "0-0"
        self._reader: Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._watching: dict[str, int] = {}  # generation id -> viewers of this process (replaying or live)
        self._watching_changed: set[str] = set()
        self._publisher: asyncio.Task[None] | None = None
        self.stats = HubStats()

    @property
    def topic_count(self) -> int:
        """Generations watched right now."""
        return len(self._topics)

    @property
    def viewer_count(self) -> int:
        """Live viewers attached right now (viewers replaying a finished generation are not attached)."""
        return sum(t.viewers for t in self._topics.values())

    @property
    def total_watching(self) -> int:
        """Viewers of this process, replaying or live."""
        return sum(self._watching.values())

    def watching(self, generation_id: str) -> int:
        """Viewers of one generation in this process, replaying or live."""
        return self._watching.get(generation_id, 0)

    def start(self) -> None:
        """Start the reader task and the viewer-count publisher."""
        self._task = asyncio.create_task(self._run(), name="hub-reader")
        self._publisher = asyncio.create_task(self._publish_viewers_forever(), name="hub-viewers")

    async def _publish_viewers_forever(self) -> None:
        while True:
            await asyncio.sleep(VIEWERS_PUBLISH_S)
            counts = {gid: n for gid, n in self._watching.items() if n > 0}
            counts |= {gid: 0 for gid in self._watching_changed if gid not in counts}
            self._watching_changed.clear()
            try:
                await self._store.publish_viewers(counts, self._hub_id)
            except (RedisError, OSError) as e:
                logger.warning("hub: could not publish viewer counts: %s", e)

    def _watch(self, generation_id: str, delta: int) -> None:
        count = self._watching.get(generation_id, 0) + delta
        if count > 0:
            self._watching[generation_id] = count
        else:
            self._watching.pop(generation_id, None)
            self._watching_changed.add(generation_id)

    async def stop(self) -> None:
        """Stop the reader and release its connection."""
        for task in (self._task, self._publisher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(RedisError, OSError):
            await self._store.publish_viewers(dict.fromkeys(self._watching, 0), self._hub_id)
        for topic in list(self._topics.values()):
            topic.fail(HubUnavailable("server shutting down"))
        with contextlib.suppress(RedisError, OSError):
            await self._store.redis.delete(self._wake_key)
        if self._reader is not None:
            await self._reader.aclose()

    async def follow(self, generation_id: str, after: int) -> AsyncIterator[bytes]:
        """SSE bytes of every event after ``after``, replayed from Redis then live, ending with ``done``.

        If Redis becomes unreachable the iterator yields a ``retry`` hint and ends, so the client resumes.
        """
        self._watch(generation_id, 1)
        try:
            async for chunk in self._follow(generation_id, after):
                yield chunk
        except (RedisError, OSError, HubUnavailable) as e:
            metrics.REDIS_ERRORS.labels("hub").inc()
            logger.warning("generation %s: ending event stream, Redis unavailable: %s", generation_id, e)
            yield REDIS_GONE_FRAME
        finally:
            self._watch(generation_id, -1)

    async def _catch_up(self, generation_id: str, cursor: int) -> tuple[bytes, int, bool]:
        events = await self._store.read_events(generation_id, cursor, CATCHUP_COUNT)
        if not events:
            return b"", cursor, False
        metrics.EVENTS_FANNED_OUT.inc(len(events))
        return b"".join(to_sse(e) for e in events), events[-1].seq, events[-1].type == "done"

    async def _follow(self, generation_id: str, after: int) -> AsyncIterator[bytes]:
        cursor = after
        while True:  # replay what Redis has; a finished generation never touches the hub
            chunk, cursor, done = await self._catch_up(generation_id, cursor)
            if not chunk:
                break
            yield chunk
            if done:
                return
        topic = await self._subscribe(generation_id)
        try:
            while True:
                if topic.cursor > cursor:
                    chunk_or_none = topic.frames_after(cursor)
                    if chunk_or_none is None:
                        self.stats.catchups += 1
                        metrics.CATCHUPS.inc()
                        chunk, cursor, done = await self._catch_up(generation_id, cursor)
                    else:
                        chunk, cursor = chunk_or_none, topic.cursor
                        done = topic.done_seq is not None and cursor >= topic.done_seq
                    if chunk:
                        yield chunk
                    if done:
                        return
                    continue
                if topic.finished:
                    return  # the resume point was at or past the last event of a finished generation
                await topic.wait()
        finally:
            self._unsubscribe(topic)

    async def _subscribe(self, generation_id: str) -> Topic:
        topic = self._topics.get(generation_id)
        if topic is None:
            last = await self._store.last_event(generation_id)
            topic = self._topics.get(generation_id)  # another viewer may have opened it meanwhile
            if topic is None:
                event = last
                topic = Topic(
                    generation_id=generation_id,
                    key=keys.events_key(generation_id).encode(),
                    cursor=event.seq if event else 0,
                    finished=event is not None and event.type == "done",
                )
                self._topics[generation_id] = topic
                self._by_key[topic.key] = topic
                self.stats.topics_opened += 1
                if not topic.finished:
                    await self._wake_reader()
        topic.viewers += 1
        return topic

    def _unsubscribe(self, topic: Topic) -> None:
        topic.viewers -= 1
        if topic.viewers <= 0 and self._topics.get(topic.generation_id) is topic:
            del self._topics[topic.generation_id]
            del self._by_key[topic.key]

    async def _wake_reader(self) -> None:
        self._idle.set()
        async with self._store.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(self._wake_key, {b"w": b"1"}, maxlen=16, approximate=True)
            pipe.expire(self._wake_key, keys.HUB_WAKE_TTL_S)
            await pipe.execute()

    async def _run(self) -> None:
        backoff = Backoff()
        while True:
            live = [t for t in self._topics.values() if not t.finished]
            if not live:
                self._idle.clear()
                await self._idle.wait()
                continue
            streams: dict[Any, Any] = {self._wake_key: self._wake_cursor}
            for topic in live:
                streams[topic.key] = f"{topic.cursor}-0"
            try:
                if self._reader is None:
                    self._reader = create_blocking_redis(self._redis_url, block_ms=self._block_ms)
                reply = cast(
                    list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
                    await self._reader.xread(streams, count=XREAD_COUNT, block=self._block_ms),
                )
            except (RedisError, OSError) as e:
                logger.warning("hub: Redis read failed (%s); ending %d live topics", e, len(live))
                for topic in live:
                    topic.fail(e)
                    self._topics.pop(topic.generation_id, None)
                    self._by_key.pop(topic.key, None)
                if self._reader is not None:
                    with contextlib.suppress(Exception):
                        await self._reader.aclose()
                    self._reader = None
                await backoff.sleep()
                continue
            backoff.reset()
            self.stats.xreads += 1
            for key, entries in reply or ():
                if key == self._wake_key.encode():
                    self._wake_cursor = entries[-1][0].decode()
                    continue
                target = self._by_key.get(key)
                if target is None or not entries:
                    continue  # every viewer left while we were blocked
                events = [parse_entry(entry_id, fields) for entry_id, fields in entries]
                events = [e for e in events if e.seq > target.cursor]
                if events:
                    target.publish(events, self._ring_events)
