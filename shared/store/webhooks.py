"""The webhook outbox: which ended objects still owe a delivery, each event's body and each endpoint's state.

An entry enters a shard's outbox (``keys.webhook_due_key``) in the script that ends its generation (finish.lua,
cancel.lua), so no end is ever without its event, whatever crashes next. A deliverer (every worker runs one,
``worker/webhooks.py``) claims due entries by moving their score past the attempt; the first claim turns the
entry into an event (type, body and owner fixed from the object, so every retry sends the same bytes); the entry
leaves the outbox when every subscribed endpoint has it delivered or given up. A batch's generations send nothing
of their own: each end is counted, and the batch's event is enqueued once when the last one ends (or when its
deadline passes, for ``batch.expired``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import orjson
from redis.asyncio import Redis

from reasonq.shared import keys
from reasonq.shared.events import TERMINAL_STATUSES
from reasonq.shared.scripts import load_script
from reasonq.shared.store.batches import ENDED, Batches
from reasonq.shared.webhooks import event_body, event_id, generation_event_type, object_of

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One endpoint's state for one event."""

    state: str = PENDING
    tries: int = 0
    next_ms: int = 0


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """An event as the outbox holds it."""

    id: str
    type: str
    created_at: int
    owner: str
    body: bytes
    first_ms: int
    deliveries: dict[str, Delivery] = field(default_factory=dict)

    @property
    def object_id(self) -> str:
        return object_of(self.id)


@dataclass(frozen=True, slots=True)
class Ending:
    """What an outbox entry's object says: an event to send, a batch line to count, or nothing (gone)."""

    kind: Literal["send", "batch_line", "gone"]
    type: str = ""
    created_at: int = 0
    owner: str = ""
    batch_id: str = ""


class WebhookOutbox:
    """Every read and write of the webhook outbox and events."""

    def __init__(self, redis: Redis, batches: Batches) -> None:
        self._redis = redis
        self._batches = batches
        self._claim = load_script(redis, "webhook_claim")
        self._enqueue = load_script(redis, "webhook_enqueue")

    async def claim(self, shard: int, limit: int, hold_ms: int) -> tuple[int, list[str]]:
        """Up to ``limit`` due event ids of ``shard``, each held for ``hold_ms``; and Redis's clock (ms)."""
        reply = cast(list[bytes], await self._claim(keys=[keys.webhook_due_key(shard)], args=[limit, hold_ms]))
        return int(reply[0]), [item.decode() for item in reply[1:]]

    async def load(self, event_id_: str) -> WebhookEvent | None:
        """The event with its delivery states, ``None`` before its first claim (or once expired)."""
        key = keys.webhook_event_key(event_id_, object_of(event_id_))
        raw = cast(dict[bytes, bytes], await self._redis.hgetall(key))
        if b"body" not in raw:
            return None
        deliveries: dict[str, dict[str, Any]] = {}
        for name, value in raw.items():
            prefix, _, endpoint = name.decode().partition(":")
            if endpoint and prefix in ("state", "tries", "next"):
                deliveries.setdefault(endpoint, {})[prefix] = value.decode()
        return WebhookEvent(
            id=event_id_,
            type=raw[b"type"].decode(),
            created_at=int(raw[b"created_at"]),
            owner=raw[b"owner"].decode(),
            body=raw[b"body"],
            first_ms=int(raw[b"first_ms"]),
            deliveries={
                k: Delivery(v.get("state", PENDING), int(v.get("tries", 0)), int(v.get("next", 0)))
                for k, v in deliveries.items()
            },
        )

    async def ending(self, event_id_: str) -> Ending:
        """What the entry's object is now: a batch that ended, a generation that ended (on its own, or as a line
        of a batch), or gone (expired, deleted)."""
        object_id = object_of(event_id_)
        if object_id.startswith("batch_"):
            state = await self._batches.get(object_id)
            batch_owner = await self._batches.owner(object_id)
            if state is None or batch_owner is None or state.status not in ENDED:
                return Ending("gone")
            return Ending("send", f"batch.{state.status}", int(state.completed_at or time.time()), batch_owner)
        status, finish_reason, surface, owner, finished_at, batch_id = cast(
            list[bytes | None],
            await self._redis.hmget(
                keys.record_key(object_id), ["status", "finish_reason", "surface", "owner", "finished_at", "batch"]
            ),
        )
        if status is None or status.decode() not in TERMINAL_STATUSES or owner is None:
            return Ending("gone")
        if batch_id:
            return Ending("batch_line", batch_id=batch_id.decode())
        event_type = generation_event_type(
            status.decode(), finish_reason.decode() if finish_reason else None, surface is not None
        )
        return Ending("send", event_type, int(float(finished_at or time.time())), owner.decode())

    async def create(self, event_id_: str, ending: Ending, now_ms: int, retention_s: int) -> WebhookEvent:
        """Fix the event's type, body and owner at its first claim (a second claim after a crash keeps the first's)."""
        key = keys.webhook_event_key(event_id_, object_of(event_id_))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "body", event_body(event_id_, ending.type, ending.created_at))
            pipe.hsetnx(key, "first_ms", now_ms)
            pipe.hsetnx(key, "type", ending.type)
            pipe.hsetnx(key, "created_at", ending.created_at)
            pipe.hsetnx(key, "owner", ending.owner)
            pipe.expire(key, retention_s)
            await pipe.execute()
        event = await self.load(event_id_)
        assert event is not None  # written just above, in one transaction
        return event

    async def save(
        self,
        event: WebhookEvent,
        states: dict[str, Delivery],
        attempts: list[dict[str, Any]],
        next_due_ms: int | None,
        retention_s: int,
    ) -> None:
        """Write the endpoints' new states and attempts; keep the event due at ``next_due_ms``, or (``None``)
        take it out of the outbox: every endpoint is done."""
        key = keys.webhook_event_key(event.id, event.object_id)
        log = keys.webhook_log_key(event.id, event.object_id)
        due = keys.webhook_due_key(keys.shard_of(event.object_id))
        async with self._redis.pipeline(transaction=False) as pipe:
            if states:
                fields: dict[str, str | int] = {}
                for name, d in states.items():
                    fields |= {f"state:{name}": d.state, f"tries:{name}": d.tries, f"next:{name}": d.next_ms}
                pipe.hset(key, mapping=fields)  # type: ignore[arg-type]  # redis-py's mapping type is invariant
            if attempts:
                pipe.rpush(log, *(orjson.dumps(a) for a in attempts))
                pipe.ltrim(log, -keys.WEBHOOK_LOG_KEPT, -1)
                pipe.expire(log, retention_s)
            if next_due_ms is None:
                pipe.zrem(due, event.id)
            else:
                pipe.zadd(due, {event.id: next_due_ms}, xx=True)
            await pipe.execute()

    async def attempts(self, event: WebhookEvent) -> list[dict[str, Any]]:
        """The event's delivery attempts, oldest first."""
        raw = cast(list[bytes], await self._redis.lrange(keys.webhook_log_key(event.id, event.object_id), 0, -1))
        return [orjson.loads(item) for item in raw]

    async def drop(self, event_id_: str) -> None:
        """Take an entry out of the outbox without sending (its object is gone, or it was a batch line)."""
        await self._redis.zrem(keys.webhook_due_key(keys.shard_of(object_of(event_id_))), event_id_)

    async def count_batch_line(self, batch_id: str, generation_id: str, retention_s: int) -> bool:
        """Count a batch line's end (idempotent); whether every line of the batch has now ended."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.sadd(keys.batch_ended_key(batch_id), generation_id)
            pipe.scard(keys.batch_ended_key(batch_id))
            pipe.hget(keys.batch_key(batch_id), "total")
            pipe.expire(keys.batch_ended_key(batch_id), retention_s * 7)  # the batch's own lifetime
            _, ended, total, _ = await pipe.execute()
        return total is not None and int(ended) >= int(total)

    async def enqueue_batch(self, batch_id: str, retention_s: int) -> bool:
        """Enqueue the batch's event if the batch has ended and it was not enqueued before; whether it was now."""
        state = await self._batches.get(batch_id)  # also turns a batch whose lines all ended into completed/cancelled
        if state is None or state.status not in ENDED:
            return False
        await self._redis.zrem(keys.batch_deadlines_key(), batch_id)
        id_ = event_id(batch_id)
        due = keys.webhook_due_key(keys.shard_of(batch_id))
        return bool(await self._enqueue(keys=[keys.webhook_event_key(id_, batch_id), due], args=[id_, retention_s]))

    async def batches_past_deadline(self, limit: int = 50) -> list[str]:
        """Batches that send webhooks and whose completion window has passed (ended or not)."""
        raw = await self._redis.zrangebyscore(keys.batch_deadlines_key(), "-inf", time.time(), start=0, num=limit)
        return [item.decode() for item in cast(list[bytes], raw)]

    async def forget_deadline(self, batch_id: str) -> None:
        """Stop watching a batch's deadline (it ended, or is gone)."""
        await self._redis.zrem(keys.batch_deadlines_key(), batch_id)
