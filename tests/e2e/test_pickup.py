"""Issue 14: a worker with room takes queued generations from Redis' queued index ahead of the broker
(``worker/pickup.py``). A backlog whose broker messages are gone (purged here, so only the index can start them)
is taken by a worker as it starts, each generation once and whole; with the messages there too, each still runs
once; a worker SIGKILLed with generations it took leaves them to another."""

from __future__ import annotations

import concurrent.futures
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from reasonq.processes import wait_until
from tests.helpers import expected_text, read_events, submit

RECOVERY = {"REASONQ_LEASE_TTL_S": "2", "REASONQ_SWEEP_INTERVAL_S": "0.5", "REASONQ_REDISPATCH_AFTER_S": "2"}


def _submit_all(client: httpx.Client, prompts: list[str]) -> list[str]:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda p: submit(client, p), prompts))


def _taken(log: Path | None) -> int:
    """Generations the worker took from the index since it last started (a parametrized test's workers share a
    log file)."""
    lines = Path(log or "").read_text(errors="replace").splitlines()
    # Celery's banner (" -------------- name@host v5…") opens each start's output, before any task or pickup.
    started = max((i for i, line in enumerate(lines) if line.startswith(" -------------- ") and "@" in line), default=0)
    return sum(int(line.split("took ")[1].split()[0]) for line in lines[started:] if "pickup: took" in line)


def _all_whole(client: httpx.Client, ids: list[str], prompts: list[str], timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    records: dict[str, dict[str, Any]] = {}
    while len(records) < len(ids) and time.monotonic() < deadline:
        for gid in ids:
            if gid not in records:
                body = client.get(f"/v1/generations/{gid}").json()
                if body["status"] in ("completed", "failed", "cancelled"):
                    records[gid] = body
        time.sleep(0.3)
    assert len(records) == len(ids), f"{len(ids) - len(records)} generations did not end in {timeout_s} s"
    for gid, prompt in zip(ids, prompts, strict=True):
        record = records[gid]
        assert record["status"] == "completed", record
        assert (record["reasoning"], record["content"]) == expected_text(prompt), gid
    return [records[gid] for gid in ids]


def _purge_broker(c: Any) -> None:
    """Drop the cluster's queued task messages (a Redis broker keeps a queue as a list named after it)."""
    broker = redis.Redis.from_url(c.env["REASONQ_BROKER_URL"])
    assert broker.delete(c.queue) == 1


@pytest.mark.parametrize("topology", ["one-redis", "redis-cluster"])
def test_a_backlog_without_its_messages_is_taken_from_the_index_once_each(
    cluster: Any, topology: str, request: pytest.FixtureRequest
) -> None:
    """On a Redis Cluster too: the index is one sorted set per shard, the records spread over the masters, and a
    round reads and claims them through per-node pipelines."""
    store = {"REASONQ_REDIS_URL": request.getfixturevalue("redis_cluster").url} if topology == "redis-cluster" else {}
    c = cluster(store)
    c.start_api()
    prompts = [f"backlog {i} sim:reasoning_tokens=3 sim:content_tokens=3 sim:tokens_per_s=20" for i in range(120)]
    with httpx.Client(base_url=c.url, timeout=30) as client:
        ids = _submit_all(client, prompts)
        _purge_broker(c)
        worker = c.add_worker(concurrency=150)
        records = _all_whole(client, ids, prompts, timeout_s=60)
        assert _taken(worker.log_path) == 120  # no message: the index started every one
        assert all(r["attempt"] == 1 for r in records)
        for gid in ids[:10]:
            statuses = [e.data for e in read_events(client, gid) if e.type == "status"]
            assert [s["status"] for s in statuses].count("running") == 1, statuses


def test_with_the_messages_there_too_each_generation_runs_once(cluster: Any) -> None:
    """The broker's messages and the index both offer the backlog (two workers): each generation is claimed once
    (attempt 1) and its text is whole."""
    c = cluster()
    c.start_api()
    prompts = [f"both {i} sim:reasoning_tokens=3 sim:content_tokens=3 sim:tokens_per_s=20" for i in range(150)]
    with httpx.Client(base_url=c.url, timeout=30) as client:
        ids = _submit_all(client, prompts)
        c.add_worker(concurrency=60)
        c.add_worker(concurrency=60)
        records = _all_whole(client, ids, prompts, timeout_s=90)
    assert all(r["attempt"] == 1 for r in records)


def test_generations_a_killed_worker_took_from_the_index_complete_elsewhere(cluster: Any) -> None:
    c = cluster(RECOVERY)
    c.start_api()
    prompts = [f"taken {i} sim:reasoning_tokens=20 sim:content_tokens=20 sim:tokens_per_s=10" for i in range(40)]
    with httpx.Client(base_url=c.url, timeout=30) as client:
        ids = _submit_all(client, prompts)
        _purge_broker(c)  # only the index offers them: the first worker takes them all
        first = c.add_worker(concurrency=100)
        wait_until(lambda: _taken(first.log_path) >= 20, timeout_s=20, what="the worker taking the backlog")

        def running() -> list[str]:
            return [g for g in ids if client.get(f"/v1/generations/{g}").json()["status"] == "running"]

        wait_until(lambda: len(running()) >= 20, timeout_s=20, what="the taken generations running")
        first.signal(signal.SIGKILL)
        lost = set(running())
        c.add_worker(concurrency=100)
        records = _all_whole(client, ids, prompts, timeout_s=90)
    again = {gid for gid, r in zip(ids, records, strict=True) if r["attempt"] >= 2}
    assert len(lost) >= 20 and lost <= again  # what the killed worker ran, another ran again, whole
