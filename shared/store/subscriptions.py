"""Durable Streams subscriptions (PROTOCOL.md sections 6-7): durable cursors over streams that wake a worker, by
webhook or through a wake stream, when a linked stream has data past its cursor.

A subscription is two keys in a slot of its own (``keys.ds_subscription_keys``): its state (configuration, the
wake in flight, retry state) and its links (stream path -> link types and acknowledged entry). Every change of
the wake (issue, delivery attempt, claim, ack, release, lease expiry) is one compare-and-set script, so two API
processes, or a late callback and a lease expiry, never both win. Offsets here are entry numbers (the protocol's
offset is ``<entry>_0``); ``-1`` is "before the first".

What wakes a subscription: a stream's ``subs`` set (in the stream's slot, so an append's own script says whether
anyone is linked) names the subscriptions to look at; they are put in the due set (``keys.ds_subscriptions_due_key``)
that every API process's waker (``api/ds_wakes.py``) claims from. Leases and retries are due times in that set,
so a restarted or another process honours them: nothing lives only in memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import orjson
from redis.asyncio import Redis

from reasonq.shared import keys
from reasonq.shared.scripts import load_script

BEFORE_FIRST = -1
SubscriptionType = Literal["webhook", "pull-wake"]


def glob_match(pattern: str, path: str) -> bool:
    """The protocol's stream pattern (6.2): ``*`` one path segment, ``**`` zero or more, other segments literal."""
    pattern_parts = [p for p in pattern.strip("/").split("/") if p]
    path_parts = [p for p in path.strip("/").split("/") if p]

    def match(pi: int, si: int) -> bool:
        while pi < len(pattern_parts):
            part = pattern_parts[pi]
            if part == "**":
                return any(match(pi + 1, i) for i in range(si, len(path_parts) + 1))
            if si >= len(path_parts) or (part != "*" and part != path_parts[si]):
                return False
            pi, si = pi + 1, si + 1
        return si == len(path_parts)

    return match(0, 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else "" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Link:
    """One stream of a subscription."""

    path: str
    types: str  # "e" explicit and/or "g" glob
    acked: int

    @property
    def link_type(self) -> str:
        return "explicit" if "e" in self.types else "glob"


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription as its keys hold it."""

    sub_id: str
    fields: dict[str, str]
    links: dict[str, Link] = field(default_factory=dict)

    def _int(self, name: str) -> int:
        value = self.fields.get(name, "")
        return int(value) if value else 0

    @property
    def deleted(self) -> bool:
        return self.fields.get("deleted") == "1"

    @property
    def type(self) -> SubscriptionType:
        return cast(SubscriptionType, self.fields.get("type", "webhook"))

    @property
    def generation(self) -> int:
        return self._int("generation")

    @property
    def wake_id(self) -> str:
        return self.fields.get("wake_id", "")

    @property
    def lease_until_ms(self) -> int:
        return self._int("lease_until")

    @property
    def next_attempt_ms(self) -> int:
        return self._int("next_attempt")

    @property
    def attempting_ms(self) -> int:
        """Until when a webhook delivery attempt of the wake is under way (some process's)."""
        return self._int("attempting")

    @property
    def retries(self) -> int:
        return self._int("retries")

    @property
    def delivered(self) -> bool:
        return self.fields.get("delivered") == "1"

    @property
    def snapshot(self) -> dict[str, int]:
        raw = self.fields.get("snapshot", "")
        return cast(dict[str, int], orjson.loads(raw)) if raw else {}

    @property
    def config(self) -> dict[str, Any]:
        raw = self.fields.get("config", "")
        return cast(dict[str, Any], orjson.loads(raw)) if raw else {}

    def pending(self, tails: dict[str, int]) -> list[str]:
        """The linked streams with data past their cursor."""
        return [p for p, link in self.links.items() if tails.get(p, 0) > link.acked]


class Subscriptions:
    """Subscriptions in Redis.

    Args:
        redis: an asyncio Redis client with ``decode_responses=False``.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._create = load_script(redis, "dss_create")
        self._link = load_script(redis, "dss_link")
        self._wake = load_script(redis, "dss_wake")
        self._claim = load_script(redis, "dss_claim")
        self._settle = load_script(redis, "dss_settle")
        self._due_settle = load_script(redis, "dss_due")
        self._due_claim = load_script(redis, "webhook_claim")

    async def create(
        self, owner: str, sub_id: str, config: dict[str, Any], config_hash: str, links: list[tuple[str, int, str]]
    ) -> Literal["created", "exists", "conflict"]:
        """Create (or confirm) a subscription with its first links ``(path, acked entry, "e" | "g")``."""
        fields = {
            "owner": owner,
            "type": config["type"],
            "config": orjson.dumps(config).decode(),
            "lease_ttl_ms": config["lease_ttl_ms"],
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        }
        args: list[Any] = [config_hash, len(fields)]
        for name, value in fields.items():
            args += [name, value]
        for path, acked, kind in links:
            args += [path, acked, kind]
        outcome = _text(await self._create(keys=keys.ds_subscription_keys(sub_id), args=args))
        if outcome == "created":
            pattern = config.get("pattern") or ""
            # A pull-wake subscription's own wake stream is never one of its streams: each wake would wake it again.
            await self._index(
                owner, sub_id, [p for p, _, _ in links], pattern=f"{pattern}\n{config.get('wake_stream') or ''}"
            )
        return cast(Literal["created", "exists", "conflict"], outcome)

    async def _index(self, owner: str, sub_id: str, paths: list[str], *, pattern: str = "") -> None:
        # pattern: "<glob>\n<wake stream>" for the owner's patterns hash ("" when it has none)
        pipe = self._redis.pipeline(transaction=False)
        if pattern.split("\n", 1)[0]:
            pipe.hset(keys.ds_owner_patterns_key(owner), sub_id, pattern)
        for path in paths:
            pipe.sadd(keys.durable_keys(keys.durable_stream_id(owner, path))[4], sub_id)
        await pipe.execute()

    async def load(self, sub_id: str) -> Subscription | None:
        """The subscription (``None`` when there is none or it was deleted)."""
        state_key, links_key = keys.ds_subscription_keys(sub_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(state_key)
        pipe.hgetall(links_key)
        state, raw_links = await pipe.execute()
        fields = {_text(k): _text(v) for k, v in state.items()}
        if not fields or fields.get("deleted") == "1":
            return None
        links = {}
        for k, v in raw_links.items():
            path = _text(k)
            types, acked = _text(v).split(" ", 1)
            links[path] = Link(path, types, int(acked))
        return Subscription(sub_id, fields, links)

    async def delete(self, sub: Subscription) -> None:
        """Tombstone the subscription (in-flight callbacks fail; its generation outlives it) and unlink it."""
        state_key, links_key = keys.ds_subscription_keys(sub.sub_id)
        owner = sub.fields.get("owner", "")
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(state_key, mapping={"deleted": "1", "wake_id": "", "tokens": "", "holder": ""})
        pipe.expire(state_key, keys.DS_SUBSCRIPTION_TOMBSTONE_S)
        pipe.delete(links_key)
        pipe.hdel(keys.ds_owner_patterns_key(owner), sub.sub_id)
        pipe.zrem(keys.ds_subscriptions_due_key(), sub.sub_id)
        for path in sub.links:
            pipe.srem(keys.durable_keys(keys.durable_stream_id(owner, path))[4], sub.sub_id)
        await pipe.execute()

    async def link(self, owner: str, sub_id: str, kind: str, links: list[tuple[str, int]]) -> bool:
        """Link streams ``(path, acked entry)`` as ``kind`` ("e" or "g"); False when the subscription is gone."""
        args: list[Any] = ["add", kind]
        for path, acked in links:
            args += [path, acked]
        if not int(await self._link(keys=keys.ds_subscription_keys(sub_id), args=args)):
            return False
        await self._index(owner, sub_id, [p for p, _ in links])
        return True

    async def unlink(self, owner: str, sub_id: str, kind: str, path: str) -> bool:
        """Remove a link type of a stream (the stream stays linked while another type holds it)."""
        ok = int(await self._link(keys=keys.ds_subscription_keys(sub_id), args=["remove", kind, path]))
        if ok and not await self._redis.hexists(keys.ds_subscription_keys(sub_id)[1], path):
            await self._redis.srem(keys.durable_keys(keys.durable_stream_id(owner, path))[4], sub_id)
        return bool(ok)

    async def stream_deleted(self, owner: str, path: str, stream_id: str) -> None:
        """A stream was deleted: every subscription drops its link, and the owner's path index the path."""
        subs_key = keys.durable_keys(stream_id)[4]
        for sub_id in await self.subscribers(stream_id):
            await self._link(keys=keys.ds_subscription_keys(sub_id), args=["drop", path])
        await self._redis.delete(subs_key)
        await self._redis.srem(keys.ds_owner_paths_key(owner), path)

    async def subscribers(self, stream_id: str) -> list[str]:
        """The subscriptions linked to a stream."""
        return [_text(m) for m in await self._redis.smembers(keys.durable_keys(stream_id)[4])]

    async def stream_created(self, owner: str, path: str) -> list[str]:
        """A stream was created: index its path (for later backfills); the owner's subscriptions whose pattern
        matches it."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.sadd(keys.ds_owner_paths_key(owner), path)
        pipe.hgetall(keys.ds_owner_patterns_key(owner))
        _, patterns = await pipe.execute()
        out = []
        for sub_id, value in patterns.items():
            pattern, _, wake_stream = _text(value).partition("\n")  # "<pattern>\n<its wake stream>"
            if path != wake_stream and glob_match(pattern, path):
                out.append(_text(sub_id))
        return out

    async def owner_paths(self, owner: str) -> list[str]:
        """Every stream path the owner created that has not been deleted (expired ones may still be listed)."""
        return [_text(m) async for m in self._redis.sscan_iter(keys.ds_owner_paths_key(owner), count=1000)]

    async def forget_paths(self, owner: str, paths: list[str]) -> None:
        if paths:
            await self._redis.srem(keys.ds_owner_paths_key(owner), *paths)

    async def tails(self, owner: str, paths: list[str]) -> dict[str, int]:
        """Each stream's tail entry; streams that do not exist (or are deleted) are absent."""
        if not paths:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for path in paths:
            pipe.hmget(keys.durable_keys(keys.durable_stream_id(owner, path))[0], "tail", "deleted")
        out = {}
        for path, (tail, deleted) in zip(paths, await pipe.execute(), strict=True):
            if tail is not None and _text(deleted) != "1":
                out[path] = int(tail)
        return out

    async def wake(self, sub_id: str, op: str, *args: Any) -> tuple[str, int]:
        """One step of the wake (``dss_wake.lua``): ``issue``, ``attempt``, ``delivered``, ``failed``, ``expire``."""
        outcome, generation = await self._wake(keys=keys.ds_subscription_keys(sub_id), args=[op, *args])
        return _text(outcome), int(generation)

    async def claim(
        self, sub_id: str, worker: str, rand: str, pending: bool, wake_id: str, snapshot: bytes
    ) -> list[str]:
        """A pull-wake claim (``dss_claim.lua``)."""
        reply = await self._claim(
            keys=keys.ds_subscription_keys(sub_id), args=[worker, rand, "1" if pending else "", wake_id, snapshot]
        )
        return [_text(r) for r in reply]

    async def settle(
        self,
        sub_id: str,
        mode: str,
        token: tuple[str, str],
        generation: str,
        wake_id: str,
        done: bool,
        acks: list[tuple[str, int, int]],
    ) -> list[str]:
        """A callback, ack, release or synchronous done (``dss_settle.lua``); acks are (path, entry, tail)."""
        args: list[Any] = [mode, token[0], token[1], generation, wake_id, "1" if done else ""]
        for path, entry, tail in acks:
            args += [path, entry, tail]
        return [_text(r) for r in await self._settle(keys=keys.ds_subscription_keys(sub_id), args=args)]

    async def mark_due(self, sub_ids: list[str], at_ms: int | None = None) -> None:
        """Look at these subscriptions at ``at_ms`` (now when omitted) or sooner if already due sooner."""
        if sub_ids:
            when = int(time.time() * 1000) if at_ms is None else at_ms
            await self._redis.zadd(keys.ds_subscriptions_due_key(), dict.fromkeys(sub_ids, when), lt=True)

    async def claim_due(self, limit: int, hold_ms: int) -> tuple[int, list[str]]:
        """Up to ``limit`` due subscriptions, held for ``hold_ms``; (the hold's score, their ids)."""
        now_ms, *ids = await self._due_claim(keys=[keys.ds_subscriptions_due_key()], args=[limit, hold_ms])
        return int(now_ms) + hold_ms, [_text(i) for i in ids]

    async def settle_due(self, sub_id: str, held: int, next_ms: int | None) -> None:
        """Done looking at a claimed subscription: next look at ``next_ms`` (``None``: until something changes)."""
        await self._due_settle(
            keys=[keys.ds_subscriptions_due_key()], args=[sub_id, held, "" if next_ms is None else next_ms]
        )

    async def announce_key(self, kid: str, jwk: bytes) -> None:
        """Publish a webhook signing key's public JWK (with when it was last announced)."""
        await self._redis.hset(keys.ds_signing_keys_key(), kid, jwk)

    async def signing_keys(self) -> dict[str, bytes]:
        """Every announced public JWK by key id."""
        raw = cast(dict[bytes, bytes], await self._redis.hgetall(keys.ds_signing_keys_key()))
        return {_text(k): v for k, v in raw.items()}

    async def retire_keys(self, kids: list[str]) -> None:
        if kids:
            await self._redis.hdel(keys.ds_signing_keys_key(), *kids)
