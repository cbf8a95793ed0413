"""A watched generation's ring of recent events, the wire formats viewers take it in, and the views they take.

The hub (``api/hub.py``) reads Redis and publishes into topics; viewers take chunks of a topic's ring in their
format (each event encoded once per format, one joined chunk shared by viewers at the same cursor) or, when the
ring no longer reaches back, replay from Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from reasonq.api import metrics
from reasonq.api.protocol import chunked
from reasonq.shared import keys
from reasonq.shared.errors import ReasonqError
from reasonq.shared.events import StoredEvent, to_sse

T = TypeVar("T")

# What one viewer is handed at once, in event data. A viewer that stops reading holds its last chunk in its
# socket's send buffer: unbounded chunks let 50 stalled viewers of a 10 MB stream grow the API by 292 MiB
# (tests/api/test_abuse.py, issue 18); one chunk per viewer of at most this size bounds that.
CHUNK_BYTES = 256 * 1024


class HubUnavailable(ReasonqError):
    """The hub lost Redis; viewers end their response and the client resumes with Last-Event-ID."""


@dataclass(frozen=True, slots=True)
class Format:
    """A wire format for events: ``encode`` turns one stored event into bytes. It must depend on the event alone,
    so that one encoding serves every viewer of the format (a format that needs a viewer's state, like the chat
    translator, follows the typed events with ``Hub.follow_events`` instead)."""

    name: str
    encode: Callable[[StoredEvent], bytes]


NATIVE_SSE = Format("sse", to_sse)


@dataclass(frozen=True, slots=True)
class StreamRef:
    """A stream the hub can follow: a generation's events or a durable stream's data (issue 17). ``topic_id`` names
    its topic (unique across both kinds), ``key`` is its Redis Stream and ``shard`` the shard whose slot holds it."""

    topic_id: str
    key: str
    shard: int


def generation_ref(generation_id: str) -> StreamRef:
    """The hub's reference to a generation's events."""
    return StreamRef(generation_id, keys.events_key(generation_id), keys.shard_of(generation_id))


# Writes one framed chunk (``api/protocol.py`` ``chunked``) to a viewer's connection now, or says it cannot.
DirectWrite = Callable[[bytes], bool]


@dataclass(eq=False, slots=True)
class Parked:
    """A viewer asleep at the topic's cursor whose bytes the reader writes straight to its connection
    (``Topic.park``): ``cursor`` moves as they are written, ``woken`` is resolved when the viewer must run."""

    cursor: int
    fmt: Format
    write: DirectWrite
    woken: asyncio.Future[None]


@dataclass(eq=False)
class Topic:
    """One watched generation: the reader's cursor and a ring of the most recent events."""

    generation_id: str
    key: bytes
    cursor: int
    group: int = 0
    finished: bool = False
    viewers: int = 0
    first_seq: int = 0
    events: list[StoredEvent] = field(default_factory=list)
    done_seq: int | None = None
    error: BaseException | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    # Per format: the ring's events encoded so far (aligned with ``events``; extended when a viewer asks), and the
    # last chunk joined for a viewer (its cursor, the topic's cursor then, the bytes, the id of their last event).
    _encoded: dict[str, list[bytes]] = field(default_factory=dict)
    _joined: dict[str, tuple[int, int, bytes, int]] = field(default_factory=dict)
    _parked: set[Parked] = field(default_factory=set)

    def publish(self, events: list[StoredEvent], ring_events: int) -> None:
        """Append events (ids after the cursor) and wake every viewer.

        Ids are consecutive except after a failover lost part of a stream: its attempt writes its history again
        after the highest id it had written (``worker/writer.py``), so the ids jump. The ring indexes events by id,
        so it starts again there; a viewer behind the jump reads from Redis.
        """
        after_gap = 0
        if events[-1].seq - events[0].seq != len(events) - 1:  # a jump inside the batch (rare: scan only then)
            after_gap = next(i for i in range(len(events) - 1, 0, -1) if events[i].seq != events[i - 1].seq + 1)
        if after_gap or (self.events and events[0].seq != self.cursor + 1):
            events = events[after_gap:]
            self.events = []
            self._encoded.clear()
            self._joined.clear()
        if not self.events:
            self.first_seq = events[0].seq
        self.events += events
        if events[-1].type == "done":
            self.done_seq = events[-1].seq
            self.finished = True
        self.cursor = events[-1].seq
        metrics.EVENTS_FANNED_OUT.inc(len(events) * self.viewers)  # counted once per batch, not per send
        if len(self.events) > 2 * ring_events:
            drop = len(self.events) - ring_events
            del self.events[:drop]
            for encoded in self._encoded.values():
                del encoded[:drop]  # shorter than ``drop`` (not yet encoded that far) leaves it empty and aligned
            self.first_seq += drop
        self._wake()
        if self._parked:
            self._write_parked()

    def fail(self, error: BaseException) -> None:
        """Wake every viewer with an error."""
        self.error = error
        self._wake()
        for parked in self._parked:
            self._unpark(parked)
        self._parked.clear()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    @staticmethod
    def _unpark(parked: Parked) -> None:
        if not parked.woken.done():
            parked.woken.set_result(None)

    def _write_parked(self) -> None:
        """Write what was just published to every parked viewer it reaches in one chunk, framed once per format
        and starting point; wake the others (the end of the stream, a viewer whose socket is full, a cursor the
        ring no longer reaches) to take it on their own path."""
        framed: dict[tuple[str, int], bytes | None] = {}
        woken: list[Parked] = []
        written = 0
        for parked in self._parked:
            point = (parked.fmt.name, parked.cursor)
            if point in framed:
                chunk = framed[point]
            else:
                taken = None if self.finished else self.chunk_after(parked.cursor, parked.fmt)
                chunk = None
                if taken is not None and taken[0] and taken[1] == self.cursor:  # all of it, in one chunk
                    chunk = chunked(taken[0])
                framed[point] = chunk
            if chunk is not None and parked.write(chunk):
                parked.cursor = self.cursor
                written += 1
            else:
                woken.append(parked)
        for parked in woken:
            self._parked.discard(parked)
            self._unpark(parked)
        metrics.DIRECT_WRITES.inc(written)

    async def park(self, cursor: int, fmt: Format, write: DirectWrite) -> int:
        """Sleep at ``cursor`` (the topic's own) while the reader writes each new chunk in ``fmt`` with ``write``;
        return the cursor reached when the viewer must run again (``HubUnavailable`` when the reader failed).

        The viewer's task stays asleep while events flow: no wake-up, no frames resumed, no ``send`` per event.
        """
        if self.error is not None:
            raise HubUnavailable(str(self.error))
        parked = Parked(cursor, fmt, write, asyncio.get_running_loop().create_future())
        self._parked.add(parked)
        try:
            await parked.woken
        finally:
            self._parked.discard(parked)
        if self.error is not None:
            raise HubUnavailable(str(self.error))
        return parked.cursor

    def _span(self, cursor: int) -> tuple[int, int] | None:
        """Ring indexes ``[begin, end)`` of the events after ``cursor``, at most ``CHUNK_BYTES`` of data (at least
        one event); ``None`` when the ring no longer reaches back."""
        begin = cursor + 1 - self.first_seq
        if begin < 0 or not self.events:
            return None
        end, size, events = begin, 0, self.events
        while end < len(events) and (size == 0 or size + len(events[end].data) <= CHUNK_BYTES):
            size += len(events[end].data)
            end += 1
        return begin, end

    def events_after(self, cursor: int) -> tuple[list[StoredEvent], int] | None:
        """The events after ``cursor`` (up to ``CHUNK_BYTES`` of them) and the id of the last one, or ``None`` when
        the ring no longer reaches back."""
        span = self._span(cursor)
        if span is None:
            return None
        begin, end = span
        return self.events[begin:end], self.first_seq + end - 1

    def chunk_after(self, cursor: int, fmt: Format) -> tuple[bytes, int] | None:
        """The events after ``cursor`` (up to ``CHUNK_BYTES`` of them) in ``fmt``, joined in one chunk, and the id
        of the last one; ``None`` when the ring no longer reaches back."""
        joined = self._joined.get(fmt.name)
        if joined is not None and joined[0] == cursor and joined[1] == self.cursor:
            return joined[2], joined[3]  # most viewers sit at the same cursor: join once, share the bytes
        span = self._span(cursor)
        if span is None:
            return None
        begin, end = span
        encoded = self._encoded.setdefault(fmt.name, [])
        if len(encoded) < end:
            encoded += [fmt.encode(e) for e in self.events[len(encoded) : end]]
        chunk = b"".join(encoded[begin:end])
        to_seq = self.first_seq + end - 1
        self._joined[fmt.name] = (cursor, self.cursor, chunk, to_seq)
        return chunk, to_seq

    async def wait(self) -> None:
        """Wait until the reader publishes something or fails."""
        if self.error is not None:
            raise HubUnavailable(str(self.error))
        await self._changed.wait()
        if self.error is not None:
            raise HubUnavailable(str(self.error))


class View(Generic[T]):
    """What a viewer takes from the hub: ``T`` from the ring with the id of its last event (``None`` when the ring
    no longer reaches back), or from events replayed from Redis. Both run synchronously where the events are
    taken."""

    def ring(self, topic: Topic, cursor: int) -> tuple[T, int] | None:
        raise NotImplementedError

    def replay(self, events: list[StoredEvent]) -> T:
        raise NotImplementedError


class BytesView(View[bytes]):
    def __init__(self, fmt: Format) -> None:
        self._fmt = fmt

    @property
    def fmt(self) -> Format:
        return self._fmt

    def ring(self, topic: Topic, cursor: int) -> tuple[bytes, int] | None:
        return topic.chunk_after(cursor, self._fmt)

    def replay(self, events: list[StoredEvent]) -> bytes:
        return b"".join(self._fmt.encode(e) for e in events)


class EventsView(View[list[StoredEvent]]):
    def ring(self, topic: Topic, cursor: int) -> tuple[list[StoredEvent], int] | None:
        return topic.events_after(cursor)

    def replay(self, events: list[StoredEvent]) -> list[StoredEvent]:
        return events


EVENTS_VIEW = EventsView()
