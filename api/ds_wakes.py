"""Waking Durable Streams subscriptions (PROTOCOL.md 7): every API process runs one ``Waker``.

Writes tell it which subscriptions to look at (``on_created``, ``on_appended``: the stream's ``subs`` set); it puts
them in the shared due set and looks at what it claims from there: it ends wakes whose lease ran out, issues a new
wake (a new generation) when a linked stream has data past its cursor and none is in flight, delivers webhook wakes
(signed; retried from 1 s doubling to 60 s, jitter ±20 %, the schedule kept in Redis) and writes pull-wake events
to the subscription's wake stream. Its next look at a subscription (a lease's end, a retry) is that member's score,
so whichever process claims it next honours the schedule, across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from redis.exceptions import RedisError

from reasonq.api.ds_signing import WebhookSigner
from reasonq.api.ds_webhook_http import webhook_client
from reasonq.api.durable_protocol import JSON_TYPE, format_offset
from reasonq.shared import keys
from reasonq.shared.store import GenerationStore
from reasonq.shared.store.subscriptions import BEFORE_FIRST, Subscription, glob_match

logger = logging.getLogger(__name__)
_CLAIM = 32  # subscriptions looked at per round
_POLL_S = 0.5  # how often due work of other processes (leases, retries) is looked for
_RESPONSE_BYTES = 65_536  # a receiver's answer read at most (only {"done": true} matters)
_FIRST_RETRY_MS, _LAST_RETRY_MS = 1_000, 60_000


def now_ms() -> int:
    return int(time.time() * 1000)


def offset_text(entry: int) -> str:
    return "-1" if entry == BEFORE_FIRST else format_offset(entry)


def stream_infos(sub: Subscription, tails: dict[str, int], *, with_tails: bool = True) -> list[dict[str, Any]]:
    """The subscription's streams as the protocol shows them (with tails and pending in wakes and claims)."""
    out = []
    for path in sorted(sub.links):
        link = sub.links[path]
        info: dict[str, Any] = {"path": path, "link_type": link.link_type, "acked_offset": offset_text(link.acked)}
        if with_tails:
            tail = tails.get(path, 0)
            info |= {"tail_offset": format_offset(tail), "has_pending": tail > link.acked}
        out.append(info)
    return out


def action_url(base_url: str, client_id: str, action: str) -> str:
    return f"{base_url.rstrip('/')}/v1/stream/__ds/subscriptions/{quote(client_id, safe='-_.~')}/{action}"


def retry_delay_ms(retries: int) -> int:
    """The protocol's backoff (7.1): 1 s doubling to 60 s, ±20 % jitter."""
    base = min(_FIRST_RETRY_MS * 2 ** min(retries, 16), _LAST_RETRY_MS)
    return int(base * random.uniform(0.8, 1.2))


class Waker:
    """Issues and delivers this deployment's subscription wakes (one per API process)."""

    def __init__(self, store: GenerationStore, signer: WebhookSigner, *, timeout_s: float, loopback: bool) -> None:
        self._store = store
        self._subs = store.subscriptions
        self._signer = signer
        self._timeout_s = timeout_s
        self.loopback = loopback
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None

    def start(self) -> None:
        self._http = webhook_client(timeout_s=self._timeout_s, loopback=self.loopback)
        self._task = asyncio.create_task(self._run(), name="ds-waker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._http is not None:
            await self._http.aclose()

    # --- what writes tell it --------------------------------------------------------------------------------

    async def on_created(self, owner: str, path: str, stream_id: str, tail: int) -> None:
        """A stream was created: pattern subscriptions of its owner link it (from its start), and every linked
        subscription is woken when it was created with data."""
        for sub_id in await self._subs.stream_created(owner, path):
            await self._subs.link(owner, sub_id, "g", [(path, 0)])
        if tail > 0:
            await self.on_appended(stream_id)

    async def on_appended(self, stream_id: str) -> None:
        """Data was appended to a stream some subscription is linked to."""
        await self.wake_now(await self._subs.subscribers(stream_id))

    async def wake_now(self, sub_ids: list[str], at_ms: int | None = None) -> None:
        if sub_ids:
            await self._subs.mark_due(sub_ids, at_ms)
            self._kick.set()

    async def on_deleted(self, owner: str, path: str, stream_id: str) -> None:
        await self._subs.stream_deleted(owner, path, stream_id)

    async def backfill(self, owner: str, sub_id: str, pattern: str, wake_stream: str | None) -> None:
        """A new pattern subscription links the owner's matching streams at their current tails (no replay); never
        its own wake stream (each wake would wake it again)."""
        paths = [p for p in await self._subs.owner_paths(owner) if glob_match(pattern, p) and p != wake_stream]
        tails = await self._subs.tails(owner, paths)
        await self._subs.forget_paths(owner, [p for p in paths if p not in tails])
        if tails:
            await self._subs.link(owner, sub_id, "g", list(tails.items()))

    # --- the loop -----------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        hold_ms = int(self._timeout_s * 1000) + 10_000  # longer than one delivery: no other process takes it
        while True:
            try:
                if self._signer.loaded:  # a key in use stays in the JWKS
                    await self._signer.announce(self._subs)
                self._kick.clear()
                held, ids = await self._subs.claim_due(_CLAIM, hold_ms)
                if ids:
                    await asyncio.gather(*(self._look(sub_id, held) for sub_id in ids))
                    if len(ids) == _CLAIM:
                        continue
            except (RedisError, OSError) as e:
                logger.warning("subscriptions: Redis unavailable (%s); retrying", type(e).__name__)
                await asyncio.sleep(1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), _POLL_S)

    async def _look(self, sub_id: str, held: int) -> None:
        try:
            await self._subs.settle_due(sub_id, held, await self.advance(sub_id))
        except (RedisError, OSError) as e:  # the hold runs out and it is looked at again
            logger.warning("subscription %s: Redis unavailable (%s)", sub_id, type(e).__name__)
        except Exception:  # one subscription's failure never stops the waker for the others
            logger.exception("subscription %s: wake step failed; retried when its hold runs out", sub_id)

    async def advance(self, sub_id: str) -> int | None:
        """Move the subscription's wake on as far as it goes now; when to look at it next (``None``: when a
        write or a call changes something)."""
        for _ in range(4):
            sub = await self._subs.load(sub_id)
            if sub is None:
                return None
            tails = await self._subs.tails(sub.fields["owner"], list(sub.links))
            now = now_ms()
            if sub.wake_id:
                if sub.lease_until_ms and sub.lease_until_ms <= now:
                    await self._subs.wake(sub_id, "expire", sub.wake_id)
                    continue
                if sub.type == "webhook" and not sub.delivered:
                    if sub.attempting_ms > now:  # another process is delivering it: look when it must be done
                        return sub.attempting_ms
                    if sub.next_attempt_ms > now:
                        return min(sub.next_attempt_ms, sub.lease_until_ms or sub.next_attempt_ms)
                    await self._deliver(sub, tails)
                    continue
                return sub.lease_until_ms or None  # a pull-wake nobody claimed yet holds no lease
            pending = sub.pending(tails)
            if not pending:
                return None
            if sub.type == "webhook" and sub.next_attempt_ms > now:
                return sub.next_attempt_ms
            snapshot = orjson.dumps({p: tails.get(p, 0) for p in sub.links})
            lease_ms = self._lease_ms(sub) if sub.type == "webhook" else 0
            wake_id = "w_" + secrets.token_hex(8)
            issued, generation = await self._subs.wake(
                sub_id, "issue", sub.generation, secrets.token_urlsafe(24), wake_id, snapshot, lease_ms
            )
            if issued == "issued" and sub.type == "pull-wake":
                await self._write_wake_event(sub, pending[0], generation)
        return now_ms() + 1_000

    def _lease_ms(self, sub: Subscription) -> int:
        # A webhook's lease runs from its delivery, past the delivery's own timeout.
        return int(sub.fields.get("lease_ttl_ms", "30000")) + int(self._timeout_s * 1000)

    async def _write_wake_event(self, sub: Subscription, stream: str, generation: int) -> None:
        owner, client_id = sub.fields["owner"], sub.config.get("id", "")
        wake_stream = str(sub.config.get("wake_stream") or "")
        stream_id = keys.durable_stream_id(owner, wake_stream)
        event = {"type": "wake", "subscription_id": client_id, "stream": stream, "generation": generation}
        event["ts"] = now_ms()
        result = await self._store.durable.append(stream_id, [orjson.dumps(event)], content_type=JSON_TYPE)
        if result.outcome != "appended":
            logger.warning("subscription %s: wake stream not written (%s)", client_id, result.outcome)
        elif result.subscribers:
            await self.on_appended(stream_id)

    async def _deliver(self, sub: Subscription, tails: dict[str, int]) -> None:
        """One webhook delivery attempt of the wake in flight."""
        assert self._http is not None
        client_id = sub.config.get("id", "")
        url = str((sub.config.get("webhook") or {}).get("url", ""))
        rand = secrets.token_urlsafe(24)
        snapshot = {p: tails.get(p, 0) for p in sub.links}
        guard_ms = int(self._timeout_s * 1000) + 5_000  # a delivery's longest time, and then some
        outcome, generation = await self._subs.wake(
            sub.sub_id, "attempt", sub.wake_id, rand, orjson.dumps(snapshot), self._lease_ms(sub), guard_ms
        )
        if outcome != "ok":
            return
        body = orjson.dumps(
            {
                "subscription_id": client_id,
                "wake_id": sub.wake_id,
                "generation": generation,
                "streams": stream_infos(sub, tails),
                "callback_url": action_url(sub.config.get("base_url", ""), client_id, "callback"),
                "callback_token": f"{sub.sub_id}.{generation}.{rand}",
            }
        )
        await self._signer.announce(self._subs)  # published before anything is signed with it
        headers = {"content-type": "application/json", "webhook-signature": self._signer.sign(body)}
        answer = b""
        try:
            async with self._http.stream("POST", url, content=body, headers=headers) as response:
                ok = 200 <= response.status_code < 300
                async for chunk in response.aiter_bytes():
                    answer += chunk
                    if len(answer) > _RESPONSE_BYTES:
                        break
        except (httpx.HTTPError, OSError) as e:
            # the class only: an error's text can carry the URL, and with it a token in its query
            logger.warning("subscription %s: webhook delivery failed (%s)", client_id, type(e).__name__)
            ok = False
        if not ok:
            await self._subs.wake(sub.sub_id, "failed", sub.wake_id, retry_delay_ms(sub.retries))
            return
        await self._subs.wake(sub.sub_id, "delivered", sub.wake_id)
        try:
            done = orjson.loads(answer).get("done") is True
        except (orjson.JSONDecodeError, AttributeError):
            done = False
        if done:  # the protocol's synchronous done: ack what this wake showed, end it
            acks = [(p, entry, entry) for p, entry in snapshot.items()]
            await self._subs.settle(sub.sub_id, "auto", ("", ""), "", sub.wake_id, True, acks)
