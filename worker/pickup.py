"""Picking up queued generations ahead of the broker (issue 14).

Celery hands a worker its messages one by one (about 115-200 a second through kombu's consumer here), so a burst
of 500 generations waited 1.3 s at the median to start although the process had room for all of them. Every
queued generation is also in its shard's ``queued`` index; a process with free room takes the ones waiting
longer than ``MIN_WAIT_MS`` from there (while a burst lasts, the newest too) and runs them on its loop at once.
Claiming is the same compare-and-set as a delivered task's, so each attempt runs once: the broker's message for a
generation already taken is a no-op when it arrives (``run_generation`` sees the live lease), and a process that
dies with generations it took leaves them to the lease sweep, exactly like ones the broker delivered (messages are
acknowledged on receipt).

The generations one round takes are all claimed before any of them asks the model (``_Round``): building a model
request costs the loop about 1.5 ms, and 500 claims queued behind 500 requests took a second to make.

Only generations of queues this process consumes are taken, never more than its free room (its pool's size,
``REASONQ_WORKER_CONCURRENCY`` or ``--concurrency``, minus what it runs), and none while it drains. Rounds start
when the process starts a generation from the broker (a burst announces itself that way) and go on while anything
is queued. ``REASONQ_WORKER_PICKUP=false`` leaves every generation to the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

if TYPE_CHECKING:
    from reasonq.shared.store import ClaimTarget
    from reasonq.worker.runtime import WorkerRuntime

logger = logging.getLogger(__name__)
MIN_WAIT_MS = 25  # a generation younger than this is left to the broker (an idle worker gets it in ~7 ms)
ROUND = 64  # generations looked at per shard per round
IDLE_ROUNDS = 40  # rounds in a row with nothing to take before the loop stops (about a second)
ROUND_GATE_S = 0.25  # longest a claimed generation waits for the rest of its round (one waiting for capacity, say)


class _Round:
    """The generations one round took: each waits, once claimed, until every one has claimed or stopped."""

    def __init__(self, generation_ids: list[str]) -> None:
        self._pending = set(generation_ids)
        self._all = asyncio.Event()
        if not self._pending:
            self._all.set()

    def arrive(self, generation_id: str) -> None:
        """``generation_id`` claimed or stopped (again: a no-op)."""
        self._pending.discard(generation_id)
        if not self._pending:
            self._all.set()

    async def claimed(self, generation_id: str) -> None:
        self.arrive(generation_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ROUND_GATE_S):
                await self._all.wait()


class Pickup:
    """This process's pickup loop (one at a time, on the runtime's loop).

    Args:
        runtime: the worker process's runtime.
        run: runs one generation (``run_generation``): its id, its record if read already, and what to await once
            claimed.
    """

    def __init__(
        self,
        runtime: WorkerRuntime,
        run: Callable[[str, ClaimTarget | None, Callable[[], Awaitable[None]] | None], Coroutine[Any, Any, object]],
    ) -> None:
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
            return await self._run(generation_id, None, None)
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
        idle = took = 0
        try:
            # Redis' clock (the index's scores) as an offset to this one, read once per run of rounds: each round is
            # then one round trip to find what waits and one to read it.
            offset_ms = await self._runtime.store.leases.now_ms() - time.time() * 1000
            while idle < IDLE_ROUNDS and self._room() > 0:
                # In a burst (the last round took some), take the newest too: the broker is behind anyway.
                took = await self._round(int(time.time() * 1000 + offset_ms), 0 if took else MIN_WAIT_MS)
                if took:
                    logger.info("pickup: took %d queued generations ahead of the broker", took)
                idle = 0 if took else idle + 1
                await asyncio.sleep(0 if took else MIN_WAIT_MS / 1000)
        except (RedisError, OSError) as e:
            logger.warning("pickup: Redis unavailable (%s); the broker delivers meanwhile", type(e).__name__)

    async def _round(self, now_ms: int, min_wait_ms: int) -> int:
        leases = self._runtime.store.leases
        peeked = await leases.peek_stale_queued(min_wait_ms, ROUND, now_ms=now_ms)
        waiting = [g for g in peeked if g not in self._handling]
        if not waiting:
            return 0
        targets = await leases.load_targets(waiting)
        settings = self._runtime.settings
        mine = [
            (g, t)
            for g, t in targets.items()
            if t is not None and (t.queue or settings.queue_name) in self._runtime.queues
        ]
        # Interactive generations first when room is short (a batch backlog never crowds them out).
        mine.sort(key=lambda taken: taken[1].queue == settings.batch_queue_name)
        mine = mine[: max(0, self._room())]
        # Not one the broker delivered meanwhile: this process runs it already.
        started = [(g, t) for g, t in mine if g not in self._handling]
        taken = _Round([g for g, _ in started])
        for generation_id, target in started:
            self._handling.add(generation_id)
            run = self._one(generation_id, target, taken)
            asyncio.get_running_loop().create_task(run, name=f"pickup-{generation_id}")
        return len(started)

    async def _one(self, generation_id: str, target: ClaimTarget, taken: _Round) -> None:
        try:
            await self._run(generation_id, target, partial(taken.claimed, generation_id))
        except Exception:  # as a broker-delivered task's failure: logged, the lease sweep recovers it
            logger.exception("generation %s: picked up, then failed", generation_id)
        finally:
            taken.arrive(generation_id)  # refused or stopped before its claim: the rest need not wait for it
            await self._release(generation_id)
