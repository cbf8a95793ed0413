"""The background loops every worker process runs: lease heartbeat, recovery sweep, cancel listener.

There is no separate daemon to remember: every worker renews its own leases, and every worker sweeps for
generations whose lease expired (a killed or paused worker) or whose task message was lost, and dispatches
them again. The store's scripts make concurrent sweeps dispatch each generation once.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import RedisError

from reasonq.shared import keys
from reasonq.shared.backoff import Backoff
from reasonq.worker.runtime import WorkerRuntime

logger = logging.getLogger(__name__)


async def renew_leases_forever(runtime: WorkerRuntime) -> None:
    """Every third of the lease TTL, extend the leases of this process's generations in one script call, and add
    the process's observations to the deployment's metrics.

    A generation this worker no longer owns is stopped (it stops billing the provider); one whose cancel was
    requested is cancelled (a backstop for a missed cancel message).
    """
    interval_s = runtime.settings.lease_ttl_s / 3
    first = True
    while True:
        if not first:  # the first beat goes at once, so readiness checks see a new worker without waiting
            await asyncio.sleep(interval_s)
        first = False
        leases = [(r.generation_id, r.attempt) for r in runtime.running.values()]
        try:
            await runtime.store.presence.beat(runtime.worker_id, runtime.queues)
            lost, cancel = await runtime.store.leases.renew(leases, runtime.lease_ttl_ms)
            await runtime.store.capacity.renew(runtime.gate.held(), runtime.lease_ttl_ms)
            runtime.last_beat_at = time.monotonic()
            await runtime.stats.flush(runtime.redis)
        except (RedisError, OSError) as e:
            runtime.note_redis_failure()
            logger.warning("lease heartbeat failed for %d generations: %s", len(leases), e)
            continue
        for generation_id in lost:
            running = runtime.running.get(generation_id)
            if running is not None:
                logger.warning("generation %s: lease lost (another attempt owns it, or it ended)", generation_id)
                running.stop("lost")
        for generation_id in cancel:
            running = runtime.running.get(generation_id)
            if running is not None:
                running.stop("cancel")


async def sweep_forever(runtime: WorkerRuntime) -> None:
    """Every ``sweep_interval_s``, re-dispatch generations whose lease expired or whose task was lost."""
    settings = runtime.settings
    while True:
        await asyncio.sleep(settings.sweep_interval_s)
        try:
            await sweep_once(runtime)
        except (RedisError, OSError) as e:
            runtime.note_redis_failure()
            logger.warning("recovery sweep failed: %s", e)


async def sweep_once(runtime: WorkerRuntime) -> list[str]:
    """One sweep; returns the ids dispatched again."""
    store = runtime.store
    dispatched = []
    # After this process lost Redis, expired leases wait a lease for their live owners to renew them.
    expired = await store.leases.requeue_expired() if runtime.leases_trustworthy else []
    for generation_id, queue in (await store.leases.queues_of(expired)).items():
        logger.warning("generation %s: its worker was lost (lease expired); dispatching again", generation_id)
        if await runtime.dispatch(generation_id, queue):
            dispatched.append(generation_id)
    # A generation still queued long after its dispatch, while its queue is empty, has lost its task message.
    stale = await store.leases.queues_of(
        await store.leases.peek_stale_queued(int(runtime.settings.redispatch_after_s * 1000))
    )
    depths = {queue: await runtime.queue_depth(queue) for queue in set(stale.values())}
    lost = [gid for gid, queue in stale.items() if depths[queue] == 0]
    for generation_id in await store.leases.mark_dispatched(lost):
        logger.warning("generation %s: queued with no task message; dispatching again", generation_id)
        if await runtime.dispatch(generation_id, stale[generation_id]):
            dispatched.append(generation_id)
    return dispatched


async def listen_for_cancels_forever(runtime: WorkerRuntime) -> None:
    """Stop a local generation the moment its cancel is published (no per-token cost), and wake the generations
    waiting for a provider the moment one of its slots frees."""
    backoff = Backoff()
    while True:
        pubsub = runtime.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(keys.cancel_channel(), keys.capacity_channel())
            backoff.reset()
            while True:
                message = await pubsub.get_message(timeout=5.0)
                if message is None:
                    continue
                if message["channel"] == keys.capacity_channel().encode():
                    runtime.gate.wake(message["data"].decode())
                    continue
                generation_id = message["data"].decode()
                running = runtime.running.get(generation_id)
                if running is not None:
                    logger.info("generation %s: cancel requested", generation_id)
                    running.stop("cancel")
        except (RedisError, OSError) as e:
            logger.warning("cancel listener lost Redis (%s); reconnecting", e)
            await backoff.sleep()
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # unannotated before redis-py 8.2
