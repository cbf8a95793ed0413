"""Issue 12, part 1: one lost worker is one loss. A generation handed back and waiting for a worker (none alive,
or every one full) is never counted lost again, however long it waits."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import httpx
import redis

from reasonq.processes import RedisServer, wait_until
from reasonq.shared import keys
from tests.helpers import Ev, assert_whole, read_events, reasoning_words, submit, wait_record

LEASE_TTL_S = 3.0
ENV = {"REASONQ_LEASE_TTL_S": str(LEASE_TTL_S), "REASONQ_SWEEP_INTERVAL_S": "0.5"}


def _losses(server: RedisServer, gid: str) -> int:
    return int(redis.Redis.from_url(server.url).hget(keys.record_key(gid), "losses") or 0)


def _follow(client: httpx.Client, gids: list[str]) -> tuple[dict[str, list[Ev]], list[threading.Thread]]:
    seen: dict[str, list[Ev]] = {gid: [] for gid in gids}
    threads = [
        threading.Thread(target=lambda g=gid: seen[g].extend(read_events(client, g, timeout_s=120))) for gid in gids
    ]
    for t in threads:
        t.start()
    return seen, threads


def test_issue12_no_live_worker_for_several_leases_is_one_loss(cluster: Any, redis_server: RedisServer) -> None:
    """Before: the only interactive worker killed with 3 generations running, a batch worker sweeping, the
    replacement started later: the losses climbed 1, 2, 3 each lease period and all three ended ``failed``
    (``too_many_attempts``). After: losses stay 1 and all three complete on attempt 2, texts exact."""
    c = cluster(ENV)
    batch_queue = f"{c.queue}-batch"
    c.env["REASONQ_BATCH_QUEUE_NAME"] = batch_queue
    c.start_api()
    interactive = c.add_worker()
    c.add_worker(queues=batch_queue)  # alive throughout, sweeping; it never takes interactive work
    prompts = [f"orphan {i} sim:reasoning_tokens=60 sim:content_tokens=60 sim:tokens_per_s=30" for i in range(3)]
    with httpx.Client(base_url=c.url, timeout=30) as client:
        gids = [submit(client, p) for p in prompts]
        seen, viewers = _follow(client, gids)
        for gid in gids:
            wait_record(client, gid, reasoning_words(5))
        interactive.signal(signal.SIGKILL)
        # The scenario's length, not a wait for a condition: no interactive worker for four lease periods.
        time.sleep(4 * LEASE_TTL_S)
        assert [_losses(redis_server, gid) for gid in gids] == [1, 1, 1]
        c.add_worker()
        for t in viewers:
            t.join(120)
        for gid, prompt in zip(gids, prompts, strict=True):
            record = assert_whole(client, gid, prompt, seen[gid])
            assert record["attempt"] == 2
            assert [e.data for e in seen[gid] if e.type == "restart"] == [{"attempt": 2, "reason": "worker_lost"}]
    assert [_losses(redis_server, gid) for gid in gids] == [1, 1, 1]


def test_issue12_every_worker_full_for_several_leases_is_one_loss(cluster: Any, redis_server: RedisServer) -> None:
    """Before: a generation whose worker was killed, dispatched again while the only live worker ran its two
    generations at ``--concurrency 2``, was handed back (and counted lost) every lease period it waited, and
    ended ``failed`` after three. After: it waits, then completes on attempt 2 with one loss."""
    c = cluster(ENV)
    c.start_api()
    broker = redis.Redis.from_url(redis_server.url)
    blocked_before = broker.info("clients")["blocked_clients"]
    doomed = c.add_worker(concurrency=1)
    orphan = "orphan sim:reasoning_tokens=40 sim:content_tokens=40 sim:tokens_per_s=20"
    hogs = [f"hog {i} sim:reasoning_tokens=200 sim:content_tokens=200 sim:tokens_per_s=25" for i in range(2)]
    with httpx.Client(base_url=c.url, timeout=30) as client:
        gid = submit(client, orphan)
        wait_record(client, gid, reasoning_words(5))
        doomed.signal(signal.SIGKILL)
        # Until Redis has seen the dead worker's connection close, its BRPOP can still be handed a message (which is
        # then lost until the queued sweep finds it, 30 s later): wait for that before submitting.
        wait_until(lambda: not doomed.alive(), timeout_s=10, what="the killed worker's exit")
        wait_until(
            lambda: broker.info("clients")["blocked_clients"] <= blocked_before, timeout_s=10, what="its BRPOP gone"
        )
        # Queued while no worker is alive, so the new worker takes both hogs before the orphan is dispatched again.
        hog_ids = [submit(client, p) for p in hogs]
        c.add_worker(concurrency=2)
        for hog in hog_ids:
            wait_record(client, hog, lambda r: r["status"] == "running")
        waited_from = time.monotonic()
        events = read_events(client, gid, timeout_s=120)
        waited_s = time.monotonic() - waited_from
        record = assert_whole(client, gid, orphan, events)
    assert record["attempt"] == 2 and _losses(redis_server, gid) == 1
    # It did wait for a free slot (its 80 tokens take 4 s): the hogs held both for several lease periods.
    assert waited_s > 3 * LEASE_TTL_S, waited_s
