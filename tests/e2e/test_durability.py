"""Durability, proven by killing things: worker SIGKILL and SIGSTOP, SIGTERM drain, cancel, provider retries,
a Redis restart, lost task messages, poison generations, and a chaos run."""

from __future__ import annotations

import concurrent.futures
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from reasonq.processes import RedisServer, free_port, wait_until
from tests.helpers import (
    Ev,
    assert_whole,
    expected_text,
    follow_resuming,
    read_events,
    reasoning_words,
    record_measurement,
    submit,
    text_of,
    wait_record,
    wait_status,
    worker_running,
)

FAST_RECOVERY = {"REASONQ_LEASE_TTL_S": "2", "REASONQ_SWEEP_INTERVAL_S": "0.5"}


def test_sigkill_mid_generation_completes_on_another_worker(cluster: Any) -> None:
    c = cluster(FAST_RECOVERY)
    c.start_api()
    workers = [c.add_worker(), c.add_worker()]
    prompt = "kill me sim:reasoning_tokens=60 sim:content_tokens=60 sim:tokens_per_s=40"
    with httpx.Client(base_url=c.url, timeout=30) as client:
        gid = submit(client, prompt)
        seen: list[Ev] = []
        viewer = threading.Thread(target=lambda: seen.extend(read_events(client, gid, timeout_s=60)))
        viewer.start()
        first = worker_running(workers, gid)
        wait_record(client, gid, reasoning_words(10))
        killed_at = time.monotonic()
        first.signal(signal.SIGKILL)
        wait_record(client, gid, lambda r: r["attempt"] == 2, timeout_s=20)
        recovery_s = time.monotonic() - killed_at
        viewer.join(60)
        assert_whole(client, gid, prompt, seen)
    restarts = [e.data for e in seen if e.type == "restart"]
    assert restarts == [{"attempt": 2, "reason": "worker_lost"}]
    assert {"status": "running", "attempt": 2} in [e.data for e in seen if e.type == "status"]
    assert recovery_s < 2 + 0.5 + 5  # lease + sweep interval + dispatch and start
    record_measurement("worker_sigkill_to_attempt_2", recovery_s, "s")


def test_a_paused_worker_that_comes_back_writes_nothing(cluster: Any) -> None:
    c = cluster(FAST_RECOVERY)
    c.start_api()
    workers = [c.add_worker(), c.add_worker()]
    prompt = "pause me sim:reasoning_tokens=40 sim:content_tokens=60 sim:tokens_per_s=40"
    with httpx.Client(base_url=c.url, timeout=30) as client:
        gid = submit(client, prompt)
        paused = worker_running(workers, gid)
        wait_record(client, gid, reasoning_words(5))
        paused.signal(signal.SIGSTOP)
        try:
            wait_record(client, gid, lambda r: r["attempt"] == 2, timeout_s=20)
        finally:
            paused.signal(signal.SIGCONT)  # it wakes with buffered tokens and a stale attempt
        events = read_events(client, gid, timeout_s=60)
        assert_whole(client, gid, prompt, events)
    assert [e.type for e in events].count("restart") == 1
    log = Path(paused.log_path or "").read_text()
    assert "fenced off" in log or "lease lost" in log


def test_cancel_a_queued_generation_it_never_starts(cluster: Any) -> None:
    c = cluster()
    c.start_api()  # no worker yet
    with httpx.Client(base_url=c.url, timeout=30) as client:
        gid = submit(client, "never sim:reasoning_tokens=5 sim:content_tokens=5")
        r = client.post(f"/v1/generations/{gid}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        assert client.post(f"/v1/generations/{gid}/cancel").json()["status"] == "cancelled"  # idempotent
        worker = c.add_worker()
        # The worker receives the task message and must not start it: wait until it has taken the message off the
        # queue (its log says so), then check that nothing was written.
        log = Path(worker.log_path or "")
        wait_until(lambda: f"{gid}: already cancelled" in log.read_text(), timeout_s=30, what="the worker's skip")
        events = read_events(client, gid, timeout_s=5)
    assert [(e.type, e.data.get("status")) for e in events] == [
        ("status", "queued"),
        ("status", "cancelled"),
        ("done", "cancelled"),
    ]


def test_cancel_a_running_generation_stops_within_500_ms(client: httpx.Client, sim_url: str) -> None:
    prompt = f"cancel me {time.monotonic_ns()} sim:reasoning_tokens=200 sim:content_tokens=200 sim:tokens_per_s=40"
    gid = submit(client, prompt)
    wait_record(client, gid, reasoning_words(5))
    seen: list[Ev] = []
    done_at: list[float] = []

    def view() -> None:
        for e in read_events(client, gid, timeout_s=30):
            seen.append(e)
        done_at.append(time.monotonic())

    viewer = threading.Thread(target=view)
    viewer.start()
    # attached before the cancel (the count is published every 2 s)
    wait_until(lambda: client.get(f"/v1/generations/{gid}/viewers").json()["viewers"] >= 1, timeout_s=5, what="viewer")
    t0 = time.monotonic()
    r = client.post(f"/v1/generations/{gid}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "running" and r.json()["cancel_requested"] is True
    viewer.join(30)
    stop_ms = (done_at[0] - t0) * 1000
    assert stop_ms < 500, stop_ms
    done = seen[-1]
    assert done.type == "done" and done.data["status"] == "cancelled" and done.data["finish_reason"] == "cancelled"
    assert done.data["usage"]["estimated"] is True and done.data["usage"]["completion_tokens"] > 0
    record = client.get(f"/v1/generations/{gid}").json()
    assert record["status"] == "cancelled" and record["reasoning"] == text_of(seen)[0]
    assert expected_text(prompt)[0].startswith(record["reasoning"])  # the text so far is kept
    assert client.post(f"/v1/generations/{gid}/cancel").json()["status"] == "cancelled"

    def upstream_closed() -> bool:
        return prompt[:200] in httpx.get(f"{sim_url}/sim/stats").json()["disconnects"]

    wait_until(upstream_closed, timeout_s=5, what="the simulator seeing the upstream stream closed")
    record_measurement("cancel_to_done_event", stop_ms, "ms")


def test_unknown_generation_cancel_is_404(client: httpx.Client) -> None:
    assert client.post("/v1/generations/gen_AAAAAAAAAAAAAAAAAAAAAA/cancel").status_code == 404


@pytest.mark.parametrize(("status", "times"), [(429, 2), (500, 1)])
def test_provider_errors_are_retried_visibly(client: httpx.Client, status: int, times: int) -> None:
    prompt = f"retry {status} {time.monotonic_ns()} sim:status={status} sim:fail_times={times} sim:reasoning_tokens=5"
    gid = submit(client, prompt)
    events = read_events(client, gid, timeout_s=30)
    retries = [e.data for e in events if e.type == "status" and "retry_in_s" in e.data]
    assert len(retries) == times
    assert all(f"HTTP {status}" in r["reason"] and r["attempt"] == 1 for r in retries)
    if status == 429:
        assert all(r["retry_in_s"] >= 1.0 for r in retries)  # the simulator's Retry-After: 1 is honoured
    assert events[-1].data["status"] == "completed"
    assert text_of(events) == expected_text(prompt)


def test_a_broken_stream_restarts_then_completes(client: httpx.Client) -> None:
    prompt = (
        f"flaky {time.monotonic_ns()} sim:reasoning_tokens=20 sim:content_tokens=20 sim:fail_after=30 sim:fail_times=1"
    )
    gid = submit(client, prompt)
    events = read_events(client, gid, timeout_s=30)
    assert [e.data for e in events if e.type == "restart"] == [{"attempt": 2, "reason": "provider_error"}]
    assert_whole(client, gid, prompt, events)


def test_continue_strategy_gives_one_seamless_text(cluster: Any) -> None:
    c = cluster({"REASONQ_RESUME_STRATEGY": "continue"})
    c.start_api()
    c.add_worker()
    prompt = "seamless sim:reasoning_tokens=20 sim:content_tokens=40 sim:fail_after=35 sim:fail_times=1"
    with httpx.Client(base_url=c.url, timeout=30) as client:
        gid = submit(client, prompt)
        events = read_events(client, gid, timeout_s=30)
        record = assert_whole(client, gid, prompt, events)
    assert not any(e.type == "restart" for e in events)
    assert record["attempt"] == 2
    assert {"status": "running", "attempt": 2} in [e.data for e in events if e.type == "status"]


def test_sigterm_drains_then_hands_back(cluster: Any) -> None:
    c = cluster({**FAST_RECOVERY, "REASONQ_SHUTDOWN_GRACE_S": "1.5"})
    c.start_api()
    draining = c.add_worker()
    short = "short sim:reasoning_tokens=10 sim:content_tokens=10 sim:tokens_per_s=40"
    long = "long sim:reasoning_tokens=100 sim:content_tokens=100 sim:tokens_per_s=40"
    with httpx.Client(base_url=c.url, timeout=30) as client:
        short_id, long_id = submit(client, short), submit(client, long)
        for gid in (short_id, long_id):
            wait_record(client, gid, reasoning_words(1))
        c.add_worker()
        t0 = time.monotonic()
        draining.signal(signal.SIGTERM)
        assert draining.proc is not None
        draining.proc.wait(20)
        drained_s = time.monotonic() - t0
        short_events = read_events(client, short_id, timeout_s=30)
        long_events = read_events(client, long_id, timeout_s=60)
        assert_whole(client, short_id, short, short_events)
        assert_whole(client, long_id, long, long_events)
    assert not any(e.type == "restart" for e in short_events)  # finished within the grace period
    assert [e.data for e in long_events if e.type == "restart"] == [{"attempt": 2, "reason": "worker_shutdown"}]
    assert drained_s < 1.5 + 5
    assert draining.proc.returncode == 0


def test_lost_task_message_is_found_and_dispatched(cluster: Any, redis_server: RedisServer) -> None:
    c = cluster({"REASONQ_REDISPATCH_AFTER_S": "1"})
    c.start_api()
    prompt = "lost message sim:reasoning_tokens=5 sim:content_tokens=5"
    with httpx.Client(base_url=c.url, timeout=30) as client:
        gid = submit(client, prompt)
        redis.Redis.from_url(redis_server.url).delete(c.queue)  # the broker lost the task (kombu keeps a list)
        c.add_worker()
        events = read_events(client, gid, timeout_s=30)
        assert_whole(client, gid, prompt, events)


def test_poison_generation_ends_failed(cluster: Any, redis_server: RedisServer) -> None:
    from reasonq.shared import keys

    c = cluster()
    c.start_api()
    with httpx.Client(base_url=c.url, timeout=30) as client:
        gid = submit(client, "poison sim:reasoning_tokens=5")
        redis.Redis.from_url(redis_server.url).hset(keys.record_key(gid), "losses", 3)  # lost 3 workers already
        c.add_worker()
        record = wait_status(client, gid, {"failed", "completed"})
    assert record["status"] == "failed" and record["error"]["type"] == "too_many_attempts"


def test_redis_restart_mid_stream(cluster: Any, tmp_path: Path) -> None:
    server = RedisServer(free_port(), tmp_path / "redis", persist=True).start()
    try:
        c = cluster(FAST_RECOVERY, redis_url=server.url)
        c.start_api()
        worker = c.add_worker()
        prompt = "redis restart sim:reasoning_tokens=80 sim:content_tokens=80 sim:tokens_per_s=40"
        with httpx.Client(base_url=c.url, timeout=30) as client:
            gid = submit(client, prompt)
            result: list[Any] = []
            viewer = threading.Thread(target=lambda: result.append(follow_resuming(c.url, gid, timeout_s=90)))
            viewer.start()
            wait_record(client, gid, reasoning_words(20))
            server.stop()
            r = client.post("/v1/generations", json={"messages": [{"role": "user", "content": "during outage"}]})
            assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
            assert r.json()["error"]["type"] == "unavailable"
            time.sleep(1.0)  # the outage itself: Redis stays down this long (a duration, not a wait)
            server.start()
            viewer.join(90)
            events, reconnects = result[0]
            assert_whole(client, gid, prompt, events)
            # the worker rode it out and takes new work
            after = "after restart sim:reasoning_tokens=5 sim:content_tokens=5"
            assert wait_status(client, submit(client, after), {"completed"}, timeout_s=30)["status"] == "completed"
        assert worker.alive()
        assert reconnects >= 1  # the SSE response ended cleanly and the client resumed
    finally:
        server.stop()


def test_chaos_kill_a_random_worker_every_few_seconds(cluster: Any) -> None:
    # A generation may be unlucky several times in a row here; the poison limit is not what this test is about.
    c = cluster({**FAST_RECOVERY, "REASONQ_MAX_WORKER_LOSSES": "20"})
    c.start_api()
    workers = [c.add_worker() for _ in range(3)]
    rng = random.Random(7)
    prompts = [
        f"chaos {i} sim:reasoning_tokens={rng.randint(20, 60)} sim:content_tokens={rng.randint(20, 60)} "
        f"sim:tokens_per_s=30"
        for i in range(50)
    ]
    with httpx.Client(base_url=c.url, timeout=30, limits=httpx.Limits(max_connections=100)) as client:
        ids = [submit(client, p) for p in prompts]
        stop = threading.Event()

        def chaos() -> None:
            while not stop.wait(3.0):
                victim = rng.choice([w for w in workers if w.alive()])
                victim.signal(signal.SIGKILL)
                workers.remove(victim)
                workers.append(c.add_worker())

        killer = threading.Thread(target=chaos)
        killer.start()
        try:
            with concurrent.futures.ThreadPoolExecutor(50) as pool:
                results = list(pool.map(lambda gid: follow_resuming(c.url, gid, timeout_s=150)[0], ids))
        finally:
            stop.set()
            killer.join(30)
        for gid, prompt, events in zip(ids, prompts, results, strict=True):
            assert_whole(client, gid, prompt, events)
