"""The generation store: every read and write of a generation's Redis keys, shared by the API and the worker.

Writes that a worker makes go through Lua scripts (``shared/lua``) that check the attempt number and the
expected last event id atomically, so a stale attempt can never append and a retried write is never doubled.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, cast

import orjson
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from shared import keys
from shared.events import DATA_FIELD, TYPE_FIELD, StatusEvent, StoredEvent, encode_event, parse_entry
from shared.schemas import GenerationCreate, GenerationPublic

# What XRANGE/XREVRANGE answer with decode_responses=False.
_Entries = list[tuple[bytes, dict[bytes, bytes]]]
# (type, data, text): text is what a reasoning/content event adds to the record's running text, else "".
EventTriple = tuple[str, bytes, str]


def _load_script(redis: Redis, name: str) -> AsyncScript:
    source = resources.files("shared").joinpath("lua", f"{name}.lua").read_text()
    return redis.register_script(source)


def _text(value: bytes | None) -> str | None:
    return value.decode() if value else None


def _json(value: bytes | None) -> Any:
    return orjson.loads(value) if value else None


@dataclass(frozen=True, slots=True)
class ClaimTarget:
    """What a worker reads before claiming: the state to compare-and-set on, and the request to run."""

    status: str
    attempt: int
    request: GenerationCreate


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """The outcome of a claim: ``claimed`` (with the last event id) or why not."""

    outcome: Literal["claimed", "missing", "finished", "busy", "conflict"]
    seq: int = 0
    detail: str = ""


class GenerationStore:
    """Reads and writes generations in Redis.

    Args:
        redis: an asyncio Redis client with ``decode_responses=False``.
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._claim = _load_script(redis, "claim")
        self._append = _load_script(redis, "append")
        self._finish = _load_script(redis, "finish")
        self._renew = _load_script(redis, "renew")

    async def create(self, generation_id: str, request: GenerationCreate, created_at: float) -> None:
        """Write a new queued generation and its first event (``status queued``, id 1) in one transaction."""
        event_type, data = encode_event(StatusEvent(status="queued", attempt=0))
        record: dict[str, str | bytes] = {
            "id": generation_id,
            "status": "queued",
            "model": request.model or "",
            "created_at": f"{created_at:.3f}",
            "attempt": "0",
            "seq": "1",
            "request": request.model_dump_json(exclude_none=True),
        }
        if request.metadata:
            record["metadata"] = orjson.dumps(request.metadata)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.record_key(generation_id), mapping=record)  # type: ignore[arg-type]
            pipe.xadd(keys.events_key(generation_id), {TYPE_FIELD: event_type, DATA_FIELD: data}, id="1-0")
            await pipe.execute()

    async def delete(self, generation_id: str) -> None:
        """Remove every key of a generation (used when its task could not be queued)."""
        await self.redis.delete(*keys.generation_keys(generation_id))

    async def exists(self, generation_id: str) -> bool:
        """Whether the generation is known (and not expired)."""
        return bool(await self.redis.exists(keys.record_key(generation_id)))

    async def get(self, generation_id: str) -> GenerationPublic | None:
        """The generation as the API shows it, or ``None`` when unknown or expired."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.record_key(generation_id))
            pipe.get(keys.reasoning_key(generation_id))
            pipe.get(keys.content_key(generation_id))
            record, reasoning, content = await pipe.execute()
        if not record:
            return None
        started_at = record.get(b"started_at")
        finished_at = record.get(b"finished_at")
        return GenerationPublic(
            id=generation_id,
            status=record[b"status"].decode(),
            model=record[b"model"].decode(),
            created_at=float(record[b"created_at"]),
            started_at=float(started_at) if started_at else None,
            finished_at=float(finished_at) if finished_at else None,
            reasoning=(reasoning or b"").decode(),
            content=(content or b"").decode(),
            finish_reason=_text(record.get(b"finish_reason")),
            usage=_json(record.get(b"usage")),
            error=_json(record.get(b"error")),
            attempt=int(record[b"attempt"]),
            metadata=_json(record.get(b"metadata")),
        )

    async def read_events(self, generation_id: str, after: int, count: int) -> list[StoredEvent]:
        """Up to ``count`` events with ids strictly greater than ``after``."""
        entries = cast(
            _Entries, await self.redis.xrange(keys.events_key(generation_id), min=f"({after}-0", max="+", count=count)
        )
        return [parse_entry(entry_id, fields) for entry_id, fields in entries]

    async def last_event(self, generation_id: str) -> StoredEvent | None:
        """The newest event, ``None`` when there is none."""
        entries = cast(_Entries, await self.redis.xrevrange(keys.events_key(generation_id), count=1))
        return parse_entry(entries[0][0], entries[0][1]) if entries else None

    async def load_claim_target(self, generation_id: str) -> ClaimTarget | None:
        """Status, attempt and request of a generation, ``None`` if it does not exist."""
        status, attempt, request = cast(
            list[bytes | None], await self.redis.hmget(keys.record_key(generation_id), ["status", "attempt", "request"])
        )
        if status is None or request is None:
            return None
        return ClaimTarget(
            status=status.decode(),
            attempt=int(attempt or 0),
            request=GenerationCreate.model_validate_json(request),
        )

    async def claim(
        self, generation_id: str, expected_attempt: int, lease_ttl_ms: int, events: list[tuple[str, bytes]]
    ) -> ClaimResult:
        """Start attempt ``expected_attempt + 1`` if nobody else holds a live lease; append ``events``."""
        args: list[str | bytes | int] = [expected_attempt, lease_ttl_ms]
        for event_type, data in events:
            args += [event_type, data]
        reply = await self._claim(keys=keys.generation_keys(generation_id), args=args)
        outcome = reply[0].decode()
        if outcome == "claimed":
            return ClaimResult("claimed", seq=int(reply[1]))
        return ClaimResult(outcome, detail=reply[1].decode() if len(reply) > 1 else "")

    async def append(self, generation_id: str, attempt: int, expected_seq: int, events: list[EventTriple]) -> int:
        """Append events for ``attempt``; returns the new last seq, -1 if fenced, -2 if cancel was requested."""
        args: list[str | bytes | int] = [attempt, expected_seq]
        for triple in events:
            args.extend(triple)
        return int(await self._append(keys=keys.generation_keys(generation_id), args=args))

    async def finish(
        self,
        generation_id: str,
        attempt: int,
        expected_seq: int,
        retention_s: int,
        outcome: tuple[str, str | None, dict[str, Any] | None, dict[str, Any] | None],
        events: list[EventTriple],
    ) -> int:
        """Append the last events, record ``(status, finish_reason, usage, error)`` and start retention."""
        status, finish_reason, usage, error = outcome
        args: list[str | bytes | int] = [
            attempt,
            expected_seq,
            retention_s,
            status,
            finish_reason or "",
            orjson.dumps(usage) if usage is not None else b"",
            orjson.dumps(error) if error is not None else b"",
        ]
        for triple in events:
            args.extend(triple)
        return int(await self._finish(keys=keys.generation_keys(generation_id), args=args))

    async def renew_leases(self, leases: list[tuple[str, int]], lease_ttl_ms: int) -> list[str]:
        """Extend the leases of ``(generation_id, attempt)`` pairs; returns the ids no longer owned."""
        if not leases:
            return []
        lost = await self._renew(
            keys=[keys.record_key(gid) for gid, _ in leases], args=[lease_ttl_ms, *(a for _, a in leases)]
        )
        return [leases[int(i) - 1][0] for i in lost]
