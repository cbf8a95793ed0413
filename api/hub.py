"""The event hub: one Redis reader per API process, fanning each batch of events out to every local viewer.

Each watched generation is a *topic* with a small shared ring of recent events (typed ``StoredEvent``s,
``api/topics.py``). The reader (``api/hub_reader.py``; on a Redis Cluster one per shard: a call may not span
slots) blocks until a live topic's stream moves and appends what it read to their rings; viewers wake and take
every event after their own cursor. The wire format is the edge's: a viewer follows in a ``Format`` (native
SSE here; chat chunks, Responses and Durable Streams bytes each one small encoder on top), each event is encoded
once per format, and most viewers, sitting at the same cursor, share one joined chunk per format. A viewer that falls
behind the ring (a slow socket) re-reads from Redis with XRANGE at its own pace: the stream in Redis is the
buffer, so memory stays bounded whatever viewers do, and no viewer holds a Redis connection while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from reasonq.api import metrics
from reasonq.api.coalesce import Coalescer
from reasonq.api.hub_reader import Reader, ReaderStats
from reasonq.api.topics import (
    CHUNK_BYTES,
    EVENTS_VIEW,
    NATIVE_SSE,
    BytesView,
    DirectWrite,
    Format,
    HubUnavailable,
    StreamRef,
    T,
    Topic,
    View,
    generation_ref,
)
from reasonq.api.viewer_counts import ViewerCounts
from reasonq.shared import keys
from reasonq.shared.events import StoredEvent
from reasonq.shared.store import GenerationStore

logger = logging.getLogger(__name__)

# Events fetched per XRANGE when a viewer catches up from Redis (fewer when events are large, see CHUNK_BYTES).
# The first read is small: with events of up to 64 KiB (worker/writer.py MAX_EVENT_CHARS), 4 of them stay near
# CHUNK_BYTES; 16 events of a fast stream let 50 viewers that stopped reading at their first replay pin ~150 MiB.
CATCHUP_COUNT = 256
CATCHUP_FIRST_COUNT = 4
# The first bytes of every native stream: EventSource reconnects after 1 s, not its default 3 s (issue 12: a 3.09 s
# gap measured across an API restart).
RETRY_FRAME = b"retry: 1000\n\n"
# Ends a native stream whose source went away (Redis unreachable, this server shutting down): reconnect in 1 s.
REDIS_GONE_FRAME = b"retry: 1000\n: event source unavailable; reconnect with Last-Event-ID\n\n"


class Following:
    """A viewer's bytes from ``Hub.follow``: an async iterator, which its response may hand a direct write to the
    viewer's connection (``direct``); while the viewer is live the hub's reader then writes its chunks itself."""

    __slots__ = ("frames", "write")

    def __init__(self) -> None:
        self.frames: AsyncGenerator[bytes, None] | None = None
        self.write: DirectWrite | None = None

    def direct(self, write: DirectWrite) -> None:
        """Let the hub write this viewer's chunks with ``write`` while nothing else sends on its connection."""
        self.write = write

    def __aiter__(self) -> Following:
        return self

    def __anext__(self) -> Awaitable[bytes]:
        assert self.frames is not None
        return self.frames.__anext__()

    async def aclose(self) -> None:
        if self.frames is not None:
            await self.frames.aclose()


@dataclass
class HubStats(ReaderStats):
    """Counters for tests, benchmarks and metrics (the readers' too)."""

    catchups: int = 0
    topics_opened: int = 0


class Hub:
    """Fans events out from Redis to the viewers of this process.

    Args:
        connect: makes the blocking reader's own connection (called again after the reader lost Redis); its
            socket timeout must outlast ``block_ms``.
        store: the store (pooled connection, for XRANGE catch-ups, wake-ups and viewer counts).
        block_ms: how long one XREAD blocks.
        ring_events: events kept per topic.
        activity_topics: above this many live topics a reader follows the shards' activity indexes instead of
            reading every topic's stream (``api/hub_reader.py``).
    """

    def __init__(
        self,
        connect: Callable[[], Redis],
        store: GenerationStore,
        *,
        block_ms: int,
        ring_events: int,
        activity_topics: int = 200,
    ) -> None:
        self._connect = connect
        self._store = store
        self._block_ms = block_ms
        self._ring_events = ring_events
        self._activity_topics = activity_topics
        self._topics: dict[str, Topic] = {}
        # Viewers opening one topic, or replaying from one point, at once share one read (a join storm, issue 14).
        self._tail: Coalescer[StreamRef, list[StoredEvent]] = Coalescer(
            lambda ref: store.streams.tail_key(ref.key, ring_events)
        )
        self._reads: Coalescer[tuple[StreamRef, int, int], list[StoredEvent]] = Coalescer(
            lambda point: store.streams.read_key(point[0].key, point[1], point[2])
        )
        self._hub_id = secrets.token_hex(8)
        # On a Cluster one reader per shard (an XREAD stays in one slot); on one Redis one reader reads everything.
        self._sharded = store.sharded
        self._readers: dict[int, Reader] = {}
        self._counts = ViewerCounts(store.presence, self._hub_id)  # viewers per generation, published to Redis
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
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
        return self._counts.total

    def watching(self, generation_id: str) -> int:
        """Viewers of one generation in this process, replaying or live."""
        return self._counts.of(generation_id)

    def start(self) -> None:
        """Start the viewer-count publisher (readers start with their first topic)."""
        self._loop = asyncio.get_running_loop()
        self._counts.start()

    def drain_soon(self) -> None:
        """``drain`` from a signal handler or another thread: scheduled on the hub's event loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.drain)

    def drain(self) -> None:
        """End every stream of this process now, cleanly (native streams with a ``retry`` hint, chat streams with an
        error chunk that says where to read on), and every stream opened from now on at once: the server is
        shutting down. Without it, uvicorn waited out its graceful-shutdown timeout and then cut the responses
        (issue 12)."""
        self._draining = True
        for topic in list(self._topics.values()):
            topic.fail(HubUnavailable("server shutting down"))

    async def stop(self) -> None:
        """Stop the readers and release their connections."""
        for reader in self._readers.values():
            await reader.close()
        await self._counts.stop()
        for topic in list(self._topics.values()):
            topic.fail(HubUnavailable("server shutting down"))
        for reader in self._readers.values():
            with contextlib.suppress(RedisError, OSError):
                await self._store.streams.drop_wake(reader.wake_key)

    def follow(self, generation_id: str, after: int, fmt: Format = NATIVE_SSE) -> Following:
        """Every event after ``after`` in ``fmt``, replayed from Redis then live, ending with ``done``.

        If Redis becomes unreachable the iterator yields a ``retry`` hint and ends, so the client resumes. A response
        that can write to its connection directly hands the iterator that write (``Following.direct``).
        """
        following = Following()
        following.frames = self._follow_bytes(generation_id, after, fmt, following)
        return following

    async def _follow_bytes(
        self, generation_id: str, after: int, fmt: Format, following: Following
    ) -> AsyncGenerator[bytes, None]:
        self._counts.watch(generation_id, 1)
        try:
            yield RETRY_FRAME
            async for chunk in self._follow(generation_ref(generation_id), after, BytesView(fmt), following):
                yield chunk
        except (RedisError, OSError, HubUnavailable) as e:
            metrics.REDIS_ERRORS.labels("hub").inc()
            logger.warning("generation %s: ending event stream, Redis unavailable: %s", generation_id, e)
            yield REDIS_GONE_FRAME
        finally:
            self._counts.watch(generation_id, -1)

    async def follow_events(self, generation_id: str, after: int) -> AsyncIterator[list[StoredEvent]]:
        """Every event after ``after``, typed, in batches: for an encoder that keeps per-viewer state. Ends after
        ``done``, or early (without raising) if Redis becomes unreachable."""
        self._counts.watch(generation_id, 1)
        try:
            async for events in self._follow(generation_ref(generation_id), after, EVENTS_VIEW):
                yield events
        except (RedisError, OSError, HubUnavailable) as e:
            metrics.REDIS_ERRORS.labels("hub").inc()
            logger.warning("generation %s: ending event stream, Redis unavailable: %s", generation_id, e)
        finally:
            self._counts.watch(generation_id, -1)

    async def follow_stream(self, ref: StreamRef, after: int) -> AsyncGenerator[list[StoredEvent], None]:
        """Every entry of any stream after ``after``, in batches, from Redis then live, ending after ``done``: a
        durable stream's data (issue 17). Redis errors propagate (``HubUnavailable`` when the reader lost Redis):
        the protocol's client resumes from its last offset."""
        async for events in self._follow(ref, after, EVENTS_VIEW):
            yield events

    async def _follow(
        self, ref: StreamRef, after: int, view: View[T], following: Following | None = None
    ) -> AsyncIterator[T]:
        topic_id = ref.topic_id
        cursor = after
        count = CATCHUP_FIRST_COUNT

        async def catch_up() -> list[StoredEvent]:
            # Slow start: the first read is small, later ones double while they stay under CHUNK_BYTES and shrink
            # toward it when events are large (every pooled connection's read buffer grows to its largest reply).
            nonlocal count
            events = await self._reads.get((ref, cursor, count))  # shared by viewers at the same point
            metrics.EVENTS_FANNED_OUT.inc(len(events))
            size = sum(len(e.data) for e in events)
            count = max(1, count * CHUNK_BYTES // size) if size > CHUNK_BYTES else min(CATCHUP_COUNT, count * 2)
            return events

        # A generation this process already watches is joined at once: its ring (or, when the ring no longer
        # reaches back, a read at the viewer's pace below) has what the viewer lacks. In a join storm that is no
        # Redis call per viewer at all (issue 14: each one's XRANGE queued behind the pool). Otherwise replay
        # what Redis has first: a finished generation never touches the hub.
        while topic_id not in self._topics:
            if self._draining:
                raise HubUnavailable("server shutting down")
            events = await catch_up()
            if not events:
                break
            cursor, done = events[-1].seq, events[-1].type == "done"
            taken = view.replay(events)
            del events  # a viewer that stops reading pins only what it was handed, not the reply too
            yield taken
            if done:
                return
        topic = await self._subscribe(ref)
        try:
            while True:
                if topic.cursor > cursor:
                    from_ring = view.ring(topic, cursor)
                    if from_ring is None:
                        self.stats.catchups += 1
                        metrics.CATCHUPS.inc()
                        events = await catch_up()
                        if not events:
                            # Redis no longer has what the hub read (the generation was deleted, or a failover lost
                            # the tail until its worker writes it again): end here, and the client resumes from its
                            # last event. Reading again at once spun on empty replies.
                            return
                        cursor, done = events[-1].seq, events[-1].type == "done"
                        taken = view.replay(events)
                        del events
                    else:
                        taken, cursor = from_ring
                        done = topic.done_seq is not None and cursor >= topic.done_seq
                    yield taken
                    if done:
                        return
                    continue
                if topic.finished:
                    return  # the resume point was at or past the last event of a finished generation
                if following is not None and following.write is not None and isinstance(view, BytesView):
                    cursor = await topic.park(cursor, view.fmt, following.write)  # live: the reader writes for it
                else:
                    await topic.wait()
        finally:
            self._unsubscribe(topic)

    async def _subscribe(self, ref: StreamRef) -> Topic:
        if self._draining:
            raise HubUnavailable("server shutting down")
        topic = self._topics.get(ref.topic_id)
        if topic is None:
            # The ring starts with the stream's tail, so the viewers joining a generation early (a storm before its
            # first tokens) take every event from memory.
            tail = await self._tail.get(ref)
            if self._draining:  # began during the read: ``drain`` ended the topics there were, not this one
                raise HubUnavailable("server shutting down")
            topic = self._topics.get(ref.topic_id)  # another viewer may have opened it meanwhile
            if topic is None:
                topic = Topic(
                    generation_id=ref.topic_id,
                    key=ref.key.encode(),
                    cursor=0,
                    group=ref.shard if self._sharded else 0,
                )
                if tail:
                    topic.publish(tail, self._ring_events)  # sets the cursor, and ``finished`` at ``done``
                self._topics[ref.topic_id] = topic
                reader = self._reader_of(topic.group)
                reader.add(topic)
                self.stats.topics_opened += 1
                if not topic.finished:
                    await self._wake_reader(reader)
        topic.viewers += 1
        return topic

    def _unsubscribe(self, topic: Topic) -> None:
        topic.viewers -= 1
        if topic.viewers <= 0 and self._topics.get(topic.generation_id) is topic:
            del self._topics[topic.generation_id]
            self._readers[topic.group].remove(topic)

    def _reader_of(self, group: int) -> Reader:
        reader = self._readers.get(group)
        if reader is None:
            # One Redis: one reader for everything, so it follows every shard's activity index.
            shards = [group] if self._sharded else range(keys.SHARDS)
            reader = self._readers[group] = Reader(
                wake_key=keys.hub_wake_key(self._hub_id, group),
                activity_keys=[keys.activity_key(shard) for shard in shards],
                connect=self._connect,
                lost=self._lost,
                block_ms=self._block_ms,
                ring_events=self._ring_events,
                activity_topics=self._activity_topics,
                stats=self.stats,
            )
            reader.start(f"hub-reader-{group}")
        return reader

    def _lost(self, topic: Topic) -> None:
        if self._topics.get(topic.generation_id) is topic:
            del self._topics[topic.generation_id]

    async def _wake_reader(self, reader: Reader) -> None:
        reader.idle.set()
        if reader.wake_sent:
            return  # one wake per round of the reader: 10,000 topics opening at once are not 10,000 writes
        reader.wake_sent = True
        try:
            await self._store.streams.wake(reader.wake_key)
        except BaseException:
            reader.wake_sent = False  # not sent: the next topic tries again
            raise
