"""The webhook deliverer every worker process runs (when ``REASONQ_WEBHOOKS`` is set).

Each pass claims the events due in every shard's outbox (``shared/store/webhooks.py``) and POSTs each to the
endpoints that subscribed to its type, signed as Standard Webhooks (``shared/webhooks.py``). A 2xx is delivered;
a timeout, a connection error or any other status is retried after an exponential backoff with jitter, until
``REASONQ_WEBHOOK_RETRY_FOR_S`` after the first try. Delivery is at least once: a claim holds the event past the
attempt, so a worker killed mid-attempt leaves it due again for another; receivers dedupe on ``webhook-id``.
Redirects are not followed: nothing is sent to a URL the operator did not configure.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import httpx
from redis.exceptions import RedisError

from reasonq.shared import keys
from reasonq.shared.store.webhooks import DELIVERED, FAILED, PENDING, Delivery, WebhookEvent, WebhookOutbox
from reasonq.shared.webhooks import WebhookEndpoint, signature_headers
from reasonq.worker.runtime import WorkerRuntime

logger = logging.getLogger(__name__)

IDLE_POLL_S = 0.25  # a pass that found nothing waits this long: the latency of a delivery after an end
CLAIM_LIMIT = 50  # events per shard per pass
HOLD_MARGIN_S = 5.0  # a claim outlives the attempt's timeout by this much
BACKOFF_MAX_S = 3_600.0
DEADLINE_CHECK_S = 1.0
MAX_CONNECTIONS = 64


def next_delay_s(first_s: float, tries: int) -> float:
    """The wait before retry ``tries`` + 1: ``first_s`` doubled per failed try, at most an hour, ±20 % jitter."""
    return float(min(first_s * 2 ** (tries - 1), BACKOFF_MAX_S) * random.uniform(0.8, 1.2))


class Deliverer:
    """One process's deliverer: claims due events and sends them."""

    def __init__(self, runtime: WorkerRuntime, http: httpx.AsyncClient) -> None:
        self.settings = runtime.settings
        self.endpoints: tuple[WebhookEndpoint, ...] = runtime.settings.webhook_endpoints
        self.outbox: WebhookOutbox = runtime.store.webhooks
        self.batches = runtime.store.batches
        self.http = http
        self.hold_ms = int((self.settings.webhook_timeout_s + HOLD_MARGIN_S) * 1000)
        self._deadlines_checked_at = 0.0

    async def run_once(self) -> int:
        """One pass over every shard (and, each second, the batch deadlines); returns the events handled."""
        if time.monotonic() - self._deadlines_checked_at >= DEADLINE_CHECK_S:
            self._deadlines_checked_at = time.monotonic()
            await self.check_deadlines()
        claims = await asyncio.gather(
            *(self.outbox.claim(shard, CLAIM_LIMIT, self.hold_ms) for shard in range(keys.SHARDS))
        )
        work = [(event_id, now_ms) for now_ms, ids in claims for event_id in ids]
        await asyncio.gather(*(self.handle(event_id, now_ms) for event_id, now_ms in work))
        return len(work)

    async def check_deadlines(self) -> None:
        """End the batches whose completion window passed (``expired``, or ``completed`` if every line ended in
        time) and enqueue their events: nobody has to read a batch for its ``batch.expired`` to go out."""
        retention_s = self.settings.retention_s
        for batch_id in await self.outbox.batches_past_deadline():
            await self.batches.expire_if_due(batch_id, retention_s)
            if not await self.outbox.enqueue_batch(batch_id, retention_s):
                await self.outbox.forget_deadline(batch_id)  # gone, or enqueued already by its last line

    async def handle(self, event_id: str, now_ms: int) -> None:
        """Turn a claimed entry into its event (first claim), then try every endpoint it is due for."""
        try:
            event = await self.outbox.load(event_id)
            if event is None:
                ending = await self.outbox.ending(event_id)
                if ending.kind != "send":
                    if ending.kind == "batch_line" and await self.outbox.count_batch_line(
                        ending.batch_id, event_id.removeprefix("evt_"), self.settings.retention_s
                    ):
                        await self.outbox.enqueue_batch(ending.batch_id, self.settings.retention_s)
                    await self.outbox.drop(event_id)
                    return
                event = await self.outbox.create(event_id, ending, now_ms, self.settings.retention_s)
            await self.deliver(event, now_ms)
        except (RedisError, OSError) as e:  # left claimed: due again when the hold ends
            logger.warning("webhook event %s: the store failed (%s); retried later", event_id, e)
        except Exception:  # a bug with one event must not stop the others; it is due again when the hold ends
            logger.exception("webhook event %s: could not be handled; retried later", event_id)

    async def deliver(self, event: WebhookEvent, now_ms: int) -> None:
        """POST ``event`` to each subscribed endpoint due now; save the outcomes and when it is due next."""
        targets = [e for e in self.endpoints if e.wants(event.type)]
        due = [
            e
            for e in targets
            if event.deliveries.get(e.key, Delivery()).state == PENDING
            and event.deliveries.get(e.key, Delivery()).next_ms <= now_ms
        ]
        results = await asyncio.gather(*(self.attempt(e, event) for e in due))
        states: dict[str, Delivery] = {}
        attempts: list[dict[str, Any]] = []
        for endpoint, (ok, detail, duration_ms) in zip(due, results, strict=True):
            before = event.deliveries.get(endpoint.key, Delivery())
            tries = before.tries + 1
            attempt: dict[str, Any] = {
                "endpoint": endpoint.shown,
                "attempt": tries,
                "at": int(time.time()),
                "duration_ms": duration_ms,
                **detail,
            }
            if ok:
                states[endpoint.key] = Delivery(DELIVERED, tries, 0)
            else:
                delay_ms = int(next_delay_s(self.settings.webhook_backoff_s, tries) * 1000)
                given_up = now_ms + delay_ms - event.first_ms > self.settings.webhook_retry_for_s * 1000
                states[endpoint.key] = Delivery(FAILED if given_up else PENDING, tries, now_ms + delay_ms)
                attempt["next_attempt_in_s"] = None if given_up else round(delay_ms / 1000, 3)
                logger.log(
                    logging.ERROR if given_up else logging.WARNING,
                    "webhook %s to %s: try %d failed (%s); %s",
                    event.id,
                    endpoint.shown,
                    tries,
                    detail.get("error") or f"HTTP {detail.get('status_code')}",
                    "given up" if given_up else f"next in {delay_ms / 1000:.1f} s",
                )
            attempts.append(attempt)
        merged = {**event.deliveries, **states}
        now = [merged.get(e.key, Delivery()) for e in targets]
        waiting = [d.next_ms for d in now if d.state == PENDING]
        await self.outbox.save(event, states, attempts, min(waiting) if waiting else None, self.settings.retention_s)

    async def attempt(self, endpoint: WebhookEndpoint, event: WebhookEvent) -> tuple[bool, dict[str, Any], int]:
        """One POST: whether it was accepted (2xx), what happened (status or error class), and how long it took.
        Signed at send time, so a retry carries a fresh timestamp (receivers refuse old ones)."""
        headers = signature_headers(endpoint.secret.get_secret_value(), event.id, int(time.time()), event.body)
        started = time.monotonic()
        try:
            # the whole try (a wait for a pooled connection included) stays within the timeout, so within the hold
            async with asyncio.timeout(self.settings.webhook_timeout_s):
                response = await self.http.post(endpoint.url, content=event.body, headers=headers)
        except TimeoutError:
            return False, {"error": "Timeout"}, int((time.monotonic() - started) * 1000)
        except httpx.HTTPError as e:
            # the class only: an error's text can carry the URL, and with it a token in its query
            return False, {"error": type(e).__name__}, int((time.monotonic() - started) * 1000)
        duration_ms = int((time.monotonic() - started) * 1000)
        return 200 <= response.status_code < 300, {"status_code": response.status_code}, duration_ms


async def deliver_webhooks_forever(runtime: WorkerRuntime) -> None:
    """Run the deliverer until the process ends; a pass that fails on Redis is retried on the next."""
    settings = runtime.settings
    timeout = httpx.Timeout(settings.webhook_timeout_s)
    # At most MAX_CONNECTIONS requests at once (a burst of ends waits for a connection, not a receiver's backlog).
    limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=16)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False, trust_env=False) as http:
        deliverer = Deliverer(runtime, http)
        while True:
            try:
                handled = await deliverer.run_once()
            except (RedisError, OSError) as e:
                runtime.note_redis_failure()
                logger.warning("webhook pass failed: %s", e)
                handled = 0
            if not handled:
                await asyncio.sleep(IDLE_POLL_S)
