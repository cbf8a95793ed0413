"""Durable Streams (issue 17): streams created, appended to, closed, forked and deleted over the protocol, kept in
Redis Streams beside generations (``shared/keys.py`` ``durable_keys``: one slot per stream).

Every write is one Lua script (``shared/lua/ds_*.lua``), so a producer's state and the data it wrote, or a close
and the final append, change together. A stream's entries are ``N-0`` for its N-th append: the protocol's offset is
N. A fork copies its source's entries up to the fork point (with the same ids, so offsets are shared), then lives
on its own: its lifetime, TTL and reads never depend on the source (the protocol allows copy-on-fork, section 4.2).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Literal, cast

from redis.asyncio import Redis

from reasonq.shared import keys
from reasonq.shared.events import StoredEvent, parse_entry
from reasonq.shared.scripts import load_script
from reasonq.shared.store.streams import Entries

# What ds_append.lua answers (see the script).
AppendOutcome = Literal[
    "appended",
    "duplicate",
    "closed_again",
    "closed",
    "content_type",
    "stale_epoch",
    "epoch_seq",
    "gap",
    "seq",
    "missing",
    "gone",
]
CreateOutcome = Literal["created", "exists", "conflict", "gone"]


@dataclass(frozen=True, slots=True)
class StreamMeta:
    """A durable stream's metadata as a read finds it."""

    stream_id: str
    content_type: str
    ttl_s: int | None
    expires_at_ms: int | None
    expires_at: str | None
    closed: bool
    deleted: bool
    tail: int
    instance: str
    source_id: str | None


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """What a PUT asks for (compared with an existing stream's for idempotent creation)."""

    content_type: str
    ttl_s: int | None = None
    expires_at_ms: int | None = None
    expires_at: str | None = None
    closed: bool = False
    fork: str = ""  # source path, offset and sub-offset as sent ("" when not a fork)


@dataclass(frozen=True, slots=True)
class AppendResult:
    outcome: AppendOutcome
    tail: int
    closed: bool
    a: str = ""
    b: str = ""
    subscribers: int = 0  # subscriptions linked to the stream (when appended)


@dataclass(frozen=True, slots=True)
class Producer:
    """An idempotent producer's headers (section 5.2.1)."""

    producer_id: str
    epoch: int
    seq: int


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value) if value is not None else ""


def _meta(stream_id: str, fields: list[Any]) -> StreamMeta:
    ct, ttl, exp, exp_at, closed, deleted, tail, instance, source = (_text(f) for f in fields)
    return StreamMeta(
        stream_id=stream_id,
        content_type=ct,
        ttl_s=int(ttl) if ttl else None,
        expires_at_ms=int(exp) if exp else None,
        expires_at=exp_at or None,
        closed=closed == "1",
        deleted=deleted == "1",
        tail=int(tail or 0),
        instance=instance,
        source_id=source or None,
    )


class DurableStreams:
    """Durable streams in Redis.

    Args:
        redis: an asyncio Redis client with ``decode_responses=False``.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._create = load_script(redis, "ds_create")
        self._append = load_script(redis, "ds_append")
        self._read = load_script(redis, "ds_read")
        self._delete = load_script(redis, "ds_delete")
        self._link = load_script(redis, "ds_link")

    async def create(
        self,
        stream_id: str,
        config: StreamConfig,
        *,
        owner: str,
        path: str,
        entries: list[tuple[int, bytes]],
        source_id: str | None = None,
    ) -> tuple[CreateOutcome, int, bool]:
        """Create a stream with its first ``entries`` (id, data), or confirm it; ``(outcome, tail, closed)``."""
        args: list[Any] = [
            config.content_type,
            "" if config.ttl_s is None else config.ttl_s,
            "" if config.expires_at_ms is None else config.expires_at_ms,
            config.expires_at or "",
            "1" if config.closed else "",
            owner,
            path,
            config.fork,
            source_id or "",
            secrets.token_hex(4),
        ]
        for entry_id, data in entries:
            args += [entry_id, data]
        outcome, tail, closed = await self._create(keys=keys.durable_script_keys(stream_id), args=args)
        return cast(CreateOutcome, _text(outcome)), int(tail), _text(closed) == "1"

    async def append(
        self,
        stream_id: str,
        entries: list[bytes],
        *,
        content_type: str,
        stream_seq: str | None = None,
        close: bool = False,
        producer: Producer | None = None,
    ) -> AppendResult:
        """Append ``entries`` (one per request: the protocol's unit) and/or close the stream."""
        args: list[Any] = [
            content_type,
            stream_seq or "",
            "1" if close else "",
            producer.producer_id if producer else "",
            producer.epoch if producer else 0,
            producer.seq if producer else 0,
            *entries,
        ]
        outcome, tail, closed, a, b, *linked = await self._append(keys=keys.durable_script_keys(stream_id), args=args)
        return AppendResult(
            cast(AppendOutcome, _text(outcome)),
            int(tail),
            _text(closed) == "1",
            _text(a),
            _text(b),
            int(linked[0]) if linked else 0,
        )

    async def open(
        self, stream_id: str, *, slide: bool, after: int | None = None, count: int = 0
    ) -> tuple[StreamMeta | None, list[StoredEvent]]:
        """A stream's metadata (``None`` when there is none) and, when ``after`` is given, up to ``count`` entries
        after it. ``slide``: this is a read, which restarts a TTL."""
        reply = await self._read(
            keys=keys.durable_keys(stream_id), args=["1" if slide else "", "" if after is None else after, count]
        )
        if not reply:
            return None, []
        fields, entries = reply
        # XRANGE inside a script answers each entry's fields as a flat list.
        return _meta(stream_id, fields), [parse_entry(i, dict(zip(f[::2], f[1::2], strict=True))) for i, f in entries]

    async def read(self, stream_id: str, after: int, count: int, *, until: int | None = None) -> list[StoredEvent]:
        """Up to ``count`` entries after ``after`` (and at most ``until``), without touching the metadata."""
        entries = cast(
            Entries,
            await self._redis.xrange(
                keys.durable_data_key(stream_id),
                min=f"({after}-0",
                max="+" if until is None else f"{until}-0",
                count=count,
            ),
        )
        return [parse_entry(i, f) for i, f in entries]

    async def delete(self, stream_id: str) -> tuple[Literal["missing", "gone", "soft", "deleted"], str | None]:
        """Delete a stream (soft-delete while forks of it live); the outcome and, when deleted, its source's id."""
        await self._prune_forks(stream_id)
        reply = await self._delete(keys=keys.durable_keys(stream_id))
        outcome = _text(reply[0])
        source = _text(reply[1]) if len(reply) > 1 else ""
        return cast(Literal["missing", "gone", "soft", "deleted"], outcome), source or None

    async def link_fork(self, source_id: str, fork_id: str) -> bool:
        """Record a fork in its source's forks (so deleting the source soft-deletes it)."""
        return int(await self._link(keys=keys.durable_keys(source_id), args=["add", fork_id])) == 1

    async def release(self, source_id: str | None, fork_id: str) -> None:
        """A fork is gone: drop it from its source's forks, collecting soft-deleted sources up the chain."""
        while source_id:
            up = _text(await self._link(keys=keys.durable_keys(source_id), args=["remove", fork_id]))
            fork_id, source_id = source_id, up or None

    async def collect_if_orphaned(self, meta: StreamMeta) -> bool:
        """For a soft-deleted stream: drop forks that expired on their own (a TTL ends without a DELETE), and delete
        the tombstone when none is left. True when it was deleted. No fork can be added meanwhile: a soft-deleted
        stream cannot be forked."""
        await self._prune_forks(meta.stream_id)
        stream_keys = keys.durable_keys(meta.stream_id)
        if await self._redis.scard(stream_keys[3]):
            return False
        await self._redis.delete(*stream_keys)
        await self.release(meta.source_id, meta.stream_id)
        return True

    async def _prune_forks(self, stream_id: str) -> None:
        forks_key = keys.durable_keys(stream_id)[3]
        members = [_text(m) for m in await self._redis.smembers(forks_key)]
        for fork_id in members:
            if not await self._redis.exists(keys.durable_keys(fork_id)[0]):
                await self._redis.srem(forks_key, fork_id)
