"""Waiting for a provider's capacity in one worker process: take a slot before the first upstream request, keep
it renewed while the generation runs here, give it back when the run ends.

Waiting is cheap: each waiting generation tries again when a slot of its provider frees anywhere (the release
is published; ``worker/recovery.py`` listens) and at least every ``POLL_S``, which also keeps its place in line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from reasonq.shared.providers import ProviderConfig
from reasonq.shared.store import GenerationStore

logger = logging.getLogger(__name__)
POLL_S = 1.0
ALIVE_TTL_MS = 5_000  # a waiting generation whose worker stopped polling loses its place after this

# Called while a generation waits: (why it waits, whether this is the first time). Returns False when it no
# longer should (cancelled, claimed elsewhere, asked to stop).
OnWait = Callable[[str, bool], Awaitable[bool]]


@dataclass(eq=False)
class Slot:
    """A slot of ``provider`` this process holds for a generation. ``fresh``: taken by this run; otherwise adopted
    from an earlier run of the generation, which this run owns only once its claim succeeds (``owned``)."""

    provider: str
    generation_id: str
    fresh: bool
    owned: bool = False
    limited: bool = True  # False: the provider has no limits, there is nothing to give back


class ProviderGate:
    """The slots this process holds and the generations waiting for one.

    Args:
        store: the generation store.
        slot_ttl_ms: how long a slot lasts without renewal (the lease TTL: a killed worker's slots free as its
            leases expire).
        shutting_down: whether the process is draining (a waiting generation then goes back to its queue).
    """

    def __init__(self, store: GenerationStore, slot_ttl_ms: int, shutting_down: Callable[[], bool]) -> None:
        self._store = store
        self._slot_ttl_ms = slot_ttl_ms
        self._shutting_down = shutting_down
        self._wakes: dict[str, asyncio.Event] = {}
        self._wake_counts: dict[str, int] = {}  # wakes seen per provider: one that comes during a try is not lost
        self._held: dict[str, dict[str, Slot]] = {}

    def wake(self, provider_name: str) -> None:
        """A slot of ``provider_name`` freed somewhere: every local waiter tries again now."""
        self._wake_counts[provider_name] = self._wake_counts.get(provider_name, 0) + 1
        event = self._wakes.pop(provider_name, None)
        if event is not None:
            event.set()

    def held(self) -> dict[str, list[str]]:
        """Provider name → generations whose slot this process renews."""
        return {name: list(slots) for name, slots in self._held.items() if slots}

    async def acquire(
        self, provider: ProviderConfig, generation_id: str, *, batch: bool, order_ms: int, on_wait: OnWait
    ) -> Slot | Literal["gone", "shutdown"]:
        """Wait for a slot of ``provider`` in submission order (an unlimited provider grants at once). ``gone`` when
        ``on_wait`` says to stop waiting, ``shutdown`` when the process began to drain."""
        if not provider.limited:
            return Slot(provider.name, generation_id, fresh=False, limited=False)
        first = True
        store = self._store
        while True:
            wakes_before = self._wake_counts.get(provider.name, 0)
            grant = await store.capacity.try_acquire(
                provider,
                generation_id,
                batch=batch,
                order_ms=order_ms,
                slot_ttl_ms=self._slot_ttl_ms,
                alive_ttl_ms=ALIVE_TTL_MS,
            )
            if grant.granted:
                slot = Slot(provider.name, generation_id, fresh=grant.place == -1)
                self._held.setdefault(provider.name, {})[generation_id] = slot
                return slot
            if grant.retry_after_ms > 0:
                reason = f"waiting for provider capacity: {provider.name} allows {provider.rpm} starts per minute"
            else:
                reason = (
                    f"waiting for provider capacity: {provider.name} has {grant.held} of {provider.max_concurrent} "
                    f"streams in use, {grant.place} waiting ahead"
                )
            keep_waiting = await on_wait(reason, first)
            if first:
                logger.info("generation %s: %s", generation_id, reason)
            first = False
            if not keep_waiting or self._shutting_down():
                await store.capacity.release(provider.name, generation_id)  # leave the line
                return "shutdown" if keep_waiting else "gone"
            if self._wake_counts.get(provider.name, 0) != wakes_before:
                continue  # a slot freed while this try was on its way: try again now
            event = self._wakes.setdefault(provider.name, asyncio.Event())
            timeout_s = min(POLL_S, grant.retry_after_ms / 1000) if grant.retry_after_ms > 0 else POLL_S
            try:
                await asyncio.wait_for(event.wait(), timeout_s)
            except TimeoutError:
                pass

    async def release(self, slot: Slot) -> None:
        """End this run's hold on ``slot``: give it back if this run took it or owns it (an adopted slot whose claim
        failed belongs to the run that holds the generation)."""
        if not slot.limited:
            return
        held = self._held.get(slot.provider, {})
        if held.get(slot.generation_id) is slot:
            del held[slot.generation_id]
        if slot.fresh or slot.owned:
            await self._store.capacity.release(slot.provider, slot.generation_id)
