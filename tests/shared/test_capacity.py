"""Providers' capacity across workers (issue 16): ``shared/lua/capacity.lua`` on a real redis-server, one server
and a Cluster (every key of a provider in one slot)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from reasonq.shared.providers import ProviderConfig
from reasonq.shared.store import GenerationStore, Grant


def _provider(**limits: Any) -> ProviderConfig:
    return ProviderConfig(name="p" + secrets.token_hex(4), base_url="http://127.0.0.1:9/v1", **limits)


async def _try(
    store: GenerationStore,
    provider: ProviderConfig,
    gid: str,
    order_ms: int,
    *,
    batch: bool = False,
    alive_ms: int = 5_000,
) -> Grant:
    return await store.capacity.try_acquire(
        provider, gid, batch=batch, order_ms=order_ms, slot_ttl_ms=10_000, alive_ttl_ms=alive_ms
    )


def test_slots_go_in_submission_order_and_never_past_the_limit(with_store: Any) -> None:
    async def body(store: GenerationStore) -> None:
        provider = _provider(max_concurrent=2)
        # g4 asks first, but g1..g3 were submitted before it: once they wait, they go first
        assert (await _try(store, provider, "g1", 1)).granted
        assert (await _try(store, provider, "g2", 2)).granted
        late = await _try(store, provider, "g4", 4)
        assert (late.granted, late.held, late.place) == (False, 2, 0)
        assert not (await _try(store, provider, "g3", 3)).granted  # g3 is now first in line, g4 second
        await store.capacity.release(provider.name, "g1")
        assert not (await _try(store, provider, "g4", 4)).granted  # one slot free: g3's turn, not g4's
        assert (await _try(store, provider, "g3", 3)).granted
        assert not (await _try(store, provider, "g4", 4)).granted
        assert await store.capacity.held(provider.name) == 2
        again = await _try(store, provider, "g2", 2)  # a redelivered task of a holder keeps its slot
        assert (again.granted, again.place, again.held) == (True, -2, 2)

    with_store(body)


def test_batch_generations_leave_the_reserved_slots_to_interactive_ones(with_store: Any) -> None:
    async def body(store: GenerationStore) -> None:
        provider = _provider(max_concurrent=4)  # a quarter reserved: 1 slot
        assert provider.reserved_slots == 1
        for i in range(3):
            assert (await _try(store, provider, f"b{i}", i, batch=True)).granted
        assert not (await _try(store, provider, "b3", 3, batch=True)).granted  # the last slot is interactive's
        assert (await _try(store, provider, "i1", 10)).granted
        await store.capacity.release(provider.name, "b0")
        assert (await _try(store, provider, "i2", 11)).granted  # interactive takes the freed slot
        await store.capacity.release(provider.name, "b1")
        assert not (await _try(store, provider, "b3", 3, batch=True)).granted  # interactive held 2: reserve holds
        await store.capacity.release(provider.name, "i1")
        assert (await _try(store, provider, "b3", 3, batch=True)).granted

    with_store(body)


def test_a_waiter_whose_worker_stopped_polling_loses_its_place(with_store: Any) -> None:
    async def body(store: GenerationStore) -> None:
        provider = _provider(max_concurrent=1)
        assert (await _try(store, provider, "holder", 1)).granted
        assert not (await _try(store, provider, "dead", 2, alive_ms=50)).granted
        assert (await _try(store, provider, "live", 3)).place == 1
        await asyncio.sleep(0.1)
        await store.capacity.release(provider.name, "holder")
        assert (await _try(store, provider, "live", 3)).granted  # "dead" never polled again: its place lapsed

    with_store(body)


def test_the_start_rate_holds_generations_back_and_says_for_how_long(with_store: Any) -> None:
    async def body(store: GenerationStore) -> None:
        provider = _provider(rpm=2)
        assert (await _try(store, provider, "r1", 1)).granted
        assert (await _try(store, provider, "r2", 2)).granted  # a burst of up to rpm in a minute
        held = await _try(store, provider, "r3", 3)
        assert not held.granted and 25_000 < held.retry_after_ms <= 30_000

    with_store(body)
