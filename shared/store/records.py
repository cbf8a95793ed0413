"""Generation records: create, read, list, cancel, and the text a worker has streamed so far.

A record is a hash (``keys.record_key``) beside its event stream and two text strings; ``create`` writes the
hash and the first event (``status queued``, id 1) together.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal, NamedTuple, cast

import orjson
from redis.asyncio import Redis

from reasonq.shared import keys
from reasonq.shared.batching import ScriptBatcher
from reasonq.shared.events import DATA_FIELD, TERMINAL_STATUSES, TYPE_FIELD, DoneEvent, StatusEvent, encode_event
from reasonq.shared.redis import is_cluster
from reasonq.shared.schemas import GenerationCreate, GenerationPublic
from reasonq.shared.scripts import load_script
from reasonq.shared.stats import add_metrics
from reasonq.shared.store._values import text_or_none

# The owner of everything created in open mode (no client keys), and of records from before keys existed.
ANONYMOUS = "anonymous"
CancelOutcome = Literal["cancelled", "requested", "ended", "missing"]


class Access(NamedTuple):
    """Who may read a generation, and whether its data is whole."""

    owner: str
    share_epoch: int
    intact: bool  # False when Redis evicted some of its keys (issue 12)


def _json(value: bytes | None) -> Any:
    return orjson.loads(value) if value else None


class Records:
    """Reads and writes generation records.

    Args:
        redis: an asyncio Redis client with ``decode_responses=False``.
        batcher: when given, a viewer's access read is pipelined with other callers' (a join storm over many
            generations: issue 14).
        simulated: the deployment's model is the built-in simulator: each generation created is labelled so.
    """

    def __init__(
        self, redis: Redis, batcher: ScriptBatcher | None = None, *, simulated: bool = False, notify: bool = False
    ) -> None:
        self._redis = redis
        self._batcher = batcher
        self._simulated = simulated
        self._notify = notify  # webhooks are configured: each end adds its event to the outbox (finish.lua)
        self._cancel = load_script(redis, "cancel")
        self._revoke = redis.register_script(
            "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HINCRBY', KEYS[1], 'share_epoch', 1) end"
        )

    @property
    def notify(self) -> bool:
        """Whether the generations written here send webhook events when they end."""
        return self._notify

    async def create(
        self,
        generation_id: str,
        request: GenerationCreate,
        created_at: float,
        queue: str,
        owner: str,
        surface: dict[str, Any] | None = None,
    ) -> None:
        """Write a new queued generation and its first event (``status queued``, id 1) in one transaction.

        ``queue`` is the Celery queue its task goes to; recovery dispatches it to the same queue again.
        ``owner`` is the name of the client key that created it (only that key can read it). ``surface``: what the
        front door that created it wants kept beside the request (the Responses API's own options).
        """
        await self.create_many([(generation_id, request)], created_at, queue, owner, transaction=True, surface=surface)

    async def create_many(
        self,
        items: list[tuple[str, GenerationCreate]],
        created_at: float,
        queue: str,
        owner: str,
        *,
        transaction: bool = False,
        surface: dict[str, Any] | None = None,
        batch_id: str | None = None,
    ) -> None:
        """Write many queued generations (a batch's chunk): one round trip on one Redis.

        Each generation's record, first event and queued-index entry are written in one transaction (on a Cluster,
        one per shard: a transaction stays in one slot), then the owner's recent index.
        """
        if not items:
            return
        event_type, data = encode_event(StatusEvent(status="queued", attempt=0))

        def write(pipe: Any, generation_id: str, request: GenerationCreate) -> None:
            record: dict[str, str | bytes] = {
                "id": generation_id,
                "status": "queued",
                "model": request.model or "",
                "created_at": f"{created_at:.3f}",
                "attempt": "0",
                "seq": "1",
                "queue": queue,
                "owner": owner,
                "request": request.model_dump_json(exclude_none=True),
                "preview": next((m.content or "" for m in reversed(request.messages) if m.role == "user"), "")[:120],
            }
            if request.metadata:
                record["metadata"] = orjson.dumps(request.metadata)
            if surface:
                record["surface"] = orjson.dumps(surface)
            if self._simulated:
                record["simulated"] = "1"
            if self._notify:
                record["notify"] = "1"
            if batch_id:
                record["batch"] = batch_id
            pipe.hset(keys.record_key(generation_id), mapping=record)
            pipe.xadd(keys.events_key(generation_id), {TYPE_FIELD: event_type, DATA_FIELD: data}, id="1-0")
            pipe.zadd(keys.queued_key(keys.shard_of(generation_id)), {generation_id: int(created_at * 1000)})

        def index(pipe: Any) -> None:
            pipe.zadd(keys.recent_key(owner), {generation_id: created_at for generation_id, _ in items})
            pipe.zremrangebyrank(keys.recent_key(owner), 0, -keys.RECENT_KEPT - 1)

        if not is_cluster(self._redis):
            async with self._redis.pipeline(transaction=transaction) as pipe:
                for generation_id, request in items:
                    write(pipe, generation_id, request)
                index(pipe)
                await pipe.execute()
            return

        async def one_shard(group: list[tuple[str, GenerationCreate]]) -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                for generation_id, request in group:
                    write(pipe, generation_id, request)
                await pipe.execute()

        await asyncio.gather(*(one_shard(group) for group in keys.by_shard(items).values()))
        async with self._redis.pipeline(transaction=False) as pipe:
            index(pipe)
            await pipe.execute()

    async def delete(self, generation_ids: list[str], owner: str) -> None:
        """Remove every key of these generations (used when their tasks could not be queued)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for generation_id in generation_ids:
                pipe.delete(*keys.generation_keys(generation_id))
                pipe.zrem(keys.queued_key(keys.shard_of(generation_id)), generation_id)
                pipe.zrem(keys.recent_key(owner), generation_id)
            await pipe.execute()

    async def access_of(self, generation_id: str) -> Access | None:
        """Owner, share epoch and integrity of a generation, ``None`` when unknown or expired (one round trip)."""
        commands = (
            ("HMGET", keys.record_key(generation_id), "status", "owner", "share_epoch", "text_bytes"),
            ("EXISTS", keys.events_key(generation_id)),
            ("STRLEN", keys.reasoning_key(generation_id)),
            ("STRLEN", keys.content_key(generation_id)),
        )
        if self._batcher is not None:
            batcher = self._batcher
            replies = await asyncio.gather(*(batcher.command(*c) for c in commands))
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                replies = await pipe.execute()
        (status, owner, epoch, text_bytes), events, reasoning_bytes, content_bytes = replies
        if status is None:
            return None
        # Every generation has event 1 from its creation on, and an ended one knows its text's length: a missing
        # stream or a shorter text means Redis evicted keys (a maxmemory-policy other than noeviction).
        intact = bool(events) and (text_bytes is None or int(text_bytes) == reasoning_bytes + content_bytes)
        # Generations created before keys existed belong to the open mode's principal.
        return Access((owner.decode() if owner else ANONYMOUS), int(epoch or 0), intact)

    async def last_seq(self, generation_id: str) -> tuple[int, bool]:
        """The id of the generation's newest event (0 when unknown), and whether it has ended."""
        seq, status = cast(
            list[bytes | None], await self._redis.hmget(keys.record_key(generation_id), ["seq", "status"])
        )
        return int(seq or 0), (status or b"").decode() in TERMINAL_STATUSES

    async def statuses(self, generation_ids: list[str]) -> list[str | None]:
        """The status of each generation (``None`` when unknown or expired), in one round trip."""
        return [status for status, _ in await self.ends(generation_ids)]

    async def ends(self, generation_ids: list[str]) -> list[tuple[str | None, float | None]]:
        """Each generation's status and ``finished_at`` (``None`` when unknown, expired, or not ended), in one
        round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for gid in generation_ids:
                pipe.hmget(keys.record_key(gid), ["status", "finished_at"])
            out = cast(list[list[bytes | None]], await pipe.execute())
        return [(text_or_none(s), float(f) if f else None) for s, f in out]

    async def revoke_shares(self, generation_id: str) -> None:
        """Invalidate every share link of a generation issued so far (a no-op once it expired: a plain HINCRBY
        would then create a record without TTL)."""
        await self._revoke(keys=[keys.record_key(generation_id)])

    async def get(self, generation_id: str) -> GenerationPublic | None:
        """The generation as the API shows it, or ``None`` when unknown or expired."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.record_key(generation_id))
            pipe.get(keys.reasoning_key(generation_id))
            pipe.get(keys.content_key(generation_id))
            record, reasoning, content = await pipe.execute()
        if not record:
            return None
        started_at = record.get(b"started_at")
        finished_at = record.get(b"finished_at")
        request = _json(record.get(b"request")) or {}
        return GenerationPublic(
            id=generation_id,
            status=record[b"status"].decode(),
            model=record[b"model"].decode(),
            created_at=float(record[b"created_at"]),
            started_at=float(started_at) if started_at else None,
            finished_at=float(finished_at) if finished_at else None,
            reasoning=(reasoning or b"").decode(),
            content=(content or b"").decode(),
            finish_reason=text_or_none(record.get(b"finish_reason")),
            usage=_json(record.get(b"usage")),
            error=_json(record.get(b"error")),
            attempt=int(record[b"attempt"]),
            tool_calls=_json(record.get(b"tool_calls")),
            system_fingerprint=text_or_none(record.get(b"system_fingerprint")),
            metadata=_json(record.get(b"metadata")),
            simulated=record.get(b"simulated") == b"1",
            messages=request.pop("messages", []),
            request_options=request,
            surface=_json(record.get(b"surface")),
        )

    async def list_recent(self, owner: str, limit: int) -> list[dict[str, Any]]:
        """One owner's newest generations still readable: id, status, model, created_at, preview."""
        ids = cast(list[bytes], await self._redis.zrevrange(keys.recent_key(owner), 0, limit - 1))
        async with self._redis.pipeline(transaction=False) as pipe:
            for gid in ids:
                pipe.hmget(keys.record_key(gid.decode()), ["status", "model", "created_at", "preview", "simulated"])
            rows = await pipe.execute()
        out = []
        for gid, (status, model, created_at, preview, simulated) in zip(ids, rows, strict=True):
            if status is None:
                continue  # expired; the index entry is trimmed with time
            out.append(
                {
                    "id": gid.decode(),
                    "status": status.decode(),
                    "model": (model or b"").decode(),
                    "created_at": float(created_at or 0),
                    "preview": (preview or b"").decode(),
                    "simulated": simulated == b"1",
                }
            )
        return out

    async def get_text(self, generation_id: str) -> tuple[str, str, bool]:
        """The current attempt's reasoning and content so far, and whether it began a tool call."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(keys.reasoning_key(generation_id))
            pipe.get(keys.content_key(generation_id))
            pipe.hexists(keys.record_key(generation_id), "tool_call")
            reasoning, content, tool_call = await pipe.execute()
        return (reasoning or b"").decode(), (content or b"").decode(), bool(tool_call)

    async def cancel(self, generation_id: str, retention_s: int) -> tuple[CancelOutcome, str]:
        """Cancel a generation: ``("cancelled", "")`` if it was queued or waiting for a worker after a hand-back,
        ``("requested", "")`` if running,
        ``("ended", status)`` if it had ended, ``("missing", "")`` if unknown."""
        _, status_data = encode_event(StatusEvent(status="cancelled", attempt=0))
        _, done_data = encode_event(DoneEvent(status="cancelled", finish_reason="cancelled"))
        reply = await self._cancel(keys=keys.script_keys(generation_id), args=[retention_s, status_data, done_data])
        outcome = cast(CancelOutcome, reply[0].decode())
        if outcome == "requested":
            await self._redis.publish(keys.cancel_channel(), generation_id)
        elif outcome == "cancelled":  # queued or handed back, it ends here, not in a worker: count its end here (once)
            await add_metrics(self._redis, f"cancel:{generation_id}", {"ended:cancelled": 1})
        return outcome, reply[1].decode() if len(reply) > 1 else ""
