"""Redis clients with limits chosen on purpose.

redis-py 8 defaults to a 5 s socket timeout and a 100-connection asyncio pool that raises "Too many
connections" the moment it is exhausted; a burst of viewers replaying at once would then fail. The pooled
client here waits (bounded) for a free connection instead.
"""

from __future__ import annotations

import logging

import redis as sync_redis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

from reasonq.shared.errors import ConfigurationError

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


def check_eviction_policy(url: str, *, allow: bool) -> None:
    """Refuse a Redis that evicts keys under memory pressure (issue 12).

    With ``allkeys-lru`` (a common setting for caches) Redis silently deleted keys of 35 of 130 finished
    generations: their records said ``completed`` with empty text, and viewers of the 12 whose events were gone
    waited for ever. reasonq needs ``noeviction``: a full Redis refuses writes, which reasonq rides out and names.
    A Redis that cannot be reached now is not checked (the process starts, and readiness says what is missing).

    Args:
        url: the Redis URL (never shown: it may hold a password).
        allow: log a loud warning instead of refusing (``REASONQ_ALLOW_EVICTING_REDIS``).

    Raises:
        ConfigurationError: the policy evicts, and ``allow`` is false.
    """
    try:
        client = sync_redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            policy = str(client.info("memory").get("maxmemory_policy", "noeviction"))
        finally:
            client.close()
    except (RedisError, OSError):
        return
    if policy == "noeviction":
        return
    problem = (
        f"Redis evicts keys under memory pressure (maxmemory-policy {policy}): it would silently delete parts of "
        "generations. Set maxmemory-policy noeviction (redis.conf, or CONFIG SET maxmemory-policy noeviction)"
    )
    if not allow:
        raise ConfigurationError(f"{problem}, or set REASONQ_ALLOW_EVICTING_REDIS=true to run anyway")
    logging.getLogger(__name__).warning("%s. Running anyway: REASONQ_ALLOW_EVICTING_REDIS is set", problem)
