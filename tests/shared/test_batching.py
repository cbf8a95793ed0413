"""The script batcher against a real redis-server and a Cluster (one pipeline per node): results per caller, few
pipelines, NOSCRIPT recovery."""

from __future__ import annotations

import asyncio

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
