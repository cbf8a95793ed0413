"""Picking up queued generations ahead of the broker (issue 14).

Celery hands a worker its messages one by one (about 115-200 a second through kombu's consumer here), so a burst
of 500 generations waited 1.3 s at the median to start although the process had room for all of them. Every
queued generation is also in its shard's ``queued`` index; a process with free room takes the ones waiting
longer than ``MIN_WAIT_MS`` from there and runs them on its loop at once. Claiming is the same compare-and-set as
a delivered task's, so each attempt runs once: the broker's message for a generation already taken is a no-op
when it arrives (``run_generation`` sees the live lease), and a process that dies with generations it took leaves
them to the lease sweep, exactly like ones the broker delivered (messages are acknowledged on receipt).

Only generations of queues this process consumes are taken, never more than its free room (its pool's size,
``REASONQ_WORKER_CONCURRENCY`` or ``--concurrency``, minus what it runs), and none while it drains. Rounds start
when the process starts a generation from the broker (a burst announces itself that way) and go on while anything
is queued. ``REASONQ_WORKER_PICKUP=false`` leaves every generation to the broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

if TYPE_CHECKING:
    from reasonq.worker.runtime import WorkerRuntime

logger = logging.getLogger(__name__)
MIN_WAIT_MS = 25  # a generation younger than this is left to the broker (an idle worker gets it in ~7 ms)
ROUND = 64  # generations looked at per shard per round
IDLE_ROUNDS = 40  # rounds in a row with nothing to take before the loop stops (about a second)


class Pickup:
    """This process's pickup loop (one at a time, on the runtime's loop).

    Args:
        runtime: the worker process's runtime.
        run: starts one generation (``run_generation``) as a coroutine.
    """

    def __init__(self, runtime: WorkerRuntime, run: Callable[[str], Coroutine[Any, Any, object]]) -> None:
        self._runtime = runtime
        self._run = run
        self._task: asyncio.Task[None] | None = None
        # Generations this process runs now, from the index or the broker, claimed or not yet (waiting for provider
        # capacity, say): never two runs of one in a process, whose provider slot (one per generation) the second
        # would give back under the first.
        self._handling: set[str] = set()
        self._freed = asyncio.Condition()  # notified when a generation leaves ``_handling``

    async def run_delivered(self, generation_id: str) -> object:
        """A generation the broker delivered: a no-op (``busy``) when this process already runs it; else run it,
        once the process has room. Generations taken from the index hold no pool thread, so the broker keeps
        delivering while they run: this wait (its pool thread blocked meanwhile) keeps the process at its
        concurrency, as a full pool did."""
        if generation_id in self._handling:
            return "busy"
        self._handling.add(generation_id)
        try:
            async with self._freed:
                await self._freed.wait_for(lambda: len(self._handling) <= self._runtime.concurrency)
            return await self._run(generation_id)
        finally:
            await self._release(generation_id)

    async def _release(self, generation_id: str) -> None:
        self._handling.discard(generation_id)
        async with self._freed:
            self._freed.notify_all()

    def kick(self) -> None:
        """A generation started from the broker: look for more queued ones (called on the runtime's loop)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._rounds(), name="pickup")

    def _room(self) -> int:
        runtime = self._runtime
        if runtime.shutting_down or not runtime.queues:
            return 0
        return runtime.concurrency - len(self._handling)

    async def _rounds(self) -> None:
        idle = 0
        try:
            while idle < IDLE_ROUNDS and self._room() > 0:
                took = await self._round()
                if took:
                    logger.info("pickup: took %d queued generations ahead of the broker", took)
                idle = 0 if took else idle + 1
                await asyncio.sleep(0 if took else MIN_WAIT_MS / 1000)
        except (RedisError, OSError) as e:
            logger.warning("pickup: Redis unavailable (%s); the broker delivers meanwhile", type(e).__name__)

    async def _round(self) -> int:
        store = self._runtime.store
        waiting = [g for g in await store.leases.peek_stale_queued(MIN_WAIT_MS, ROUND) if g not in self._handling]
        if not waiting:
            return 0
        queues = await store.leases.queues_of(waiting)
        settings = self._runtime.settings
        mine = [g for g in waiting if (queues.get(g) or settings.queue_name) in self._runtime.queues]
        # Interactive generations first when room is short (a batch backlog never crowds them out).
        mine.sort(key=lambda g: queues.get(g) == settings.batch_queue_name)
        mine = mine[: max(0, self._room())]
        for generation_id in mine:
            self._handling.add(generation_id)
            asyncio.get_running_loop().create_task(self._one(generation_id), name=f"pickup-{generation_id}")
        return len(mine)

    async def _one(self, generation_id: str) -> None:
        try:
            await self._run(generation_id)
        except Exception:  # as a broker-delivered task's failure: logged, the lease sweep recovers it
            logger.exception("generation %s: picked up, then failed", generation_id)
        finally:
            await self._release(generation_id)
