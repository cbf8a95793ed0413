"""Issue 13: reasonq on a Redis Cluster (3 masters, 1 replica each, started here from redis-server binaries).

Before: the worker exited ``MovedError`` and every POST answered 503; one generation's keys lay in four slots and
its scripts failed ``all keys must map to the same key slot``."""

from __future__ import annotations

import signal
import time
from typing import Any

import httpx
import pytest
import redis

from reasonq.topologies import LocalCluster
from tests.helpers import Ev, check_all, expected_text, read_events, record_measurement, submit, text_of, watch_all

GENERATIONS = 50
VIEWERS = 3
ENV = {"REASONQ_LEASE_TTL_S": "3", "REASONQ_SWEEP_INTERVAL_S": "0.5"}


def _prompt(i: int, tokens_per_s: int) -> str:
    return f"cluster {i} sim:reasoning_tokens=60 sim:content_tokens=20 sim:tokens_per_s={tokens_per_s}"


def _resume_on(url: str, gid: str, first: list[Ev]) -> list[Ev]:
    with httpx.Client(base_url=url, timeout=httpx.Timeout(10, read=60)) as client:
        return read_events(client, gid, last_event_id=first[-1].id, timeout_s=60)


def test_fifty_generations_then_a_master_killed_mid_stream_lose_nothing(cluster: Any, tmp_path: Any) -> None:
    """50 generations with 3 viewers each over two API processes complete; a viewer resumes on the other process
    exactly; then SIGKILL of one of the three masters while 50 more stream: its replica takes over, every
    generation completes and every viewer ends with exactly the record's text."""
    own = LocalCluster(tmp_path / "cluster").start()  # its own: this test kills a node
    c = cluster({**ENV, "REASONQ_REDIS_URL": own.url})
    try:
        urls = [c.start_api(), c.add_api()]
        c.add_worker()
        c.add_worker()
        prompts = [_prompt(i, 150) for i in range(GENERATIONS)]
        gids, seen = watch_all(urls, prompts, VIEWERS)
        check_all(urls[1], gids, prompts, seen)
        # the generations' keys are spread over every master (16 shards, tags spread over the slot space)
        sizes = [redis.Redis(port=m.port).dbsize() for m in own.masters]
        assert all(size > 0 for size in sizes), sizes
        # a viewer that read on one API process resumes on the other, exactly
        with httpx.Client(base_url=urls[0], timeout=30) as client:
            gid = submit(client, _prompt(99, 40))
            first = read_events(client, gid, limit=10)
        rest = _resume_on(urls[1], gid, first)
        assert text_of(first + rest) == expected_text(_prompt(99, 40))
        assert [e.id for e in first + rest] == list(range(1, len(first) + len(rest) + 1))

        prompts = [_prompt(i, 25) for i in range(100, 100 + GENERATIONS)]
        killed_at: list[float] = []

        def kill_a_master() -> None:
            time.sleep(1.5)
            own.masters[0].signal(signal.SIGKILL)
            killed_at.append(time.monotonic())

        gids, seen = watch_all(urls, prompts, VIEWERS, during=kill_a_master)
        check_all(urls[1], gids, prompts, seen)
        record_measurement("cluster_master_kill_completed_s", time.monotonic() - killed_at[0], "s")
    finally:
        c.stop()  # before Redis: a worker stopping without it waits out its grace
        own.stop()


def test_an_evicting_master_is_refused_like_an_evicting_server(redis_cluster: LocalCluster) -> None:
    """Issue 12's eviction check covers every Cluster master, not only the node the URL names first."""
    from reasonq.shared.errors import ConfigurationError
    from reasonq.shared.redis import check_eviction_policy

    check_eviction_policy(redis_cluster.url, allow=False)
    last = redis.Redis(port=redis_cluster.masters[-1].port)
    last.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(ConfigurationError, match="allkeys-lru"):
            check_eviction_policy(redis_cluster.url, allow=False)
    finally:
        last.config_set("maxmemory-policy", "noeviction")
