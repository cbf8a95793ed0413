"""The store's scripts against a real redis-server: claims, fencing, idempotent writes, retention."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from reasonq.shared import keys
from reasonq.shared.events import CONTENT, REASONING, EventArgs, StatusEvent, delta_args, encode_event
from reasonq.shared.schemas import GenerationCreate, UserMessage
from reasonq.shared.store import Fence, GenerationStore


def _request() -> GenerationCreate:
    return GenerationCreate(model="m", messages=[UserMessage(role="user", content="hi")])


def _running(attempt: int) -> list[tuple[str, bytes]]:
    return [encode_event(StatusEvent(status="running", attempt=attempt))]


def _delta(kind: str, text: str) -> EventArgs:
    return delta_args({"reasoning": REASONING, "content": CONTENT}[kind], text)


def test_create_then_claim_append_finish(with_store: Any) -> None:
    async def body(store: GenerationStore) -> None:
        gid = f"gen_store_{time.monotonic_ns()}"
        await store.records.create(gid, _request(), time.time(), "q", "anonymous")
        target = await store.leases.load_target(gid)
        assert target is not None and target.status == "queued" and target.attempt == 0
        claim = await store.leases.claim(gid, 0, 5_000, _running(1))
        assert (claim.outcome, claim.seq) == ("claimed", 2)
        one = Fence(1, claim.token)
        # a second claim while the lease is live is refused
        assert (await store.leases.claim(gid, 1, 5_000, _running(2))).outcome == "busy"
        seq = await store.streams.append(gid, one, 2, [_delta("reasoning", "ab"), _delta("content", "cd")])
        assert seq == 4
        # the same write retried (its reply lost) is not applied twice
        assert await store.streams.append(gid, one, 2, [_delta("reasoning", "ab"), _delta("content", "cd")]) == 4
        # a writer with a stale idea of the stream is refused
        assert await store.streams.append(gid, one, 3, [_delta("content", "x")]) == -1
        # an older attempt, or the same number claimed by another claim, is refused
        assert await store.streams.append(gid, Fence(0, claim.token), 4, [_delta("content", "x")]) == -1
        assert await store.streams.append(gid, Fence(1, "other"), 4, [_delta("content", "x")]) == -1
        seq = await store.streams.finish(gid, one, 4, 120, ("completed", "stop", {"total_tokens": 3}, None), [])
        assert seq == 4
        record = await store.records.get(gid)
        assert record is not None
        assert (record.status, record.reasoning, record.content, record.finish_reason) == (
            "completed",
            "ab",
            "cd",
            "stop",
        )
        assert record.usage == {"total_tokens": 3}
        for key in keys.generation_keys(gid):
            ttl = await store.redis.ttl(key)
            assert 0 < ttl <= 120, key
        # finished: no more writes, no more claims
        assert await store.streams.append(gid, one, 4, [_delta("content", "x")]) == -1
        assert (await store.leases.claim(gid, 1, 5_000, _running(2))).outcome == "finished"
        events = await store.streams.read(gid, 0, 100)
        assert [e.seq for e in events] == [1, 2, 3, 4]
        assert [e.type for e in events] == ["status", "status", "reasoning", "content"]
        assert [e.seq for e in await store.streams.read(gid, 2, 100)] == [3, 4]

    with_store(body)


def test_expired_lease_lets_a_new_attempt_take_over_and_fences_the_old(with_store: Any) -> None:
    async def body(store: GenerationStore) -> None:
        gid = f"gen_lease_{time.monotonic_ns()}"
        await store.records.create(gid, _request(), time.time(), "q", "anonymous")
        first = await store.leases.claim(gid, 0, 50, _running(1))
        assert first.outcome == "claimed"
        await store.streams.append(gid, Fence(1, first.token), 2, [_delta("content", "old text")])
        await asyncio.sleep(0.1)
        # a stale claimer that read attempt 0 loses the compare-and-set
        assert (await store.leases.claim(gid, 0, 5_000, _running(2))).outcome == "conflict"
        claim = await store.leases.claim(gid, 1, 5_000, _running(2))
        assert claim.outcome == "claimed"
        record = await store.records.get(gid)
        assert record is not None and record.attempt == 2 and record.content == ""
        assert await store.streams.append(gid, Fence(1, first.token), 3, [_delta("content", "zombie")]) == -1
        assert await store.leases.renew([(gid, 1)], 5_000) == ([gid], [])
        assert await store.leases.renew([(gid, 2)], 5_000) == ([], [])

    with_store(body)


async def _indexed(store: GenerationStore, gid: str) -> tuple[bool, bool]:
    """Whether the generation is in the leases index, and in the queued index."""
    return (
        await store.redis.zscore(keys.leases_key(keys.shard_of(gid)), gid) is not None,
        await store.redis.zscore(keys.queued_key(keys.shard_of(gid)), gid) is not None,
    )


def test_sweep_hands_back_expired_leases_once(with_store: Any) -> None:
    async def body(store: GenerationStore) -> None:
        gid = f"gen_sweep_{time.monotonic_ns()}"
        await store.records.create(gid, _request(), time.time(), "q", "anonymous")
        first = await store.leases.claim(gid, 0, 50, _running(1))
        assert first.outcome == "claimed"
        assert gid not in await store.leases.requeue_expired()  # lease still live
        await asyncio.sleep(0.1)
        assert gid in await store.leases.requeue_expired()
        assert gid not in await store.leases.requeue_expired()  # a second sweep does not dispatch again
        # Issue 12: waiting unclaimed for longer than any lease (every worker full) is not another loss.
        await asyncio.sleep(0.1)
        assert gid not in await store.leases.requeue_expired()
        assert await _indexed(store, gid) == (False, True)  # it waits as a queued one does
        # the old attempt is fenced the moment it is handed back
        assert await store.streams.append(gid, Fence(1, first.token), 2, [_delta("content", "late")]) == -1
        target = await store.leases.load_target(gid)
        assert target is not None and target.restart_reason == "worker_lost" and target.losses == 1
        # the handed-back generation can be claimed, and then holds a lease again
        assert (await store.leases.claim(gid, 1, 5_000, _running(2))).outcome == "claimed"
        assert gid not in await store.leases.requeue_expired()
        assert await _indexed(store, gid) == (True, False)
        assert (await store.leases.load_target(gid)).losses == 1  # type: ignore[union-attr]

    with_store(body)


def test_hand_back_and_handover(with_store: Any) -> None:
    async def body(store: GenerationStore) -> None:
        gid = f"gen_hand_{time.monotonic_ns()}"
        await store.records.create(gid, _request(), time.time(), "q", "anonymous")
        first = await store.leases.claim(gid, 0, 60_000, _running(1))
        seq = await store.streams.append(gid, Fence(1, first.token), 2, [_delta("content", "kept ")])
        # the owner starts its next attempt itself, keeping the text (continue)
        claim = await store.leases.claim(gid, 1, 60_000, _running(2), handover=True, keep_text=True)
        assert claim.outcome == "claimed" and claim.seq == seq + 1
        assert (await store.records.get_text(gid)) == ("", "kept ", False)
        assert await store.leases.hand_back([(gid, 1)], "worker_shutdown") == []  # not attempt 1's any more
        assert await store.leases.hand_back([(gid, 2)], "worker_shutdown") == [gid]
        target = await store.leases.load_target(gid)
        assert target is not None and target.restart_reason == "worker_shutdown" and target.losses == 0

    with_store(body)


def test_cancel_queued_running_and_ended(with_store: Any) -> None:
    async def body(store: GenerationStore) -> None:
        queued, running = f"gen_cq_{time.monotonic_ns()}", f"gen_cr_{time.monotonic_ns()}"
        for gid in (queued, running):
            await store.records.create(gid, _request(), time.time(), "q", "anonymous")
        claim = await store.leases.claim(running, 0, 60_000, _running(1))
        assert await store.records.cancel(queued, 60) == ("cancelled", "")
        assert await store.records.cancel(queued, 60) == ("ended", "cancelled")  # idempotent
        events = await store.streams.read(queued, 0, 10)
        assert [e.type for e in events] == ["status", "status", "done"]
        assert (await store.leases.claim(queued, 0, 60_000, _running(1))).outcome == "finished"  # never starts
        assert await store.records.cancel(running, 60) == ("requested", "")
        assert await store.streams.append(running, Fence(1, claim.token), 2, [_delta("content", "x")]) == -2
        assert await store.records.cancel("gen_nope", 60) == ("missing", "")
        assert queued.encode() not in await store.redis.zrange(keys.queued_key(keys.shard_of(queued)), 0, -1)

    with_store(body)


def test_cancel_of_a_handed_back_generation_ends_it_at_once(with_store: Any) -> None:
    """Handed back and waiting for a worker, a generation has no owner to tell: cancel ends it there and then
    (issue 18's 500 ms in every state), keeping the text so far."""

    async def body(store: GenerationStore) -> None:
        gid = f"gen_chb_{time.monotonic_ns()}"
        await store.records.create(gid, _request(), time.time(), "q", "anonymous")
        first = await store.leases.claim(gid, 0, 60_000, _running(1))
        await store.streams.append(gid, Fence(1, first.token), 2, [_delta("content", "so far")])
        assert await store.leases.hand_back([(gid, 1)], "worker_shutdown") == [gid]
        assert await store.records.cancel(gid, 60) == ("cancelled", "")
        record = await store.records.get(gid)
        assert record is not None and record.status == "cancelled" and record.content == "so far"
        assert await _indexed(store, gid) == (False, False)
        assert (await store.leases.claim(gid, 1, 60_000, _running(2))).outcome == "finished"

    with_store(body)


def test_stale_queued_generations_are_found_once(with_store: Any) -> None:
    async def body(store: GenerationStore) -> None:
        gid = f"gen_stale_{time.monotonic_ns()}"
        await store.records.create(gid, _request(), time.time() - 60, "q", "anonymous")
        assert gid in await store.leases.peek_stale_queued(older_than_ms=30_000)
        assert await store.leases.mark_dispatched([gid]) == [gid]
        assert gid not in await store.leases.peek_stale_queued(older_than_ms=30_000)  # dispatched just now
        assert await store.leases.queues_of([gid]) == {gid: "q"}
        await store.leases.claim(gid, 0, 60_000, _running(1))
        assert gid not in await store.leases.peek_stale_queued(older_than_ms=0)
        assert await store.leases.mark_dispatched([gid]) == []

    with_store(body)


def test_targets_of_many_generations_are_read_at_once(with_store: Any) -> None:
    """A pickup round reads every record it takes in one round trip; each target is what ``load_target`` reads."""

    async def body(store: GenerationStore) -> None:
        ids = [f"gen_many_{i}_{time.monotonic_ns()}" for i in range(20)]
        for i, gid in enumerate(ids):
            await store.records.create(gid, _request(), time.time(), "batch" if i % 2 else "q", "anonymous")
        await store.leases.claim(ids[0], 0, 60_000, _running(1))
        targets = await store.leases.load_targets([*ids, "gen_none"])
        assert targets["gen_none"] is None
        for gid in ids:
            assert targets[gid] == await store.leases.load_target(gid)
        assert (targets[ids[0]].status, targets[ids[0]].attempt) == ("running", 1)  # type: ignore[union-attr]
        assert [targets[g].queue for g in ids[1:3]] == ["batch", "q"]  # type: ignore[union-attr]

    with_store(body)


def test_missing_generation(with_store: Any) -> None:
    async def body(store: GenerationStore) -> None:
        assert await store.records.get("gen_none") is None
        assert await store.leases.load_target("gen_none") is None
        assert (await store.leases.claim("gen_none", 0, 1000, _running(1))).outcome == "missing"

    with_store(body)
