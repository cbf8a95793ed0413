"""The script batcher against a real redis-server and a Cluster (one pipeline per node): results per caller, few
pipelines, NOSCRIPT recovery."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ResponseError

from reasonq.shared.batching import ScriptBatcher
from reasonq.shared.redis import create_redis

ECHO = "return {KEYS[1], ARGV[1]}"
BOOM = "return redis.error_reply('boom ' .. ARGV[1])"


def test_concurrent_callers_share_pipelines_and_get_their_own_replies(store_url: str) -> None:
    async def main() -> None:
        redis = create_redis(store_url, max_connections=4)
        batcher = ScriptBatcher(redis)
        echo, boom = redis.register_script(ECHO), redis.register_script(BOOM)
        await redis.script_flush()  # the first pipeline meets NOSCRIPT and must recover
        try:
            replies = await asyncio.gather(*(batcher.call(echo, [f"k{i}"], [i]) for i in range(300)))
            assert replies == [[f"k{i}".encode(), str(i).encode()] for i in range(300)]
            assert batcher.pipelines < 300 / 10
            with pytest.raises(ResponseError, match="boom 7"):
                await batcher.call(boom, ["k"], [7])
            assert await batcher.call(echo, ["after"], ["error"]) == [b"after", b"error"]
        finally:
            await batcher.close()
            await redis.aclose()

    asyncio.run(main())


def test_plain_reads_share_the_pipelines_of_script_calls(store_url: str) -> None:
    """A burst of starts reads its records through the batcher (issue 14): reads and script calls of many callers
    leave together, each caller gets its own reply, and a read of a missing key is its own (empty) answer."""

    async def main() -> None:
        redis = create_redis(store_url, max_connections=4)
        batcher = ScriptBatcher(redis)
        echo = redis.register_script(ECHO)
        try:
            for i in range(50):
                await redis.hset(f"h{i}", mapping={"a": i, "b": f"v{i}"})
            reads = [batcher.command("HMGET", f"h{i}", "a", "b", "c") for i in range(150)]
            calls = [batcher.call(echo, [f"k{i}"], [i]) for i in range(150)]
            replies = await asyncio.gather(*reads, *calls)
            expected = [[str(i).encode(), f"v{i}".encode(), None] if i < 50 else [None, None, None] for i in range(150)]
            assert replies[:150] == expected
            assert replies[150:] == [[f"k{i}".encode(), str(i).encode()] for i in range(150)]
            assert batcher.pipelines < 300 / 10
            with pytest.raises(ResponseError, match="WRONGTYPE"):
                await batcher.command("LPUSH", "h1", "x")  # an error reply is that caller's alone
            assert await batcher.command("HMGET", "h2", "b") == [b"v2"]
        finally:
            await batcher.close()
            await redis.aclose()

    asyncio.run(main())


def test_a_fresh_cluster_client_first_used_by_the_batcher_answers(redis_cluster: Any) -> None:
    """A worker's first command on a Cluster can be a start's read through the batcher (issue 14): the client has
    not learned the slots yet, and looking a node up raised inside the batcher's task, which died with the batch
    and left every caller waiting for ever (a generation stayed queued with its worker idle)."""

    async def main() -> None:
        redis = create_redis(redis_cluster.url, max_connections=4)
        batcher = ScriptBatcher(redis)
        echo = redis.register_script(ECHO)
        try:
            first = asyncio.gather(batcher.command("HMGET", "fresh", "a"), batcher.call(echo, ["k"], [1]))
            assert await asyncio.wait_for(first, 10) == [[None], [b"k", b"1"]]
            assert await asyncio.wait_for(batcher.command("HMGET", "fresh", "a"), 10) == [None]
        finally:
            await batcher.close()
            await redis.aclose()

    asyncio.run(main())


def test_a_batch_that_cannot_be_sent_fails_its_callers_and_the_next_batch_goes(unit_redis_url: str) -> None:
    """Whatever goes wrong while sending a batch, its callers get the error, never a wait without end."""

    async def main() -> None:
        redis = create_redis(unit_redis_url, max_connections=4)
        batcher = ScriptBatcher(redis)
        try:
            with pytest.raises(Exception):  # noqa: B017 - an argument redis-py cannot encode: whatever it raises
                await asyncio.wait_for(batcher.command("HMGET", "k", object()), 10)
            assert await asyncio.wait_for(batcher.command("HMGET", "k", "a"), 10) == [None]
        finally:
            await batcher.close()
            await redis.aclose()

    asyncio.run(main())
