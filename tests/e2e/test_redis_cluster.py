"""Issue 13: reasonq on a Redis Cluster (3 masters, 1 replica each, started here from redis-server binaries).

Before: the worker exited ``MovedError`` and every POST answered 503; one generation's keys lay in four slots and
its scripts failed ``all keys must map to the same key slot``."""

from __future__ import annotations

import concurrent.futures
import signal
import time
from typing import Any

import httpx
import redis

from reasonq.topologies import LocalCluster
from tests.helpers import (
    Ev,
    expected_text,
    follow_resuming,
    read_events,
    record_measurement,
    submit,
    text_of,
    wait_status,
)

GENERATIONS = 50
VIEWERS = 3
ENV = {"REASONQ_LEASE_TTL_S": "3", "REASONQ_SWEEP_INTERVAL_S": "0.5"}


def _prompt(i: int, tokens_per_s: int) -> str:
    return f"cluster {i} sim:reasoning_tokens=60 sim:content_tokens=20 sim:tokens_per_s={tokens_per_s}"


def _resume_on(url: str, gid: str, first: list[Ev]) -> list[Ev]:
    with httpx.Client(base_url=url, timeout=httpx.Timeout(10, read=60)) as client:
        return read_events(client, gid, last_event_id=first[-1].id, timeout_s=60)


def _run(urls: list[str], prompts: list[str], during: Any = None) -> tuple[list[str], dict[str, list[list[Ev]]]]:
    with httpx.Client(base_url=urls[0], timeout=30) as client:
        gids = [submit(client, p) for p in prompts]
    seen: dict[str, list[list[Ev]]] = {gid: [] for gid in gids}
    with concurrent.futures.ThreadPoolExecutor(len(gids) * VIEWERS) as pool:
        futures = {
            pool.submit(follow_resuming, urls[v % len(urls)], gid, 150): gid for gid in gids for v in range(VIEWERS)
        }
        if during is not None:
            during()
        for future in concurrent.futures.as_completed(futures, timeout=180):
            seen[futures[future]].append(future.result()[0])
    return gids, seen


def _check(url: str, gids: list[str], prompts: list[str], seen: dict[str, list[list[Ev]]]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for gid, prompt in zip(gids, prompts, strict=True):
            record = wait_status(client, gid, {"completed", "failed", "cancelled"}, timeout_s=60)
            assert record["status"] == "completed", record
            assert (record["reasoning"], record["content"]) == expected_text(prompt)
            for events in seen[gid]:
                assert events[-1].type == "done"
                assert text_of(events) == expected_text(prompt), gid


def test_fifty_generations_with_three_viewers_each_across_two_api_processes(
    cluster: Any, redis_cluster: LocalCluster
) -> None:
    c = cluster({**ENV, "REASONQ_REDIS_URL": redis_cluster.url})
    urls = [c.start_api(), c.add_api()]
    c.add_worker()
    c.add_worker()
    prompts = [_prompt(i, 150) for i in range(GENERATIONS)]
    gids, seen = _run(urls, prompts)
    _check(urls[1], gids, prompts, seen)
    # the generations' keys are spread over every master (16 shards, tags spread over the slot space)
    sizes = [redis.Redis(port=m.port).dbsize() for m in redis_cluster.masters]
    assert all(size > 0 for size in sizes), sizes
    # a viewer that read on one API process resumes on the other, exactly
    with httpx.Client(base_url=urls[0], timeout=30) as client:
        gid = submit(client, _prompt(99, 40))
        first = read_events(client, gid, limit=10)
    rest = _resume_on(urls[1], gid, first)
    assert text_of(first + rest) == expected_text(_prompt(99, 40))
    assert [e.id for e in first + rest] == list(range(1, len(first) + len(rest) + 1))


def test_a_master_killed_mid_stream_loses_nothing_a_viewer_saw(cluster: Any, tmp_path: Any) -> None:
    """SIGKILL of one of three masters while 50 generations stream to 3 viewers each: its replica takes over;
    every generation completes and every viewer ends with exactly the record's text."""
    own = LocalCluster(tmp_path / "cluster").start()  # its own: this test kills a node
    try:
        c = cluster({**ENV, "REASONQ_REDIS_URL": own.url})
        urls = [c.start_api(), c.add_api()]
        c.add_worker()
        c.add_worker()
        prompts = [_prompt(i, 25) for i in range(GENERATIONS)]
        killed_at: list[float] = []

        def kill_a_master() -> None:
            time.sleep(1.5)
            own.masters[0].signal(signal.SIGKILL)
            killed_at.append(time.monotonic())

        gids, seen = _run(urls, prompts, during=kill_a_master)
        _check(urls[1], gids, prompts, seen)
        record_measurement("cluster_master_kill_completed_s", time.monotonic() - killed_at[0], "s")
    finally:
        own.stop()
