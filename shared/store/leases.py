"""Leases and dispatch: which worker runs which attempt, handing attempts back, and re-dispatching the queued.

A running attempt holds a lease (a score in ``keys.leases_key``) that its worker renews; an attempt whose lease
expired is handed back (``worker_lost``) and dispatched again. Every change of owner goes through a Lua script
that compares and sets the attempt number, so two workers never write one attempt.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Literal, cast

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from reasonq.shared import keys
from reasonq.shared.backoff import Backoff
from reasonq.shared.batching import ScriptBatcher
from reasonq.shared.schemas import GenerationCreate
from reasonq.shared.scripts import load_script
from reasonq.shared.store._values import server_now_ms, text_or_none

logger = logging.getLogger(__name__)


CLAIM_RESENDS = 3  # a claim whose reply was lost is sent again this many times (same token)


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
    queue: str = ""


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """The outcome of a claim: ``claimed`` (with the last event id) or why not."""

    outcome: Literal["claimed", "missing", "finished", "busy", "conflict"]
    seq: int = 0
    detail: str = ""
    token: str = ""  # the claim's token: the attempt's writes are fenced on it too


class Leases:
    """Claims, renews and hands back attempts; finds what needs dispatching again.

    Args:
        redis: an asyncio Redis client with ``decode_responses=False``.
        batcher: when given, a start's reads and claims are pipelined with other callers' (a burst of starts).
    """

    def __init__(self, redis: Redis, batcher: ScriptBatcher | None = None) -> None:
        self._redis = redis
        self._batcher = batcher
        self._claim = load_script(redis, "claim")
        self._renew = load_script(redis, "renew")
        self._requeue = load_script(redis, "requeue")

    async def load_target(self, generation_id: str) -> ClaimTarget | None:
        """Status, attempt and request of a generation, ``None`` if it does not exist."""
        key = keys.record_key(generation_id)
        reply = await (
            self._batcher.command("HMGET", key, *_TARGET_FIELDS)
            if self._batcher
            else self._redis.hmget(key, _TARGET_FIELDS)
        )
        return _target(cast(list[bytes | None], reply))

    async def load_targets(self, generation_ids: list[str]) -> dict[str, ClaimTarget | None]:
        """``load_target`` of several generations, in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for gid in generation_ids:
                pipe.hmget(keys.record_key(gid), _TARGET_FIELDS)
            replies = await pipe.execute()
        return {gid: _target(reply) for gid, reply in zip(generation_ids, replies, strict=True)}

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
                script_keys = keys.script_keys(generation_id)
                if self._batcher is not None:
                    reply = await self._batcher.call(self._claim, script_keys, args)
                else:
                    reply = await self._claim(keys=script_keys, args=args)
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
            return ClaimResult("claimed", seq=int(reply[1]), token=token)
        return ClaimResult(outcome, detail=reply[1].decode() if len(reply) > 1 else "")

    async def renew(self, leases: list[tuple[str, int]], lease_ttl_ms: int) -> tuple[list[str], list[str]]:
        """Extend the leases of ``(generation_id, attempt)`` pairs (one script call per shard, concurrently).

        Returns the ids no longer owned, and the ids whose cancel was requested.
        """

        async def one(shard: int, group: list[tuple[str, int]]) -> tuple[list[str], list[str]]:
            lost, cancel = await self._renew(
                keys=[keys.leases_key(shard), *(keys.record_key(gid) for gid, _ in group)],
                args=[lease_ttl_ms, *(a for _, a in group)],
            )
            return [group[int(i) - 1][0] for i in lost], [group[int(i) - 1][0] for i in cancel]

        replies = await asyncio.gather(*(one(shard, group) for shard, group in keys.by_shard(leases).items()))
        return [gid for lost, _ in replies for gid in lost], [gid for _, cancel in replies for gid in cancel]

    async def requeue_expired(self, limit: int = 100) -> list[str]:
        """Hand back every running generation whose lease expired (reason ``worker_lost``); returns their ids.

        Per shard, the candidates are read first (their records are keys of their own), and the script checks each
        lease again, atomically: one renewed in between is left alone. Those handed back wait in the queued index.
        """
        now_ms = await server_now_ms(self._redis)
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in range(keys.SHARDS):
                pipe.zrangebyscore(keys.leases_key(shard), "-inf", now_ms, start=0, num=limit)
            candidates = cast(list[list[bytes]], await pipe.execute())

        async def one(shard: int, ids: list[str]) -> list[str]:
            out = await self._requeue(
                keys=[keys.leases_key(shard), keys.queued_key(shard), *(keys.record_key(gid) for gid in ids)],
                args=["worker_lost", "expired", *ids],
            )
            return [gid.decode() for gid in out]

        replies = await asyncio.gather(
            *(one(shard, [gid.decode() for gid in ids]) for shard, ids in enumerate(candidates) if ids)
        )
        return [gid for reply in replies for gid in reply]

    async def hand_back(self, leases: list[tuple[str, int]], reason: str) -> list[str]:
        """Hand back ``(generation_id, attempt)`` pairs this worker owns (e.g. on shutdown); returns their ids."""

        async def one(shard: int, group: list[tuple[str, int]]) -> list[str]:
            args: list[str | int] = [reason, "attempts"]
            for gid, attempt in group:
                args += [gid, attempt]
            out = await self._requeue(
                keys=[keys.leases_key(shard), keys.queued_key(shard), *(keys.record_key(gid) for gid, _ in group)],
                args=args,
            )
            return [gid.decode() for gid in out]

        replies = await asyncio.gather(*(one(shard, group) for shard, group in keys.by_shard(leases).items()))
        return [gid for reply in replies for gid in reply]

    async def now_ms(self) -> int:
        """Redis' clock (ms), the one the queued index is scored by."""
        return await server_now_ms(self._redis)

    async def peek_stale_queued(self, older_than_ms: int, limit: int = 100, *, now_ms: int | None = None) -> list[str]:
        """Queued generations last dispatched more than ``older_than_ms`` ago (Redis clock, or ``now_ms`` when the
        caller knows it), up to ``limit`` per shard."""
        if now_ms is None:
            now_ms = await server_now_ms(self._redis)
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in range(keys.SHARDS):
                pipe.zrangebyscore(keys.queued_key(shard), "-inf", now_ms - older_than_ms, start=0, num=limit)
            replies = cast(list[list[bytes]], await pipe.execute())
        return [gid.decode() for ids in replies for gid in ids]

    async def mark_dispatched(self, generation_ids: list[str]) -> list[str]:
        """Record a new dispatch of queued generations; returns those still queued (the others were claimed)."""
        if not generation_ids:
            return []
        now_ms = await server_now_ms(self._redis)
        async with self._redis.pipeline(transaction=False) as pipe:
            for gid in generation_ids:
                pipe.zadd(keys.queued_key(keys.shard_of(gid)), {gid: now_ms}, xx=True, ch=True)
            changed = await pipe.execute()
        return [gid for gid, c in zip(generation_ids, changed, strict=True) if c]

    async def queues_of(self, generation_ids: list[str]) -> dict[str, str]:
        """The Celery queue each generation was submitted to."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for gid in generation_ids:
                pipe.hget(keys.record_key(gid), "queue")
            queues = await pipe.execute()
        return {gid: (q or b"").decode() for gid, q in zip(generation_ids, queues, strict=True)}

    async def counts(self) -> dict[str, int]:
        """Generations running (holding a lease) and queued, across the deployment."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for shard in range(keys.SHARDS):
                pipe.zcard(keys.leases_key(shard))
                pipe.zcard(keys.queued_key(shard))
            cards = await pipe.execute()
        return {"running": sum(cards[0::2]), "queued": sum(cards[1::2])}


_TARGET_FIELDS = (
    *("status", "attempt", "request", "restart_reason", "cancel", "started_at", "losses", "created_at"),
    "queue",
)


def _target(fields: list[bytes | None]) -> ClaimTarget | None:
    """A ``ClaimTarget`` from a record's ``_TARGET_FIELDS``; ``None`` if it does not exist."""
    status, attempt, request, reason, cancel, started_at, losses, created_at, queue = fields
    if status is None or request is None:
        return None
    return ClaimTarget(
        status=status.decode(),
        attempt=int(attempt or 0),
        request=GenerationCreate.model_validate_json(request),
        restart_reason=text_or_none(reason),
        cancel_requested=cancel is not None,
        started_at=float(started_at) if started_at else None,
        losses=int(losses or 0),
        created_at=float(created_at or 0),
        queue=(queue or b"").decode(),
    )
