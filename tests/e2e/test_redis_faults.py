"""Issue 12: Redis faults other than a restart. No Redis error stops a worker from consuming; readiness notices a
queue nobody consumes; writes refused for memory are an outage to ride out, and a POST meanwhile says why."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from reasonq.processes import RedisServer, free_port
from reasonq.shared import keys
from tests.conftest import python_m
from tests.helpers import (
    Ev,
    assert_whole,
    follow_resuming,
    reasoning_words,
    submit,
    wait_record,
    wait_status,
)

FAST = {"REASONQ_LEASE_TTL_S": "2", "REASONQ_SWEEP_INTERVAL_S": "0.5", "REASONQ_REDISPATCH_AFTER_S": "2"}


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path / "redis", persist=False).start()
    try:
        yield server
    finally:
        server.stop()


def test_issue12_redis_out_of_memory_never_stops_a_worker(cluster: Any, private_redis: RedisServer) -> None:
    """Before: Redis at ``maxmemory`` with ``noeviction``: a worker logged ``Unrecoverable error:
    OutOfMemoryError`` and exited, and generations stayed ``queued`` for ever. After: a running generation's
    writes are retried through the fault and it completes on its first attempt; a worker starting during the
    fault keeps trying; both consume once memory is back; a POST meanwhile is a 503 that names the cause."""
    c = cluster(FAST, redis_url=private_redis.url)
    c.start_api()
    running_worker = c.add_worker()
    admin = redis.Redis.from_url(private_redis.url)
    prompt = "through OOM sim:reasoning_tokens=60 sim:content_tokens=60 sim:tokens_per_s=30"
    with httpx.Client(base_url=c.url, timeout=30) as client:
        gid = submit(client, prompt)
        seen: list[Ev] = []
        viewer = threading.Thread(target=lambda: seen.extend(follow_resuming(c.url, gid, timeout_s=90)[0]))
        viewer.start()
        wait_record(client, gid, reasoning_words(5))
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)  # every write refused: "OOM command not allowed"
        try:
            starting_worker = c.workers(c.name)  # declares and consumes into a Redis that refuses writes
            r = client.post("/v1/generations", json={"messages": [{"role": "user", "content": "during OOM"}]})
            assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
            assert "out of memory" in r.json()["error"]["message"]
            time.sleep(4)  # the fault's length (a duration, not a wait for a condition)
            assert running_worker.alive(), running_worker.last_lines()
            assert starting_worker.alive(), starting_worker.last_lines()
        finally:
            admin.config_set("maxmemory", 0)
        viewer.join(90)
        record = assert_whole(client, gid, prompt, seen)
        assert record["attempt"] == 1  # its worker was alive: no restart, the provider paid once
        after = [submit(client, f"after OOM {i} sim:reasoning_tokens=5 sim:content_tokens=5") for i in range(4)]
        for later in after:
            assert wait_status(client, later, {"completed"}, timeout_s=60)["status"] == "completed"
    assert running_worker.alive() and starting_worker.alive()


def test_issue12_a_short_redis_outage_restarts_no_live_generation(cluster: Any, tmp_path: Path) -> None:
    """Before: Redis down ~10 s (lease 10 s): 11 of 20 running generations got ``restart worker_lost`` though
    their workers were alive and buffering, because a sweep ran the moment Redis returned, before the owners'
    next heartbeat. After: an outage of two leases (shorter than ``REASONQ_REDIS_OUTAGE_S``) restarts nothing:
    20 of 20 complete on attempt 1, every viewer's text exact."""
    server = RedisServer(free_port(), tmp_path / "aof").start()  # append-only: the data outlives the restart
    try:
        c = cluster(FAST, redis_url=server.url)
        c.start_api()
        workers = [c.add_worker(), c.add_worker()]
        prompts = [f"outage {i} sim:reasoning_tokens=40 sim:content_tokens=40 sim:tokens_per_s=10" for i in range(20)]
        with httpx.Client(base_url=c.url, timeout=30) as client:
            gids = [submit(client, p) for p in prompts]
            seen: dict[str, list[Ev]] = {}
            viewers = [
                threading.Thread(target=lambda g=g: seen.__setitem__(g, follow_resuming(c.url, g, timeout_s=120)[0]))
                for g in gids
            ]
            for t in viewers:
                t.start()
            for gid in gids:
                wait_record(client, gid, reasoning_words(3))
            server.stop()
            time.sleep(2 * float(FAST["REASONQ_LEASE_TTL_S"]))  # the outage's length: every lease runs out
            server.start()
            for t in viewers:
                t.join(120)
            records = [assert_whole(client, gid, p, seen[gid]) for gid, p in zip(gids, prompts, strict=True)]
        assert [r["attempt"] for r in records] == [1] * 20
        assert not any(e.type == "restart" for events in seen.values() for e in events)
        assert all(w.alive() for w in workers)
    finally:
        server.stop()


def test_issue12_evicted_keys_are_a_410_on_every_read_and_events_never_hang(
    cluster: Any, private_redis: RedisServer
) -> None:
    """Before: with an evicting Redis, a finished generation whose text keys were evicted answered ``completed``
    with empty text, and one whose events stream was evicted left ``/events`` waiting with no event and no
    ``done``. After: both are ``410 generation_data_lost`` on every read, at once. (Eviction is reproduced by
    deleting the keys Redis would have evicted.)"""
    c = cluster(FAST, redis_url=private_redis.url)
    c.start_api()
    c.add_worker()
    admin = redis.Redis.from_url(private_redis.url)
    with httpx.Client(base_url=c.url, timeout=10) as client:
        texts_gone, events_gone = (
            submit(client, f"evicted {what} sim:reasoning_tokens=5 sim:content_tokens=5") for what in ("t", "e")
        )
        for gid in (texts_gone, events_gone):
            wait_status(client, gid, {"completed"})
        admin.delete(keys.reasoning_key(texts_gone), keys.content_key(texts_gone))
        admin.delete(keys.events_key(events_gone))
        for gid in (texts_gone, events_gone):
            for path in ("", "/events", "/events?after=3", "/viewers"):
                r = client.get(f"/v1/generations/{gid}{path}")  # the 10 s client timeout: a hang fails here
                assert r.status_code == 410, (path, r.status_code, r.text[:200])
                assert r.json()["error"]["type"] == "generation_data_lost"
        # An intact generation is untouched by the check.
        intact = submit(client, "whole sim:reasoning_tokens=5 sim:content_tokens=5")
        assert wait_status(client, intact, {"completed"})["content"]


@pytest.mark.parametrize("command", ["api", "worker"])
def test_issue12_an_evicting_redis_is_refused_at_start(
    private_redis: RedisServer, stack_env: dict[str, str], command: str
) -> None:
    """``allkeys-lru`` (a common cache setting) is refused in one line that says why and what to set; with
    ``REASONQ_ALLOW_EVICTING_REDIS`` the process starts and warns."""
    redis.Redis.from_url(private_redis.url).config_set("maxmemory-policy", "allkeys-lru")
    env = {**stack_env, "REASONQ_REDIS_URL": private_redis.url, "REASONQ_BROKER_URL": private_redis.url}
    argv = python_m(command, *(["--port", str(free_port())] if command == "api" else []))
    refused = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "maxmemory-policy allkeys-lru" in refused.stderr and "noeviction" in refused.stderr
    assert "REASONQ_ALLOW_EVICTING_REDIS" in refused.stderr and "Traceback" not in refused.stderr
    with subprocess.Popen(
        argv, env={**env, "REASONQ_ALLOW_EVICTING_REDIS": "true"}, stderr=subprocess.PIPE, text=True
    ) as allowed:
        try:
            assert allowed.stderr is not None
            line = ""
            deadline = time.monotonic() + 30
            while "Running anyway" not in line and time.monotonic() < deadline:
                line = allowed.stderr.readline()
            assert "Running anyway" in line
            assert allowed.poll() is None  # still running
        finally:
            allowed.terminate()
            allowed.wait(30)
