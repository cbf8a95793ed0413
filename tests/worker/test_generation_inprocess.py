"""``run_generation`` driven in process, with no broker: a real redis-server and the simulator (issue 18).

Each test builds a ``WorkerRuntime`` (its own event loop thread, Redis pool and model client) on the suite's
unit database and runs one generation through the same function the Celery task calls.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from reasonq.shared import keys
from reasonq.shared.events import DATA_FIELD, TYPE_FIELD
from reasonq.shared.schemas import GenerationCreate, UserMessage
from reasonq.shared.settings import Settings
from reasonq.worker.generation import run_generation
from reasonq.worker.recovery import renew_leases_forever, sweep_once
from reasonq.worker.runtime import RunningGeneration, WorkerRuntime
from tests.conftest import MODEL_API_KEY


@pytest.fixture
def make_runtime(unit_redis_url: str, sim_url: str) -> Iterator[Any]:
    made: list[WorkerRuntime] = []

    def make(dispatch: Any = None, queue_depth: Any = None, **overrides: Any) -> WorkerRuntime:
        settings = Settings(
            redis_url=unit_redis_url,
            model_base_url=f"{sim_url}/v1",
            model_api_key=MODEL_API_KEY,
            lease_ttl_s=30,
            **overrides,
        )
        runtime = WorkerRuntime(settings, dispatch, queue_depth)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.close()


def _create(runtime: WorkerRuntime, prompt: str) -> str:
    gid = "gen_" + secrets.token_urlsafe(16)
    request = GenerationCreate(messages=[UserMessage(role="user", content=prompt)])
    runtime.run(runtime.store.records.create(gid, request, time.time(), "q", "anonymous"))
    return gid


def _events(runtime: WorkerRuntime, gid: str) -> list[tuple[str, dict[str, Any]]]:
    async def read() -> list[tuple[str, dict[str, Any]]]:
        entries = await runtime.redis.xrange(keys.events_key(gid))
        return [(fields[TYPE_FIELD].decode(), orjson.loads(fields[DATA_FIELD])) for _, fields in entries]

    return runtime.run(read())


def _wait_for_retry_status(runtime: WorkerRuntime, gid: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(kind == "status" and data.get("retry_in_s") for kind, data in _events(runtime, gid)):
            return
        time.sleep(0.02)
    raise AssertionError(f"no retry status event for {gid}: {_events(runtime, gid)}")


def test_issue18_cancel_during_the_provider_backoff_stops_at_once(make_runtime: Any) -> None:
    """Issue 18: `RunningGeneration.stop` cancelled only the finished stream task, so a cancel during the
    backoff sleep waited it out (up to 30 s) and opened a new upstream request first."""
    runtime = make_runtime(provider_max_retries=3, provider_backoff_s=8.0, provider_backoff_max_s=8.0)
    gid = _create(runtime, "backoff cancel sim:status=503")
    future = asyncio.run_coroutine_threadsafe(run_generation(runtime, gid), runtime._loop)
    _wait_for_retry_status(runtime, gid)
    asked = time.monotonic()
    runtime._loop.call_soon_threadsafe(runtime.running[gid].stop, "cancel")
    assert future.result(timeout=10) == "cancelled"
    assert time.monotonic() - asked < 0.5
    record = runtime.run(runtime.store.records.get(gid))
    assert record is not None and record.status == "cancelled"


def test_issue18_a_fence_found_while_ending_a_failed_attempt_is_a_fence(make_runtime: Any) -> None:
    """Issue 18: `writer.finish` in the `except ModelError` arm raised `FencedError`, which the `except
    FencedError` arm beside it could not catch: it escaped to the Celery task."""
    runtime = make_runtime(provider_max_retries=1, provider_backoff_s=1.0, provider_backoff_max_s=1.0)
    gid = _create(runtime, "fenced at the end sim:status=503")
    future = asyncio.run_coroutine_threadsafe(run_generation(runtime, gid), runtime._loop)
    _wait_for_retry_status(runtime, gid)
    # another worker takes the generation over while this one waits to retry (its attempt number moves on)
    runtime.run(runtime.redis.hincrby(keys.record_key(gid), "attempt", 1))
    assert future.result(timeout=20) == "fenced"
    record = runtime.run(runtime.store.records.get(gid))
    assert record is not None and record.status == "running"  # left to the attempt that owns it


def test_sweep_once_dispatches_an_expired_lease_once_and_counts_one_loss(make_runtime: Any) -> None:
    """The recovery sweep as the worker's loop calls it, with a recording dispatcher: an expired lease is handed
    back and dispatched to the generation's own queue once; later sweeps, however long it waits, do nothing."""
    sent: list[tuple[str, str]] = []
    runtime = make_runtime(dispatch=lambda gid, queue: sent.append((gid, queue)), queue_depth=lambda _: 1)
    gid = _create(runtime, "swept")
    assert runtime.run(runtime.store.leases.claim(gid, 0, 50, [])).outcome == "claimed"
    time.sleep(0.1)  # the 50 ms lease runs out: a duration, not a wait for a condition
    assert runtime.run(sweep_once(runtime)) == [gid]
    assert sent == [(gid, "q")]
    time.sleep(0.1)
    assert gid not in runtime.run(sweep_once(runtime))
    assert sent == [(gid, "q")]
    target = runtime.run(runtime.store.leases.load_target(gid))
    assert target is not None and target.losses == 1 and target.restart_reason == "worker_lost"


def test_one_heartbeat_renews_owned_leases_and_stops_lost_and_cancelled_ones(make_runtime: Any) -> None:
    """``renew_leases_forever``'s first beat (it goes at once): an owned lease is extended; a generation another
    attempt took is stopped as ``lost``; one whose cancel was requested is stopped as ``cancel``."""
    runtime = make_runtime()  # 30 s leases
    owned, taken, cancelled = (_create(runtime, name) for name in ("owned", "taken", "cancelled"))
    for gid in (owned, taken, cancelled):
        assert runtime.run(runtime.store.leases.claim(gid, 0, 1_000, [])).outcome == "claimed"
        runtime.running[gid] = RunningGeneration(gid, 1)
    runtime.run(runtime.redis.hincrby(keys.record_key(taken), "attempt", 1))  # another attempt owns it
    runtime.run(runtime.redis.hset(keys.record_key(cancelled), "cancel", "1"))

    async def one_beat() -> None:
        task = asyncio.create_task(renew_leases_forever(runtime))
        while runtime.last_beat_at is None:
            await asyncio.sleep(0.005)
        task.cancel()

    runtime.run(one_beat())
    lease_ms = runtime.run(runtime.redis.zscore(keys.leases_key(keys.shard_of(owned)), owned))
    now_ms = runtime.run(runtime.redis.time())[0] * 1000
    assert lease_ms is not None and lease_ms > now_ms + 25_000  # renewed to 30 s, from the 1 s claimed
    assert runtime.running[owned].stop_reason is None
    assert runtime.running[taken].stop_reason == "lost"
    assert runtime.running[cancelled].stop_reason == "cancel"


def test_an_attempt_broken_inside_a_tool_call_restarts_even_when_answers_continue(make_runtime: Any) -> None:
    """Issue 16: a half-written argument list cannot be continued; ``continue`` applies to content only, so the
    new attempt starts again (a ``restart`` event) and the record keeps the second attempt's whole call."""
    runtime = make_runtime(resume_strategy="continue", provider_backoff_s=0.05)
    args = '{"city":"Paris","note":"abcdefghijklmnopqrstu"}'
    prompt = f"tool break sim:reasoning_tokens=3 sim:content_tokens=3 sim:tool_calls=1 sim:tool_args={args}"
    gid = _create(runtime, prompt + " sim:fail_after=8 sim:fail_times=1")
    assert runtime.run(run_generation(runtime, gid)) == "completed"
    events = _events(runtime, gid)
    restarts = [i for i, (kind, _) in enumerate(events) if kind == "restart"]
    assert len(restarts) == 1 and events[restarts[0]][1] == {"attempt": 2, "reason": "provider_error"}
    before = [data for kind, data in events[: restarts[0]] if kind == "tool_call"]
    assert before and "".join(d["arguments"] for d in before) != '{"city":"Paris","note":"abcdefghijklmnopqrstu"}'
    after = [data for kind, data in events[restarts[0] :] if kind == "tool_call"]
    assert "".join(d["arguments"] for d in after) == '{"city":"Paris","note":"abcdefghijklmnopqrstu"}'
    record = runtime.run(runtime.store.records.get(gid))
    assert record is not None and record.finish_reason == "tool_calls"
    assert record.tool_calls == [
        {
            "id": after[0]["id"],
            "type": "function",
            "function": {"name": "simulated_tool", "arguments": '{"city":"Paris","note":"abcdefghijklmnopqrstu"}'},
        }
    ]
