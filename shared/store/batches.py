"""Batches: many generations submitted together, tracked as one object (OpenAI's Batch shape)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from reasonq.shared import keys
from reasonq.shared.events import TERMINAL_STATUSES
from reasonq.shared.schemas import GenerationCreate
from reasonq.shared.store.records import ANONYMOUS, Records

_CHUNK = 500  # generations written per pipeline


@dataclass
class BatchState:
    """A batch as ``GET /v1/batches/{id}`` shows it."""

    id: str
    status: str
    created_at: float
    completed_at: float | None
    cancelled_at: float | None
    total: int
    completed: int
    failed: int
    metadata: dict[str, str] | None

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's batch object, as far as it applies."""
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "status": self.status,
            "created_at": self.created_at,
            "completed_at": self.completed_at,
            "cancelled_at": self.cancelled_at,
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "metadata": self.metadata,
            "results_url": f"/v1/batches/{self.id}/results",
        }


class Batches:
    """Reads and writes batches; their generations are records like any other."""

    def __init__(self, redis: Redis, records: Records) -> None:
        self._redis = redis
        self._records = records

    async def create(
        self,
        batch_id: str,
        items: list[tuple[str, str, GenerationCreate]],
        queue: str,
        retention_s: int,
        metadata: dict[str, str] | None,
        owner: str,
    ) -> float:
        """Write every generation (queued) and the batch; ``items`` are (custom_id, generation_id, request)."""
        created_at = time.time()
        for start in range(0, len(items), _CHUNK):
            chunk = [(generation_id, request) for _, generation_id, request in items[start : start + _CHUNK]]
            await self._records.create_many(chunk, created_at, queue, owner)
        async with self._redis.pipeline(transaction=True) as pipe:
            record: dict[str, str | bytes] = {
                "status": "in_progress",
                "created_at": f"{created_at:.3f}",
                "total": str(len(items)),
                "owner": owner,
            }
            if metadata:
                record["metadata"] = orjson.dumps(metadata)
            # redis-py types mapping values as a union that dict[str, str | bytes] does not match (invariance)
            pipe.hset(keys.batch_key(batch_id), mapping=record)  # type: ignore[arg-type]
            for start in range(0, len(items), _CHUNK):
                pipe.rpush(keys.batch_items_key(batch_id), *(f"{c}\t{g}" for c, g, _ in items[start : start + _CHUNK]))
            for key in (keys.batch_key(batch_id), keys.batch_items_key(batch_id)):
                pipe.expire(key, retention_s * 7)  # outlives its generations' queueing; trimmed with them
            await pipe.execute()
        return created_at

    async def delete(self, batch_id: str, generation_ids: list[str], owner: str) -> None:
        """Remove a batch and its generations (used when its tasks could not be queued)."""
        for start in range(0, len(generation_ids), _CHUNK):
            await self._records.delete(generation_ids[start : start + _CHUNK], owner)
        await self._redis.delete(keys.batch_key(batch_id), keys.batch_items_key(batch_id))

    async def owner(self, batch_id: str) -> str | None:
        """The name of the client key that created the batch, ``None`` when unknown or expired."""
        status, owner = cast(list[bytes | None], await self._redis.hmget(keys.batch_key(batch_id), ["status", "owner"]))
        if status is None:
            return None
        return owner.decode() if owner else ANONYMOUS

    async def items(self, batch_id: str) -> list[tuple[str, str]]:
        """(custom_id, generation_id) per input line, in order."""
        raw = cast(list[bytes], await self._redis.lrange(keys.batch_items_key(batch_id), 0, -1))
        return [cast(tuple[str, str], tuple(item.decode().split("\t", 1))) for item in raw]

    async def statuses(self, generation_ids: list[str]) -> list[str | None]:
        """Each generation's status (``None`` once expired)."""
        return [status for status, _ in await self._ends(generation_ids)]

    async def _ends(self, generation_ids: list[str]) -> list[tuple[str | None, float | None]]:
        out: list[tuple[str | None, float | None]] = []
        for start in range(0, len(generation_ids), 2_000):
            out += await self._records.ends(generation_ids[start : start + 2_000])
        return out

    async def get(self, batch_id: str) -> BatchState | None:
        """The batch with counts computed from its generations now."""
        record = cast(dict[bytes, bytes], await self._redis.hgetall(keys.batch_key(batch_id)))
        if not record:
            return None
        ends = await self._ends([gid for _, gid in await self.items(batch_id)])
        completed = sum(s == "completed" for s, _ in ends)
        failed = sum(s in ("failed", "cancelled") or s is None for s, _ in ends)
        status = record[b"status"].decode()
        completed_at = float(record[b"completed_at"]) if b"completed_at" in record else None
        if completed + failed == len(ends) and status in ("in_progress", "cancelling"):
            status = "completed" if status == "in_progress" else "cancelled"
            # When its last line ended, not when a read first noticed (issue 12).
            completed_at = max((f for _, f in ends if f is not None), default=None) or time.time()
            await self._redis.hset(
                keys.batch_key(batch_id), mapping={"status": status, "completed_at": f"{completed_at:.3f}"}
            )
        return BatchState(
            id=batch_id,
            status=status,
            created_at=float(record[b"created_at"]),
            completed_at=completed_at,
            cancelled_at=float(record[b"cancelled_at"]) if b"cancelled_at" in record else None,
            total=int(record[b"total"]),
            completed=completed,
            failed=failed,
            metadata=orjson.loads(record[b"metadata"]) if b"metadata" in record else None,
        )

    async def cancel(self, batch_id: str, retention_s: int) -> None:
        """Cancel every generation of the batch that has not ended. An ended batch (every line ended, whether or
        not a read has noticed yet) is left as it is: cancel relabelled it ``cancelled`` (issue 12)."""
        items = await self.items(batch_id)
        statuses = await self.statuses([gid for _, gid in items])
        running = [
            gid for (_, gid), s in zip(items, statuses, strict=True) if s is not None and s not in TERMINAL_STATUSES
        ]
        if not running or await self._redis.hget(keys.batch_key(batch_id), "status") != b"in_progress":
            return
        await self._redis.hset(
            keys.batch_key(batch_id), mapping={"status": "cancelling", "cancelled_at": f"{time.time():.3f}"}
        )
        for gid in running:
            await self._records.cancel(gid, retention_s)

    async def results(self, batch_id: str) -> AsyncIterator[bytes]:
        """One JSONL line per finished generation, in input order (OpenAI's batch output line format)."""
        items = await self.items(batch_id)
        statuses = await self.statuses([gid for _, gid in items])
        for (custom_id, gid), status in zip(items, statuses, strict=True):
            if status not in TERMINAL_STATUSES:
                continue
            g = await self._records.get(gid)
            if g is None:
                continue
            line: dict[str, Any] = {"id": gid, "custom_id": custom_id, "response": None, "error": None}
            if g.status == "completed":
                line["response"] = {"status_code": 200, "request_id": gid, "body": g.to_chat_completion()}
            else:
                error = g.error or {"type": g.status, "message": f"the generation was {g.status}"}
                line["error"] = {"code": error.get("type"), "message": error.get("message")}
            yield orjson.dumps(line) + b"\n"
