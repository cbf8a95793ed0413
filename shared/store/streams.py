"""Event streams: a worker's fenced appends and final write, and the reads viewers replay from.

Writes go through Lua scripts (``shared/lua``) that check the attempt number and the expected last event id
atomically, so a stale attempt can never append and a retried write is never doubled.
"""

from __future__ import annotations

from typing import Any, NamedTuple, cast

import orjson
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from reasonq.shared import keys
from reasonq.shared.batching import ScriptBatcher
from reasonq.shared.events import EventArgs, StoredEvent, parse_entry
from reasonq.shared.scripts import load_script


class Fence(NamedTuple):
    """What every write of an attempt is fenced on: its number and the token of the claim that started it (two
    histories of one generation, before and after a failover, may each have an attempt of the same number)."""

    number: int
    token: str


# What XRANGE/XREVRANGE/XREAD answer with decode_responses=False.
Entries = list[tuple[bytes, dict[bytes, bytes]]]
# (status, finish_reason, usage, error): how a generation ended.
Outcome = tuple[str, str | None, dict[str, Any] | None, dict[str, Any] | None]


class EventLog:
    """Appends to and reads generations' event streams.

    Args:
        redis: an asyncio Redis client with ``decode_responses=False``.
        batcher: when given, the hot-path writes (append, finish) are pipelined with other callers' writes, and
            the reads viewers replay from with other callers' reads (a join storm over many generations: issue 14).
    """

    def __init__(self, redis: Redis, batcher: ScriptBatcher | None = None) -> None:
        self._redis = redis
        self._batcher = batcher
        self._append = load_script(redis, "append")
        self._finish = load_script(redis, "finish")
        self._restore = load_script(redis, "restore")

    async def _run(self, script: AsyncScript, script_keys: list[str], args: list[Any]) -> Any:
        if self._batcher is not None:
            return await self._batcher.call(script, script_keys, args)
        return await script(keys=script_keys, args=args)

    async def _read(self, *command: Any) -> Entries:
        if self._batcher is not None:
            return cast(Entries, await self._batcher.command(*command))
        return cast(Entries, await self._redis.execute_command(*command))  # type: ignore[no-untyped-call]

    async def read(self, generation_id: str, after: int, count: int) -> list[StoredEvent]:
        """Up to ``count`` events with ids strictly greater than ``after``."""
        return await self.read_key(keys.events_key(generation_id), after, count)

    async def read_key(self, key: str, after: int, count: int) -> list[StoredEvent]:
        """Up to ``count`` entries of the stream at ``key`` (a generation's events or a durable stream's data) with
        ids strictly greater than ``after``."""
        entries = await self._read("XRANGE", key, f"({after}-0", "+", "COUNT", count)
        return [parse_entry(entry_id, fields) for entry_id, fields in entries]

    async def tail(self, generation_id: str, count: int) -> list[StoredEvent]:
        """The newest ``count`` events, oldest first (empty when there are none)."""
        return await self.tail_key(keys.events_key(generation_id), count)

    async def tail_key(self, key: str, count: int) -> list[StoredEvent]:
        """The newest ``count`` entries of the stream at ``key``, oldest first."""
        entries = await self._read("XREVRANGE", key, "+", "-", "COUNT", count)
        return [parse_entry(entry_id, fields) for entry_id, fields in reversed(entries)]

    async def append(self, generation_id: str, attempt: Fence, expected_seq: int, events: list[EventArgs]) -> int:
        """Append events for ``attempt``; returns the new last seq, -1 if fenced, -2 if cancel was requested, -3 if
        this Redis lost part of the attempt's history (``restore``)."""
        args: list[str | bytes | int] = [attempt.number, attempt.token, expected_seq]
        for event in events:
            args.extend(event)
        return int(await self._run(self._append, keys.append_keys(generation_id), args))

    async def finish(
        self,
        generation_id: str,
        attempt: Fence,
        expected_seq: int,
        retention_s: int,
        outcome: Outcome,
        events: list[EventArgs],
        tool_calls: list[dict[str, Any]] | None = None,
        system_fingerprint: str | None = None,
    ) -> int:
        """Append the last events, record ``(status, finish_reason, usage, error)``, the answer's complete
        ``tool_calls`` and the provider's ``system_fingerprint``, and start retention; -1 if fenced, -3 if this
        Redis lost part of the attempt's history (``restore``)."""
        status, finish_reason, usage, error = outcome
        args: list[str | bytes | int] = [
            attempt.number,
            attempt.token,
            expected_seq,
            retention_s,
            status,
            finish_reason or "",
            orjson.dumps(usage) if usage is not None else b"",
            orjson.dumps(error) if error is not None else b"",
            orjson.dumps(tool_calls) if tool_calls else b"",
            system_fingerprint or "",
        ]
        for event in events:
            args.extend(event)
        return int(await self._run(self._finish, keys.script_keys(generation_id), args))

    async def restore(
        self,
        generation_id: str,
        attempt: Fence,
        highest_seq: int,
        lease_ttl_ms: int,
        text: tuple[str, str],
        events: list[tuple[str, bytes]],
    ) -> int:
        """Write an attempt's history again after a failover lost part of it (``shared/lua/restore.lua``): its
        ``events`` after ``highest_seq`` (the highest id it wrote) and its whole ``(reasoning, content)`` so far.
        Returns the new last seq, or -1 if the attempt no longer owns the generation."""
        args: list[str | bytes | int] = [attempt.number, attempt.token, highest_seq, lease_ttl_ms, *text]
        for event_type, data in events:
            args += [event_type, data]
        return int(await self._restore(keys=keys.script_keys(generation_id), args=args))

    async def wake(self, wake_key: str) -> None:
        """Wake a blocked reader that includes ``wake_key`` (a short stream of its own) in its XREAD."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(wake_key, {b"w": b"1"}, maxlen=16, approximate=True)
            pipe.expire(wake_key, keys.HUB_WAKE_TTL_S)
            await pipe.execute()

    async def drop_wake(self, wake_key: str) -> None:
        """Remove a reader's wake stream (the reader stopped)."""
        await self._redis.delete(wake_key)
