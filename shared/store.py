"""The generation store: every read and write of a generation's Redis keys, shared by the API and the worker.

Writes that a worker makes go through Lua scripts (``shared/lua``) that check the attempt number and the
expected last event id atomically, so a stale attempt can never append and a retried write is never doubled.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal, cast

import orjson
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from reasonq.shared import keys
from reasonq.shared.backoff import Backoff
from reasonq.shared.batching import ScriptBatcher
from reasonq.shared.events import (
    DATA_FIELD,
    TERMINAL_STATUSES,
    TYPE_FIELD,
    DoneEvent,
    StatusEvent,
    StoredEvent,
    encode_event,
    parse_entry,
)
from reasonq.shared.schemas import GenerationCreate, GenerationPublic
from reasonq.shared.scripts import load_script
from reasonq.shared.stats import add_metrics

# The owner of everything created in open mode (no client keys), and of records from before keys existed.
ANONYMOUS = "anonymous"
# What XRANGE/XREVRANGE answer with decode_responses=False.
_Entries = list[tuple[bytes, dict[bytes, bytes]]]
logger = logging.getLogger(__name__)
CLAIM_RESENDS = 3  # a claim whose reply was lost is sent again this many times (same token)

# (type, data, text): text is what a reasoning/content event adds to the record's running text, else "".
EventTriple = tuple[str, bytes, str]


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
    restart_reason: str | None = None
    cancel_requested: bool = False
    started_at: float | None = None
    losses: int = 0
    created_at: float = 0.0


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
        batcher: when given, the hot-path writes (append, finish) are pipelined with other callers' writes.
        simulated: the deployment's model is the built-in simulator: each generation created is labelled so.
    """

    def __init__(self, redis: Redis, batcher: ScriptBatcher | None = None, *, simulated: bool = False) -> None:
        self.redis = redis
        self._batcher = batcher
        self._simulated = simulated
        self._claim = load_script(redis, "claim")
        self._append = load_script(redis, "append")
        self._finish = load_script(redis, "finish")
        self._renew = load_script(redis, "renew")
        self._requeue = load_script(redis, "requeue")
        self._cancel = load_script(redis, "cancel")
        self._revoke = redis.register_script(
            "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HINCRBY', KEYS[1], 'share_epoch', 1) end"
        )

    async def _run(self, script: AsyncScript, script_keys: list[str], args: list[Any]) -> Any:
        if self._batcher is not None:
            return await self._batcher.call(script, script_keys, args)
        return await script(keys=script_keys, args=args)

    async def create(
        self, generation_id: str, request: GenerationCreate, created_at: float, queue: str, owner: str
    ) -> None:
        """Write a new queued generation and its first event (``status queued``, id 1) in one transaction.

        ``queue`` is the Celery queue its task goes to; recovery dispatches it to the same queue again.
        ``owner`` is the name of the client key that created it (only that key can read it).
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            self.queue_create(pipe, generation_id, request, created_at, queue, owner)
            await pipe.execute()

    def queue_create(
        self, pipe: Any, generation_id: str, request: GenerationCreate, created_at: float, queue: str, owner: str
    ) -> None:
        """Add the commands that create one generation to ``pipe`` (to write many in one round trip)."""
        event_type, data = encode_event(StatusEvent(status="queued", attempt=0))
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
            "preview": next((m.content for m in reversed(request.messages) if m.role == "user"), "")[:120],
        }
        if request.metadata:
            record["metadata"] = orjson.dumps(request.metadata)
        if self._simulated:
            record["simulated"] = "1"
        pipe.hset(keys.record_key(generation_id), mapping=record)
        pipe.xadd(keys.events_key(generation_id), {TYPE_FIELD: event_type, DATA_FIELD: data}, id="1-0")
        pipe.zadd(keys.queued_key(), {generation_id: int(created_at * 1000)})
        pipe.zadd(keys.recent_key(owner), {generation_id: created_at})
        pipe.zremrangebyrank(keys.recent_key(owner), 0, -keys.RECENT_KEPT - 1)

    async def delete(self, generation_id: str, owner: str) -> None:
        """Remove every key of a generation (used when its task could not be queued)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            self.queue_delete(pipe, generation_id, owner)
            await pipe.execute()

    def queue_delete(self, pipe: Any, generation_id: str, owner: str) -> None:
        """Add the commands that remove one generation to ``pipe`` (to remove many in one round trip)."""
        pipe.delete(*keys.generation_keys(generation_id))
        pipe.zrem(keys.queued_key(), generation_id)
        pipe.zrem(keys.recent_key(owner), generation_id)

    async def access_of(self, generation_id: str) -> tuple[str, int] | None:
        """``(owner, share_epoch)`` of a generation, ``None`` when unknown or expired."""
        status, owner, epoch = cast(
            list[bytes | None],
            await self.redis.hmget(keys.record_key(generation_id), ["status", "owner", "share_epoch"]),
        )
        if status is None:
            return None
        # Generations created before keys existed belong to the open mode's principal.
        return (owner.decode() if owner else ANONYMOUS), int(epoch or 0)

    async def last_seq(self, generation_id: str) -> tuple[int, bool]:
        """The id of the generation's newest event (0 when unknown), and whether it has ended."""
        seq, status = cast(
            list[bytes | None], await self.redis.hmget(keys.record_key(generation_id), ["seq", "status"])
        )
        return int(seq or 0), (status or b"").decode() in TERMINAL_STATUSES

    async def revoke_shares(self, generation_id: str) -> None:
        """Invalidate every share link of a generation issued so far (a no-op once it expired: a plain HINCRBY
        would then create a record without TTL)."""
        await self._revoke(keys=[keys.record_key(generation_id)])

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
            simulated=record.get(b"simulated") == b"1",
            messages=(_json(record.get(b"request")) or {}).get("messages", []),
        )

    async def list_recent(self, owner: str, limit: int) -> list[dict[str, Any]]:
        """One owner's newest generations still readable: id, status, model, created_at, preview."""
        ids = cast(list[bytes], await self.redis.zrevrange(keys.recent_key(owner), 0, limit - 1))
        async with self.redis.pipeline(transaction=False) as pipe:
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

    async def publish_viewers(self, counts: dict[str, int], process_id: str) -> None:
        """Record how many viewers this API process has per generation (0 removes the entry)."""
        if not counts:
            return
        expiry_ms = int(time.time() * 1000) + keys.VIEWERS_TTL_MS // 2
        async with self.redis.pipeline(transaction=False) as pipe:
            for gid, count in counts.items():
                if count > 0:
                    pipe.hset(keys.viewers_key(gid), process_id, f"{count} {expiry_ms}")
                    pipe.pexpire(keys.viewers_key(gid), keys.VIEWERS_TTL_MS)
                else:
                    pipe.hdel(keys.viewers_key(gid), process_id)
            await pipe.execute()

    async def count_viewers(self, generation_id: str) -> int:
        """Viewers of a generation across every API process (entries of processes that stopped updating are
        ignored)."""
        now_ms = time.time() * 1000
        entries = cast(dict[bytes, bytes], await self.redis.hgetall(keys.viewers_key(generation_id)))
        total = 0
        for value in entries.values():
            count, _, expiry = value.decode().partition(" ")
            if float(expiry or 0) > now_ms:
                total += int(count)
        return total

    async def beat(self, worker_id: str) -> None:
        """A worker process is alive (readiness checks look for a recent beat)."""
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.workers_key(), {worker_id: now_ms})
            pipe.zremrangebyscore(keys.workers_key(), "-inf", now_ms - keys.WORKERS_KEPT_MS)
            await pipe.execute()

    async def live_workers(self, within_ms: int) -> int:
        """Worker processes that beat within ``within_ms``."""
        now_ms = int(time.time() * 1000)
        return int(await self.redis.zcount(keys.workers_key(), now_ms - within_ms, "+inf"))

    async def counts(self) -> dict[str, int]:
        """Generations running (holding a lease) and queued, across the deployment."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.leases_key())
            pipe.zcard(keys.queued_key())
            running, queued = await pipe.execute()
        return {"running": int(running), "queued": int(queued)}

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
        fields = [
            "status",
            "attempt",
            "request",
            "restart_reason",
            "cancel",
            "started_at",
            "losses",
            "created_at",
        ]
        status, attempt, request, reason, cancel, started_at, losses, created_at = cast(
            list[bytes | None], await self.redis.hmget(keys.record_key(generation_id), fields)
        )
        if status is None or request is None:
            return None
        return ClaimTarget(
            status=status.decode(),
            attempt=int(attempt or 0),
            request=GenerationCreate.model_validate_json(request),
            restart_reason=_text(reason),
            cancel_requested=cancel is not None,
            started_at=float(started_at) if started_at else None,
            losses=int(losses or 0),
            created_at=float(created_at or 0),
        )

    async def queues_of(self, generation_ids: list[str]) -> dict[str, str]:
        """The Celery queue each generation was submitted to."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for gid in generation_ids:
                pipe.hget(keys.record_key(gid), "queue")
            queues = await pipe.execute()
        return {gid: (q or b"").decode() for gid, q in zip(generation_ids, queues, strict=True)}

    async def get_text(self, generation_id: str) -> tuple[str, str]:
        """The current attempt's reasoning and content so far."""
        reasoning, content = cast(
            list[bytes | None],
            await self.redis.mget([keys.reasoning_key(generation_id), keys.content_key(generation_id)]),
        )
        return (reasoning or b"").decode(), (content or b"").decode()

    async def claim(
        self,
        generation_id: str,
        expected_attempt: int,
        lease_ttl_ms: int,
        events: list[tuple[str, bytes]],
        *,
        handover: bool = False,
        keep_text: bool = False,
    ) -> ClaimResult:
        """Start attempt ``expected_attempt + 1`` and append ``events``.

        Refused while another worker holds a live lease, unless the generation was handed back, or ``handover``
        (the current attempt's own worker starts the next one). ``keep_text`` continues the text instead of
        clearing it.
        """
        token = secrets.token_hex(8)  # one per claim: a resend of this call is recognised as the same claim
        args: list[str | bytes | int] = [expected_attempt, lease_ttl_ms, int(handover), int(keep_text), token]
        for event_type, data in events:
            args += [event_type, data]
        backoff = Backoff(first_s=0.05)
        for resend in range(CLAIM_RESENDS + 1):
            try:
                reply = await self._claim(keys=keys.script_keys(generation_id), args=args)
                break
            except (RedisConnectionError, RedisTimeoutError) as e:
                # Lost on the way there or back: the script may have run. The same token makes the resend
                # answer 'claimed' if it did, so the attempt is never left owned by nobody (issue 18).
                if resend == CLAIM_RESENDS:
                    raise
                logger.warning("generation %s: claim not confirmed (%s); sending it again", generation_id, e)
                await backoff.sleep()
        outcome = reply[0].decode()
        if outcome == "claimed":
            return ClaimResult("claimed", seq=int(reply[1]))
        return ClaimResult(outcome, detail=reply[1].decode() if len(reply) > 1 else "")

    async def append(self, generation_id: str, attempt: int, expected_seq: int, events: list[EventTriple]) -> int:
        """Append events for ``attempt``; returns the new last seq, -1 if fenced, -2 if cancel was requested."""
        args: list[str | bytes | int] = [attempt, expected_seq]
        for triple in events:
            args.extend(triple)
        return int(await self._run(self._append, keys.generation_keys(generation_id), args))

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
        return int(await self._run(self._finish, keys.script_keys(generation_id), args))

    async def renew_leases(self, leases: list[tuple[str, int]], lease_ttl_ms: int) -> tuple[list[str], list[str]]:
        """Extend the leases of ``(generation_id, attempt)`` pairs.

        Returns the ids no longer owned, and the ids whose cancel was requested.
        """
        if not leases:
            return [], []
        lost, cancel = await self._renew(
            keys=[keys.leases_key(), *(keys.record_key(gid) for gid, _ in leases)],
            args=[lease_ttl_ms, *(a for _, a in leases)],
        )
        return [leases[int(i) - 1][0] for i in lost], [leases[int(i) - 1][0] for i in cancel]

    async def requeue_expired(self, grace_ms: int, limit: int = 100) -> list[str]:
        """Hand back every running generation whose lease expired (reason ``worker_lost``); returns their ids.

        The candidates are read first (their records are keys of their own), and the script checks each lease
        again, atomically: one renewed in between is left alone.
        """
        now_ms = await self._now_ms()
        ids = [
            gid.decode()
            for gid in cast(
                list[bytes], await self.redis.zrangebyscore(keys.leases_key(), "-inf", now_ms, start=0, num=limit)
            )
        ]
        if not ids:
            return []
        out = await self._requeue(
            keys=[keys.leases_key(), *(keys.record_key(gid) for gid in ids)],
            args=[grace_ms, "worker_lost", "expired", *ids],
        )
        return [gid.decode() for gid in out]

    async def hand_back(self, leases: list[tuple[str, int]], reason: str, grace_ms: int) -> list[str]:
        """Hand back ``(generation_id, attempt)`` pairs this worker owns (e.g. on shutdown); returns their ids."""
        if not leases:
            return []
        args: list[str | int] = [grace_ms, reason, "attempts"]
        for gid, attempt in leases:
            args += [gid, attempt]
        out = await self._requeue(keys=[keys.leases_key(), *(keys.record_key(gid) for gid, _ in leases)], args=args)
        return [gid.decode() for gid in out]

    async def _now_ms(self) -> int:
        now_s, now_us = await self.redis.time()
        return int(now_s) * 1000 + int(now_us) // 1000

    async def peek_stale_queued(self, older_than_ms: int, limit: int = 100) -> list[str]:
        """Queued generations last dispatched more than ``older_than_ms`` ago (Redis clock)."""
        now_ms = await self._now_ms()
        ids = cast(
            list[bytes],
            await self.redis.zrangebyscore(keys.queued_key(), "-inf", now_ms - older_than_ms, start=0, num=limit),
        )
        return [gid.decode() for gid in ids]

    async def mark_dispatched(self, generation_ids: list[str]) -> list[str]:
        """Record a new dispatch of queued generations; returns those still queued (the others were claimed)."""
        if not generation_ids:
            return []
        now_ms = await self._now_ms()
        async with self.redis.pipeline(transaction=True) as pipe:
            for gid in generation_ids:
                pipe.zadd(keys.queued_key(), {gid: now_ms}, xx=True, ch=True)
            changed = await pipe.execute()
        return [gid for gid, c in zip(generation_ids, changed, strict=True) if c]

    async def cancel(self, generation_id: str, retention_s: int) -> tuple[str, str]:
        """Cancel a generation: ``("cancelled", "")`` if it was queued, ``("requested", "")`` if running,
        ``("ended", status)`` if it had ended, ``("missing", "")`` if unknown."""
        _, status_data = encode_event(StatusEvent(status="cancelled", attempt=0))
        _, done_data = encode_event(DoneEvent(status="cancelled", finish_reason="cancelled"))
        reply = await self._cancel(keys=keys.script_keys(generation_id), args=[retention_s, status_data, done_data])
        outcome = reply[0].decode()
        if outcome == "requested":
            await self.redis.publish(keys.cancel_channel(), generation_id)
        elif outcome == "cancelled":  # a queued one ends here, not in a worker: count its end here too (once)
            await add_metrics(self.redis, f"cancel:{generation_id}", {"ended:cancelled": 1})
        return outcome, reply[1].decode() if len(reply) > 1 else ""
