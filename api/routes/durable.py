"""The Durable Streams protocol (issue 17): ``/v1/stream/{path}`` (create, append, close, read, HEAD, delete, fork)
and every generation as a read-only durable stream at ``/v1/generations/{id}/stream``.

With client keys configured, a stream belongs to the key that created it: each key has its own namespace of paths
(another key's stream is a 404, as everywhere). Errors are JSON ``{"error": {...}}`` with the protocol's status.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from redis.exceptions import RedisError

from reasonq.api import durable_reads
from reasonq.api.access import ReadableId
from reasonq.api.auth import PrincipalDep
from reasonq.api.deps import HubDep, SettingsDep, StoreDep
from reasonq.api.ds_wakes import Waker
from reasonq.api.durable_protocol import (
    JSON_TYPE,
    PREFLIGHT_HEADERS,
    ProtocolError,
    Start,
    entry_messages,
    format_offset,
    is_true,
    json_messages,
    media_type,
    parse_count,
    parse_expires_at,
    parse_fork_offset,
    parse_offset,
    parse_producer,
)
from reasonq.api.durable_reads import DurableSource, GenerationSource, Source, headers
from reasonq.api.topics import HubUnavailable
from reasonq.shared import keys
from reasonq.shared.store import ANONYMOUS, GenerationStore
from reasonq.shared.store.durable import AppendResult, StreamConfig, StreamMeta

logger = logging.getLogger(__name__)
# Outside the OpenAPI document: the protocol's contract is headers and raw bodies of any type (PROTOCOL.md of
# durable-streams/durable-streams, linked from the README), which OpenAPI cannot state without lying to the fuzz
# test and to generated clients; the protocol's own conformance suite is this surface's contract test.
router = APIRouter(tags=["durable streams"], include_in_schema=False)
PREFIX = "/v1/stream/"
RESERVED = "__ds"  # PROTOCOL.md 6: control APIs (api/routes/ds_subscriptions.py), never a stream path
_PATH = PREFIX + "{path:path}"
# Entries a fork copies per read of its source.
_COPY_ENTRIES = 512


def _error(status: int, message: str, extra: dict[str, str] | None = None) -> Response:
    kind = {400: "invalid_request", 404: "not_found", 409: "conflict", 410: "gone", 403: "forbidden"}
    body = orjson.dumps({"error": {"type": kind.get(status, "error"), "message": message}})
    return Response(body, status_code=status, headers={**headers(content_type="application/json"), **(extra or {})})


async def _answer(work: Any) -> Response:
    """Run a handler's work; protocol errors become their 4xx, a lost Redis a 503 (retry)."""
    try:
        response: Response = await work
        return response
    except ProtocolError as e:
        return _error(e.status, e.message, e.headers)
    except (RedisError, OSError, HubUnavailable) as e:
        logger.warning("durable streams: Redis unavailable: %s", e)
        return _error(503, "storage unavailable; retry", {"retry-after": "1"})


def _stream_id(principal_name: str, path: str) -> str:
    if path == RESERVED or path.startswith(RESERVED + "/"):
        raise ProtocolError(400, "path: __ds/ is reserved for the protocol's control APIs (no stream lives there)")
    return keys.durable_stream_id(principal_name, path)


async def _tell_waker(request: Request, work: Any) -> None:
    """Tell the subscriptions' waker about a write that already happened: a Redis error here is logged, never
    turned into an error for a write that succeeded (a retry would append twice)."""
    try:
        await work
    except (RedisError, OSError) as e:
        logger.warning("durable streams: subscriptions not told of a write (%s)", type(e).__name__)


def _waker(request: Request) -> Waker:
    waker: Waker = request.app.state.waker
    return waker


async def _existing(store: GenerationStore, stream_id: str, *, slide: bool) -> StreamMeta:
    """The stream's metadata; 404 when there is none, 410 when it is soft-deleted (its tombstone goes once its
    forks are gone, then 404)."""
    meta, _ = await store.durable.open(stream_id, slide=slide)
    if meta is None:
        raise ProtocolError(404, "no such stream")
    if meta.deleted:
        if await store.durable.collect_if_orphaned(meta):
            raise ProtocolError(404, "no such stream")
        raise ProtocolError(410, "this stream was deleted (forks of it still read its data)")
    return meta


@router.options(_PATH)
async def preflight(path: str) -> Response:
    """CORS preflight: any origin may read and write with the protocol's headers (keys still apply)."""
    return Response(status_code=204, headers=PREFLIGHT_HEADERS)


@router.put(_PATH, status_code=201, summary="Create a durable stream (or a fork)")
async def create_stream(path: str, request: Request, principal: PrincipalDep, store: StoreDep) -> Response:
    """Create the stream, or confirm it with 200 when it exists with the same configuration (409 otherwise)."""
    return await _answer(_create(path, request, principal.name, store))


async def _create(path: str, request: Request, owner: str, store: GenerationStore) -> Response:
    h = request.headers
    ttl = parse_count(h["stream-ttl"], "Stream-TTL") if "stream-ttl" in h else None
    expires = parse_expires_at(h["stream-expires-at"]) if "stream-expires-at" in h else None
    if ttl is not None and expires is not None:
        raise ProtocolError(400, "Stream-TTL and Stream-Expires-At: give one or the other")
    content_type = media_type(h.get("content-type"))
    body = await request.body()
    stream_id = _stream_id(owner, path)
    entries: list[tuple[int, bytes]] = []
    fork, source_id = "", None
    if "stream-forked-from" not in h and ("stream-fork-offset" in h or "stream-fork-sub-offset" in h):
        raise ProtocolError(400, "Stream-Fork-Offset and Stream-Fork-Sub-Offset: only with Stream-Forked-From")
    if "stream-forked-from" in h:
        source_path = h["stream-forked-from"].strip()
        source_path = source_path[len(PREFIX) :] if source_path.startswith(PREFIX) else source_path.lstrip("/")
        source_id = _stream_id(owner, source_path)
        source, entries = await _fork_source(store, source_id, h.get("stream-fork-offset"), h)
        if content_type is None:
            content_type = source.content_type
        elif content_type != source.content_type:
            raise ProtocolError(409, f"Content-Type: the source stream is {source.content_type}")
        if ttl is None and expires is None:  # section 4.2: a fork inherits its source's expiry
            ttl = source.ttl_s
            if source.expires_at_ms is not None:
                expires = (source.expires_at_ms, source.expires_at or "")
        sub = h.get("stream-fork-sub-offset", "").strip()
        fork = f"{source_path}\n{h.get('stream-fork-offset', '').strip()}\n{'' if sub == '0' else sub}"
    content_type = content_type or "application/octet-stream"
    next_id = (entries[-1][0] if entries else 0) + 1
    if body and content_type == JSON_TYPE:
        messages = json_messages(body, allow_empty=True)
        if messages:
            entries.append((next_id, b",".join(messages)))
    elif body:
        entries.append((next_id, body))
    config = StreamConfig(
        content_type=content_type,
        ttl_s=ttl,
        expires_at_ms=expires[0] if expires else None,
        expires_at=expires[1] if expires else None,
        closed=is_true(h.get("stream-closed")),
        fork=fork,
    )
    outcome, tail, closed = await store.durable.create(
        stream_id, config, owner=owner, path=path, entries=entries, source_id=source_id
    )
    if outcome == "conflict":
        raise ProtocolError(409, "a stream exists at this path with another configuration")
    if outcome == "gone":
        raise ProtocolError(409, "this path's stream was deleted and forks of it live: it cannot be created again yet")
    if outcome == "created" and source_id is not None:
        await store.durable.link_fork(source_id, stream_id)
    if outcome == "created":
        await _tell_waker(request, _waker(request).on_created(owner, path, stream_id, tail))
    out = headers(
        content_type=content_type,
        stream_next_offset=format_offset(tail),
        stream_closed="true" if closed else None,
        location=str(request.url.replace(query=None)) if outcome == "created" else None,
    )
    return Response(status_code=201 if outcome == "created" else 200, headers=out)


async def _fork_source(
    store: GenerationStore, source_id: str, offset_header: str | None, h: Any
) -> tuple[StreamMeta, list[tuple[int, bytes]]]:
    """The source's metadata and the entries a fork of it inherits (copied, with their ids)."""
    meta, _ = await store.durable.open(source_id, slide=False)
    if meta is None:
        raise ProtocolError(404, "Stream-Forked-From: no such stream")
    if meta.deleted:
        raise ProtocolError(409, "Stream-Forked-From: that stream was deleted")
    offset = meta.tail if offset_header is None else parse_fork_offset(offset_header.strip())
    if offset > meta.tail:
        raise ProtocolError(400, f"Stream-Fork-Offset: past the source's tail ({format_offset(meta.tail)})")
    sub_header = h.get("stream-fork-sub-offset")
    sub = parse_count(sub_header, "Stream-Fork-Sub-Offset") if sub_header is not None else 0
    copied: list[tuple[int, bytes]] = []
    after = 0
    while after < offset:
        batch = await store.durable.read(source_id, after, _COPY_ENTRIES, until=offset)
        copied += [(e.seq, e.data) for e in batch if e.type == "data"]
        if not batch:
            break
        after = batch[-1].seq
    if sub:
        following = [e for e in await store.durable.read(source_id, offset, 1) if e.type == "data"]
        if not following:
            raise ProtocolError(400, "Stream-Fork-Sub-Offset: there is no data after Stream-Fork-Offset")
        data = following[0].data
        if meta.content_type == JSON_TYPE:
            messages = entry_messages(data)
            if sub > len(messages):
                raise ProtocolError(400, f"Stream-Fork-Sub-Offset: the next append holds {len(messages)} messages")
            part = b",".join(messages[:sub])
        else:
            if sub > len(data):
                raise ProtocolError(400, f"Stream-Fork-Sub-Offset: the next append holds {len(data)} bytes")
            part = data[:sub]
        copied.append((offset + 1, part))
    return meta, copied


@router.post(_PATH, status_code=204, summary="Append to (and/or close) a durable stream")
async def append_stream(path: str, request: Request, principal: PrincipalDep, store: StoreDep) -> Response:
    """Append the body; ``Stream-Closed: true`` closes the stream (with or without a final append)."""
    return await _answer(_append(path, request, principal.name, store))


async def _append(path: str, request: Request, owner: str, store: GenerationStore) -> Response:
    h = request.headers
    close = is_true(h.get("stream-closed"))
    producer = parse_producer(h.get("producer-id"), h.get("producer-epoch"), h.get("producer-seq"))
    body = await request.body()
    if not body and not close:
        raise ProtocolError(400, "body: empty (an append needs data; Stream-Closed: true closes without any)")
    content_type = media_type(h.get("content-type"))
    if body and content_type is None:
        raise ProtocolError(400, "Content-Type: required with a body")
    entries = []
    if body:
        entries = [b",".join(json_messages(body, allow_empty=False))] if content_type == JSON_TYPE else [body]
    stream_id = _stream_id(owner, path)
    result = await store.durable.append(
        stream_id,
        entries,
        content_type=content_type or "",
        stream_seq=h.get("stream-seq"),
        close=close,
        producer=producer,
    )
    if result.outcome == "gone":
        await _existing(store, stream_id, slide=False)  # 410, or 404 once its tombstone was collected
    if result.outcome == "appended" and entries and result.subscribers:
        await _tell_waker(request, _waker(request).on_appended(stream_id))
    return _append_response(result, with_data=bool(entries), producer=producer is not None)


def _append_response(result: AppendResult, *, with_data: bool, producer: bool) -> Response:
    offset = format_offset(result.tail)
    closed = "true" if result.closed else None
    match result.outcome:
        case "appended":
            out = headers(stream_next_offset=offset, stream_closed=closed)
            if producer:
                out |= {"producer-epoch": result.a, "producer-seq": result.b}
            return Response(status_code=200 if producer and with_data else 204, headers=out)
        case "duplicate":
            out = headers(stream_next_offset=offset, stream_closed=closed)
            return Response(status_code=204, headers=out | {"producer-epoch": result.a, "producer-seq": result.b})
        case "closed_again":
            return Response(status_code=204, headers=headers(stream_next_offset=offset, stream_closed="true"))
        case "closed":
            extra = {"stream-closed": "true", "stream-next-offset": offset}
            raise ProtocolError(409, "the stream is closed: no more appends", extra)
        case "content_type":
            raise ProtocolError(409, "Content-Type: does not match the stream's")
        case "stale_epoch":
            raise ProtocolError(
                403, "Producer-Epoch: stale (another session of this producer took over)", {"producer-epoch": result.a}
            )
        case "epoch_seq":
            raise ProtocolError(400, "Producer-Seq: a new epoch starts at 0")
        case "gap":
            raise ProtocolError(
                409,
                f"Producer-Seq: expected {result.a}, got {result.b}",
                {"producer-expected-seq": result.a, "producer-received-seq": result.b},
            )
        case "seq":
            raise ProtocolError(409, "Stream-Seq: not greater than the last one")
        case _:
            raise ProtocolError(404, "no such stream")


@router.head(_PATH, summary="A durable stream's metadata")
async def stream_metadata(path: str, principal: PrincipalDep, store: StoreDep) -> Response:
    """Tail offset, content type, TTL / expiry and closure; never slides a TTL."""
    return await _answer(_head(path, principal.name, store))


async def _head(path: str, owner: str, store: GenerationStore) -> Response:
    meta = await _existing(store, _stream_id(owner, path), slide=False)
    return Response(
        headers=headers(
            content_type=meta.content_type,
            stream_next_offset=format_offset(meta.tail),
            stream_ttl=None if meta.ttl_s is None else str(meta.ttl_s),
            stream_expires_at=meta.expires_at,
            stream_closed="true" if meta.closed else None,
            cache_control="no-store",
        )
    )


@router.delete(_PATH, status_code=204, summary="Delete a durable stream")
async def delete_stream(path: str, request: Request, principal: PrincipalDep, store: StoreDep) -> Response:
    """Delete the stream; while forks of it live it is soft-deleted (410 on its URL, its path blocked)."""
    return await _answer(_delete(path, request, principal.name, store))


async def _delete(path: str, request: Request, owner: str, store: GenerationStore) -> Response:
    stream_id = _stream_id(owner, path)
    meta, _ = await store.durable.open(stream_id, slide=False)
    outcome, source_id = await store.durable.delete(stream_id)
    if outcome == "missing":
        raise ProtocolError(404, "no such stream")
    if outcome == "gone":
        if meta is not None:
            await store.durable.collect_if_orphaned(meta)
        raise ProtocolError(410, "this stream was already deleted")
    if outcome == "deleted":
        await store.durable.release(source_id, stream_id)
    await _tell_waker(request, _waker(request).on_deleted(owner, path, stream_id))
    return Response(status_code=204, headers=headers())


@dataclass(frozen=True, slots=True)
class ReadMode:
    """A read's ``live`` and ``cursor`` query parameters."""

    live: str | None
    cursor: str | None


async def _read_mode(
    live: Annotated[str | None, Query(description="`long-poll` or `sse`; absent: catch-up")] = None,
    cursor: Annotated[str | None, Query(description="The last Stream-Cursor (live reads)")] = None,
) -> ReadMode:
    return ReadMode(live, cursor)


ReadModeDep = Annotated[ReadMode, Depends(_read_mode)]


@router.get(_PATH, summary="Read a durable stream (catch-up, long-poll or SSE)")
async def read_stream(
    path: str,
    request: Request,
    principal: PrincipalDep,
    store: StoreDep,
    hub: HubDep,
    settings: SettingsDep,
    mode: ReadModeDep,
) -> Response:
    """Bytes from ``offset`` (``-1`` the start, ``now`` the tail), or JSON arrays of messages in JSON mode."""

    async def work() -> Response:
        meta = await _existing(store, _stream_id(principal.name, path), slide=False)
        source = DurableSource(store, meta.stream_id, meta.content_type, shared=principal.name == ANONYMOUS)
        return await _read(source, request, hub, settings, mode)

    return await _answer(work())


@router.get("/v1/generations/{generation_id}/stream", summary="A generation as a durable stream (read-only)")
async def read_generation_stream(
    generation_id: ReadableId,
    request: Request,
    store: StoreDep,
    hub: HubDep,
    settings: SettingsDep,
    mode: ReadModeDep,
) -> Response:
    """JSON mode, one message ``{"id", "type", "data"}`` per event (the offset is the event id), closed after the
    generation's ``done``: the Durable Streams clients follow and resume a generation with it."""
    return await _answer(_read(GenerationSource(store, generation_id), request, hub, settings, mode))


@router.head("/v1/generations/{generation_id}/stream")
async def generation_stream_metadata(generation_id: ReadableId, store: StoreDep) -> Response:
    tail, ended = await store.records.last_seq(generation_id)
    return Response(
        headers=headers(
            content_type=JSON_TYPE,
            stream_next_offset=format_offset(tail),
            stream_closed="true" if ended else None,
            cache_control="no-store",
        )
    )


async def _read(source: Source, request: Request, hub: Any, settings: Any, mode: ReadMode) -> Response:
    live, cursor = mode.live, mode.cursor
    start: Start | None = parse_offset(request.query_params.getlist("offset"))
    if live is None:
        return await durable_reads.catch_up(source, 0 if start is None else start, request.headers.get("if-none-match"))
    if start is None:
        raise ProtocolError(400, f"offset: required with live={live}")
    if live == "long-poll":
        return await durable_reads.long_poll(source, hub, start, cursor, settings.ds_long_poll_s)
    if live == "sse":
        return await durable_reads.sse(
            source, hub, start, cursor, ping_s=settings.sse_ping_s, max_s=settings.ds_sse_max_s
        )
    raise ProtocolError(400, f"live: {live[:32]!r} is not long-poll or sse")
