"""Reads of the Durable Streams protocol (issue 17): catch-up, long-poll and SSE, over any ``Source``: a durable
stream, or a reasonq generation read as one (read-only, JSON mode, one message per event, closed at its end).

Live reads follow the hub (``api/hub.py``): one XREAD per process for every watched stream, a shared ring, and
slow readers catching up from Redis, as native viewers do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import orjson
from fastapi import Response
from redis.exceptions import RedisError

from reasonq.api.durable_protocol import (
    BASE_HEADERS,
    Encoding,
    ProtocolError,
    Start,
    format_offset,
    next_cursor,
    sse_control,
)
from reasonq.api.hub import Hub
from reasonq.api.sse import StreamResponse
from reasonq.api.topics import CHUNK_BYTES, HubUnavailable, StreamRef, generation_ref
from reasonq.shared import keys
from reasonq.shared.events import StoredEvent
from reasonq.shared.store import GenerationStore

# Entries one catch-up read takes (then cut to CHUNK_BYTES of data, at least one entry).
READ_ENTRIES: Final = 256
CACHEABLE: Final = "max-age=60, stale-while-revalidate=300"


@dataclass
class Snapshot:
    """A source as one read found it: its tail, whether it is closed, the data after the read's start, and the id
    its ETags start with (a stream's instance: one created again at the same path never matches an old tag)."""

    tail: int
    closed: bool
    events: list[StoredEvent]
    etag_id: str


class Source:
    """Something readable as a durable stream."""

    encoding: Encoding
    ref: StreamRef
    shared: bool  # readable by anyone with the URL (open mode): catch-up responses are publicly cacheable

    async def snapshot(self, after: int | None, *, slide: bool) -> Snapshot:
        """The tail, closure and (when ``after`` is given) the data after it; raises ``ProtocolError``."""
        raise NotImplementedError

    def convert(self, entries: list[StoredEvent]) -> tuple[list[StoredEvent], bool]:
        """Entries as the hub hands them: the data among them, and whether they reach the end of the stream."""
        raise NotImplementedError


class DurableSource(Source):
    def __init__(self, store: GenerationStore, stream_id: str, content_type: str, *, shared: bool) -> None:
        self._store = store
        self._id = stream_id
        self.encoding = Encoding(content_type)
        self.ref = StreamRef(f"ds:{stream_id}", keys.durable_data_key(stream_id), keys.shard_of(stream_id))
        self.shared = shared

    async def snapshot(self, after: int | None, *, slide: bool) -> Snapshot:
        meta, entries = await self._store.durable.open(self._id, slide=slide, after=after, count=READ_ENTRIES)
        if meta is None:
            raise ProtocolError(404, "no such stream")
        if meta.deleted:
            raise ProtocolError(410, "this stream was deleted")
        data, _ = self.convert(entries)
        return Snapshot(meta.tail, meta.closed, data, f"{self._id[:12]}{meta.instance}")

    def convert(self, entries: list[StoredEvent]) -> tuple[list[StoredEvent], bool]:
        return [e for e in entries if e.type == "data"], any(e.type == "done" for e in entries)


class GenerationSource(Source):
    """A generation as a JSON-mode durable stream: message ``{"id", "type", "data"}`` per event, offset the event id,
    closed after ``done``."""

    def __init__(self, store: GenerationStore, generation_id: str) -> None:
        self._store = store
        self._id = generation_id
        self.encoding = Encoding("application/json")
        self.ref = generation_ref(generation_id)
        self.shared = False

    async def snapshot(self, after: int | None, *, slide: bool) -> Snapshot:
        # ``slide`` does not apply: a generation's retention starts when it ends, whoever reads it.
        tail, ended = await self._store.records.last_seq(self._id)
        events = [] if after is None else await self._store.streams.read(self._id, after, READ_ENTRIES)
        data, _ = self.convert(events)
        return Snapshot(tail, ended, data, f"g{self._id}")

    def convert(self, entries: list[StoredEvent]) -> tuple[list[StoredEvent], bool]:
        data = [
            StoredEvent(e.seq, "data", b'{"id":%d,"type":%s,"data":%s}' % (e.seq, orjson.dumps(e.type), e.data))
            for e in entries
        ]
        return data, any(e.type == "done" for e in entries)


def headers(**extra: str | None) -> dict[str, str]:
    """The protocol's response headers plus ``extra`` (``None`` values left out; ``_`` for ``-``)."""
    out = dict(BASE_HEADERS)
    for name, value in extra.items():
        if value is not None:
            out[name.replace("_", "-")] = value
    return out


def _chunk(events: list[StoredEvent]) -> list[StoredEvent]:
    """At most CHUNK_BYTES of data, at least one entry."""
    size = 0
    for i, event in enumerate(events):
        size += len(event.data)
        if size > CHUNK_BYTES and i > 0:
            return events[:i]
    return events


async def catch_up(source: Source, start: Start, if_none_match: str | None) -> Response:
    """A catch-up read (section 5.6): data from ``start`` to the tail (a chunk of it), or ``offset=now``."""
    snap = await source.snapshot(None if start == "now" else start, slide=True)
    if start == "now":
        body = b"[]" if source.encoding.json else b""
        return Response(
            body,
            headers=headers(
                content_type=source.encoding.content_type,
                stream_next_offset=format_offset(snap.tail),
                stream_up_to_date="true",
                stream_closed="true" if snap.closed else None,
                cache_control="no-store",
            ),
        )
    events = _chunk(snap.events)
    end = events[-1].seq if events else max(start, 0)
    at_tail = end >= snap.tail
    closed = snap.closed and at_tail
    etag = f'"{snap.etag_id}:{format_offset(start)}:{format_offset(end)}{":c" if closed else ""}"'
    scope = "public" if source.shared else "private"
    common = headers(
        content_type=source.encoding.content_type,
        stream_next_offset=format_offset(end),
        stream_up_to_date="true" if at_tail else None,
        stream_closed="true" if closed else None,
        etag=etag,
        # A chunk short of the tail never changes; one at the tail must be revalidated (more may come).
        cache_control=f"{scope}, {CACHEABLE}" if not at_tail or closed else f"{scope}, no-cache",
    )
    if if_none_match is not None and etag in (tag.strip() for tag in if_none_match.split(",")):
        return Response(status_code=304, headers=common)
    return Response(source.encoding.body(events), headers=common)


async def long_poll(source: Source, hub: Hub, start: Start, cursor: str | None, timeout_s: float) -> Response:
    """A long-poll read (section 5.7): data at once if there is some, else the first to arrive, else 204."""
    snap = await source.snapshot(None if start == "now" else start, slide=True)
    after = snap.tail if start == "now" else start
    new_cursor = next_cursor(cursor)
    if snap.events and start != "now":
        return _data_response(source, snap.events, snap, new_cursor)
    if snap.closed and after >= snap.tail:
        return _empty_poll(source, snap.tail, closed=True, cursor=None)
    follow = hub.follow_stream(source.ref, after)
    try:
        async with asyncio.timeout(timeout_s):
            async for entries in follow:
                data, done = source.convert(entries)
                if data:
                    tail = data[-1].seq
                    return _data_response(source, data, Snapshot(tail, done, data, snap.etag_id), new_cursor)
                if done:
                    return _empty_poll(source, after, closed=True, cursor=None)
    except TimeoutError:
        pass
    finally:
        await follow.aclose()
    return _empty_poll(source, after, closed=False, cursor=new_cursor)


def _data_response(source: Source, events: list[StoredEvent], snap: Snapshot, cursor: str) -> Response:
    events = _chunk(events)
    end = events[-1].seq
    at_tail = end >= snap.tail
    closed = snap.closed and at_tail
    return Response(
        source.encoding.body(events),
        headers=headers(
            content_type=source.encoding.content_type,
            stream_next_offset=format_offset(end),
            stream_up_to_date="true" if at_tail else None,
            stream_closed="true" if closed else None,
            stream_cursor=None if closed else cursor,
            etag=f'"{snap.etag_id}:{format_offset(events[0].seq - 1)}:{format_offset(end)}"',
            cache_control="private, no-cache",
        ),
    )


def _empty_poll(source: Source, offset: int, *, closed: bool, cursor: str | None) -> Response:
    return Response(
        status_code=204,
        headers=headers(
            stream_next_offset=format_offset(offset),
            stream_up_to_date="true",
            stream_closed="true" if closed else None,
            stream_cursor=cursor,
            cache_control="no-store",
        ),
    )


async def sse(source: Source, hub: Hub, start: Start, cursor: str | None, *, ping_s: float, max_s: float) -> Response:
    """An SSE read (section 5.8): every data event paired with a control event; closed streams end with
    ``streamClosed``; the response ends after ``max_s`` (the client reconnects from its last offset)."""
    snap = await source.snapshot(None, slide=True)  # 404 / 410 before the stream starts
    after = snap.tail if start == "now" else start
    extra = {"stream_sse_data_encoding": "base64"} if source.encoding.base64 else {}
    return StreamResponse(
        _sse_frames(source, hub, after, snap, cursor, max_s),
        ping_s=ping_s,
        max_s=max_s,
        headers=headers(content_type="text/event-stream", cache_control="no-cache", **extra),
    )


async def _sse_frames(
    source: Source, hub: Hub, after: int, snap: Snapshot, client_cursor: str | None, max_s: float
) -> AsyncIterator[bytes]:
    cursor = next_cursor(client_cursor)
    if after >= snap.tail:
        yield sse_control(format_offset(after), cursor=cursor, up_to_date=True, closed=snap.closed)
        if snap.closed:
            return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_s
    follow = hub.follow_stream(source.ref, after)
    try:
        async for entries in follow:
            data, done = source.convert(entries)
            chunks = _chunks(data)
            for i, chunk in enumerate(chunks):
                end = chunk[-1].seq
                frame = source.encoding.sse_data(chunk)
                if done and i == len(chunks) - 1:
                    yield frame + sse_control(format_offset(end), cursor=None, up_to_date=True, closed=True)
                    return
                # Up to date once past the tail the read started with (live batches are the newest data).
                yield frame + sse_control(format_offset(end), cursor=cursor, up_to_date=end >= snap.tail, closed=False)
                after = end
            if done:
                yield sse_control(format_offset(after), cursor=None, up_to_date=True, closed=True)
                return
            if loop.time() >= deadline:  # (an idle stream's deadline is the response's: StreamResponse max_s)
                return
    except (HubUnavailable, RedisError, OSError):
        # The hub stopped (shutdown) or lost Redis: the response ends whole and the client resumes from its last
        # offset (the protocol has no error event).
        return
    finally:
        with contextlib.suppress(Exception):
            await follow.aclose()


def _chunks(events: list[StoredEvent]) -> list[list[StoredEvent]]:
    chunks = []
    while events:
        chunk = _chunk(events)
        chunks.append(chunk)
        events = events[len(chunk) :]
    return chunks
