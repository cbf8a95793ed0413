"""Redis clients with limits chosen on purpose.

redis-py 8 defaults to a 5 s socket timeout and a 100-connection asyncio pool that raises "Too many
connections" the moment it is exhausted; a burst of viewers replaying at once would then fail. The pooled
client here waits (bounded) for a free connection instead.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

COMMAND_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
POOL_WAIT_S = 10.0


def create_redis(url: str, *, max_connections: int, socket_timeout_s: float = COMMAND_TIMEOUT_S) -> Redis:
    """A pooled asyncio client for ordinary (non-blocking) commands, which it does not resend by itself.

    A command whose reply is lost may have been applied, and not every write is safe to send twice (a
    pipeline's ``XADD`` with an explicit id, ``HINCRBY``), so retrying is the caller's decision, made where the
    write is idempotent: the writer's appends and finish (fenced by the expected event id), a claim (its token,
    ``store.claim``), a metrics batch (its id, ``metrics_add.lua``). Issue 18: this docstring claimed every
    command was safe to retry; in fact the synchronous ``redis.retry.Retry`` given to these asyncio connections
    never resent anything, and a metrics flush re-sent by its caller was counted twice.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT_S,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=0),
        health_check_interval=30,
    )
    return Redis.from_pool(pool)  # the client owns the pool and closes it


def create_blocking_redis(url: str, *, block_ms: int) -> Redis:
    """A single-connection client for one blocking reader; its socket timeout outlasts the longest block."""
    return Redis.from_url(
        url,
        single_connection_client=True,
        socket_timeout=block_ms / 1000 + COMMAND_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=0),
    )
