"""Batches: many generations submitted together, tracked as one object (OpenAI's Batch shape).

A batch ends ``completed`` when every line ended, ``cancelled`` after a cancel, or ``expired`` when its
completion window passed with lines unfinished (those are cancelled; the finished lines' results are kept). Its
results are two virtual files once it ended (``output_file_id``: the successes, ``error_file_id``: the
failures, in OpenAI's line format), computed from its generations when read.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, cast

import orjson
from redis.asyncio import Redis

from reasonq.shared import keys
from reasonq.shared.events import TERMINAL_STATUSES
from reasonq.shared.schemas import GenerationCreate
from reasonq.shared.store.indexes import add_newest, newest_first
from reasonq.shared.store.records import ANONYMOUS, Records

_CHUNK = 500  # generations written per pipeline
ENDED = frozenset({"completed", "cancelled", "expired"})
_FAILED = frozenset({"failed", "cancelled", None})  # None: the generation expired


def output_file_id(batch_id: str, which: Literal["output", "errors"]) -> str:
    """The id of a batch's output or error file (``api/routes/files.py`` serves it)."""
    return f"file-{batch_id}-{which}"


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """What a batch was created with besides its lines: the uploaded input file (``""`` for lines sent in the
    body), its completion window (OpenAI's ``"24h"``) and how long that is, and its metadata."""

    window_s: int
    input_file_id: str = ""
    completion_window: str = "24h"
    metadata: dict[str, str] | None = None


def _int(value: float | None) -> int | None:
    return int(value) if value is not None else None


@dataclass
class BatchState:
    """A batch as ``GET /v1/batches/{id}`` shows it."""

    id: str
    status: str
    created_at: float
    completed_at: float | None  # when it ended, whichever way
    cancelling_at: float | None
    expired_at: float | None
    expires_at: float
    total: int
    completed: int
    failed: int
    metadata: dict[str, str] | None
    input_file_id: str
    completion_window: str

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's Batch object (integer times, the SDK's statuses), with reasonq's ``results_url``."""
        ended = self.status in ENDED
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "errors": None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": output_file_id(self.id, "output") if ended else None,
            "error_file_id": output_file_id(self.id, "errors")
            if ended and self.failed
            else None,  # expired: failed > 0
            "created_at": int(self.created_at),
            "in_progress_at": int(self.created_at),
            "expires_at": int(self.expires_at),
            "finalizing_at": _int(self.completed_at) if ended else None,
            "completed_at": _int(self.completed_at) if self.status == "completed" else None,
            "failed_at": None,
            "expired_at": _int(self.expired_at),
            "cancelling_at": _int(self.cancelling_at),
            "cancelled_at": _int(self.completed_at) if self.status == "cancelled" else None,
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
        options: BatchOptions,
        owner: str,
    ) -> float:
        """Write every generation (queued) and the batch; ``items`` are (custom_id, generation_id, request)."""
        created_at = time.time()
        for start in range(0, len(items), _CHUNK):
            chunk = [(generation_id, request) for _, generation_id, request in items[start : start + _CHUNK]]
            await self._records.create_many(chunk, created_at, queue, owner, batch_id=batch_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            record: dict[str, str | bytes] = {
                "status": "in_progress",
                "created_at": f"{created_at:.3f}",
                "total": str(len(items)),
                "owner": owner,
                "expires_at": f"{created_at + options.window_s:.3f}",
                "input_file_id": options.input_file_id,
                "completion_window": options.completion_window,
            }
            if options.metadata:
                record["metadata"] = orjson.dumps(options.metadata)
            # redis-py types mapping values as a union that dict[str, str | bytes] does not match (invariance)
            pipe.hset(keys.batch_key(batch_id), mapping=record)  # type: ignore[arg-type]
            for start in range(0, len(items), _CHUNK):
                pipe.rpush(keys.batch_items_key(batch_id), *(f"{c}\t{g}" for c, g, _ in items[start : start + _CHUNK]))
            for key in (keys.batch_key(batch_id), keys.batch_items_key(batch_id)):
                pipe.expire(key, retention_s * 7)  # outlives its generations' queueing; trimmed with them
            await pipe.execute()
        await add_newest(self._redis, keys.batches_index_key(owner), batch_id, created_at)
        if self._records.notify:  # its end is noticed without a read, expiry included (shared/store/webhooks.py)
            await self._redis.zadd(keys.batch_deadlines_key(), {batch_id: created_at + options.window_s})
        return created_at

    async def delete(self, batch_id: str, generation_ids: list[str], owner: str) -> None:
        """Remove a batch and its generations (used when its tasks could not be queued)."""
        for start in range(0, len(generation_ids), _CHUNK):
            await self._records.delete(generation_ids[start : start + _CHUNK], owner)
        await self._redis.delete(keys.batch_key(batch_id), keys.batch_items_key(batch_id))
        await self._redis.zrem(keys.batches_index_key(owner), batch_id)
        await self._redis.zrem(keys.batch_deadlines_key(), batch_id)

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
        status = record[b"status"].decode()
        # Once expired, a line still stopping is a failure already (it is in the error file as batch_expired).
        failed = (
            len(ends) - completed if status == "expired" else sum(s != "completed" and s in _FAILED for s, _ in ends)
        )
        completed_at = float(record[b"completed_at"]) if b"completed_at" in record else None
        if completed + failed == len(ends) and status in ("in_progress", "cancelling"):
            status = "completed" if status == "in_progress" else "cancelled"
            # When its last line ended, not when a read first noticed (issue 12).
            completed_at = max((f for _, f in ends if f is not None), default=None) or time.time()
            await self._redis.hset(
                keys.batch_key(batch_id), mapping={"status": status, "completed_at": f"{completed_at:.3f}"}
            )
        created_at = float(record[b"created_at"])
        return BatchState(
            id=batch_id,
            status=status,
            created_at=created_at,
            completed_at=completed_at,
            cancelling_at=_time(record, b"cancelled_at"),
            expired_at=_time(record, b"expired_at"),
            expires_at=_time(record, b"expires_at") or created_at + 86_400,
            total=int(record[b"total"]),
            completed=completed,
            failed=failed,
            metadata=orjson.loads(record[b"metadata"]) if b"metadata" in record else None,
            input_file_id=record.get(b"input_file_id", b"").decode(),
            completion_window=record.get(b"completion_window", b"24h").decode(),
        )

    async def list(self, owner: str, limit: int, after: str | None) -> tuple[list[BatchState], bool]:
        """``owner``'s batches, newest first, after the batch ``after``; and whether more follow."""
        out: list[BatchState] = []
        gone: list[str] = []
        async for batch_id in newest_first(self._redis, keys.batches_index_key(owner), after):
            state = await self.get(batch_id)
            if state is None:
                gone.append(batch_id)
                continue
            if len(out) == limit:
                return out, True
            out.append(state)
        if gone:
            await self._redis.zrem(keys.batches_index_key(owner), *gone)
        return out, False

    async def expire_if_due(self, batch_id: str, retention_s: int) -> None:
        """End a batch whose completion window passed with lines unfinished: ``expired``, those lines cancelled,
        the finished lines' results kept."""
        status, expires_at = cast(
            list[bytes | None], await self._redis.hmget(keys.batch_key(batch_id), ["status", "expires_at"])
        )
        if status not in (b"in_progress", b"cancelling") or expires_at is None or time.time() < float(expires_at):
            return
        items = await self.items(batch_id)
        statuses = await self.statuses([gid for _, gid in items])
        running = [
            gid for (_, gid), s in zip(items, statuses, strict=True) if s is not None and s not in TERMINAL_STATUSES
        ]
        if not running:
            return  # every line ended in time: get() ends it completed
        now = f"{time.time():.3f}"
        await self._redis.hset(
            keys.batch_key(batch_id), mapping={"status": "expired", "expired_at": now, "completed_at": now}
        )
        for gid in running:
            await self._records.cancel(gid, retention_s)

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

    async def results(self, batch_id: str, which: Literal["all", "output", "errors"] = "all") -> AsyncIterator[bytes]:
        """One JSONL line per finished generation, in input order (OpenAI's batch output line format): every one,
        or only the successes (``output``) or only the failures (``errors``). Once a batch expired, a line still
        stopping is a failure already (``batch_expired``, as OpenAI reports it)."""
        items = await self.items(batch_id)
        statuses = await self.statuses([gid for _, gid in items])
        expired = await self._redis.hget(keys.batch_key(batch_id), "status") == b"expired"
        for (custom_id, gid), status in zip(items, statuses, strict=True):
            if status is not None and status not in TERMINAL_STATUSES and expired and which != "output":
                message = "the batch's completion window passed before this request finished"
                expired_line: dict[str, Any] = {
                    "id": gid,
                    "custom_id": custom_id,
                    "response": None,
                    "error": {"code": "batch_expired", "message": message},
                }
                yield orjson.dumps(expired_line) + b"\n"
                continue
            if status not in TERMINAL_STATUSES:
                continue
            g = await self._records.get(gid)
            if g is None:
                continue
            if which != "all" and (g.status == "completed") != (which == "output"):
                continue
            line: dict[str, Any] = {"id": gid, "custom_id": custom_id, "response": None, "error": None}
            if g.status == "completed":
                line["response"] = {"status_code": 200, "request_id": gid, "body": g.to_chat_completion()}
            else:
                error = g.error or {"type": g.status, "message": f"the generation was {g.status}"}
                line["error"] = {"code": error.get("type"), "message": error.get("message")}
            yield orjson.dumps(line) + b"\n"


def _time(record: dict[bytes, bytes], field: bytes) -> float | None:
    return float(record[field]) if record.get(field) else None
