"""Redis clients with limits chosen on purpose, for one server, a Sentinel-watched primary or a Cluster.

redis-py 8 defaults to a 5 s socket timeout and a 100-connection asyncio pool that raises "Too many
connections" the moment it is exhausted; a burst of viewers replaying at once would then fail. The pooled
client here waits (bounded) for a free connection instead.

``REASONQ_REDIS_URL`` takes (issue 13):

- ``redis://`` / ``rediss://``: one server;
- ``redis+sentinel://[user:password@]host:port[,host:port…]/service_name[/db]``: the primary the Sentinels name
  (followed across failovers; the password is the data nodes');
- ``redis+cluster://[user:password@]host:port[,host:port…]``: a Redis Cluster (any reachable nodes; the rest are
  discovered, MOVED/ASK and node loss are redis-py's cluster client's).

A Cluster client is returned typed as ``Redis``: the store's calls are ones both answer, and the few places that
must differ (pipelined scripts, the hub's per-slot reads) ask ``is_cluster``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import redis as sync_redis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from reasonq.shared.errors import ConfigurationError
from reasonq.shared.redis_urls import RedisTarget, parse_redis_url

COMMAND_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
POOL_WAIT_S = 10.0


def is_cluster(redis: Redis) -> bool:
    """Whether ``redis`` is a Redis Cluster client (see the module's docstring)."""
    return isinstance(redis, RedisCluster)


class _WaitingCluster(RedisCluster):
    """redis-py's cluster client raises "Too many connections" the moment a node's pool is exhausted (there is no
    blocking pool for it): 50 viewers replaying at once through a pool of 8 ended their streams. This one lets at
    most ``max_connections`` commands and pipelines be in flight and queues the rest (bounded by ``POOL_WAIT_S``),
    so no node ever needs more connections than its pool has."""

    def __init__(self, *, max_connections: int, **kwargs: Any) -> None:
        super().__init__(max_connections=max_connections, **kwargs)
        self._in_flight = asyncio.Semaphore(max_connections)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._slot():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        async def waiting_execute(*args: Any, **kwargs: Any) -> Any:
            async with self._slot():
                return await execute(*args, **kwargs)

        pipe.execute = waiting_execute  # type: ignore[method-assign]
        return pipe

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self._in_flight.locked():  # only then wait (bounded): wait_for costs a task per call
            try:
                await asyncio.wait_for(self._in_flight.acquire(), POOL_WAIT_S)
            except TimeoutError:
                raise RedisConnectionError(f"no free Redis connection after {POOL_WAIT_S:g} s") from None
        else:
            await self._in_flight.acquire()
        try:
            yield
        finally:
            self._in_flight.release()


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (connections to whichever node is primary now) that waits for a free connection."""


def _retry() -> Retry:
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=0)


def _client(url: str, *, max_connections: int, socket_timeout_s: float, single: bool = False) -> Redis:
    target = parse_redis_url(url)
    common: dict[str, Any] = {
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "username": target.username,
        "password": target.password,
    }
    if target.kind == "cluster":
        cluster = _WaitingCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in target.hosts],
            max_connections=max_connections,
            ssl=target.ssl,
            # MOVED/ASK are followed by the client; a lost node or CLUSTERDOWN during a failover is retried
            # after re-reading the topology. Every write reasonq resends is idempotent (see create_redis); a
            # command still failing after these is an outage its caller rides out, like a lost single server.
            retry=Retry(ExponentialWithJitterBackoff(base=0.1, cap=1.0), retries=3),
            **common,
        )
        return cast(Redis, cluster)
    if target.kind == "sentinel":
        sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]  # unannotated before redis-py 8.2
            target.hosts, sentinel_kwargs={"socket_timeout": 2, "socket_connect_timeout": 2}, ssl=target.ssl, **common
        )
        return sentinel.master_for(  # type: ignore[no-any-return]
            target.service,
            connection_pool_class=_BlockingSentinelPool,
            max_connections=max_connections,
            timeout=POOL_WAIT_S,
            db=target.db,
            retry=_retry(),
        )
    if single:
        return Redis.from_url(
            url,
            single_connection_client=True,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            retry=_retry(),
        )
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT_S,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        retry=_retry(),
        health_check_interval=30,
    )
    return Redis.from_pool(pool)  # the client owns the pool and closes it


def create_redis(url: str, *, max_connections: int, socket_timeout_s: float = COMMAND_TIMEOUT_S) -> Redis:
    """A pooled asyncio client for ordinary (non-blocking) commands, which it does not resend by itself.

    A command whose reply is lost may have been applied, and not every write is safe to send twice (a
    pipeline's ``XADD`` with an explicit id, ``HINCRBY``), so retrying is the caller's decision, made where the
    write is idempotent: the writer's appends and finish (fenced by the expected event id), a claim (its token,
    ``store.claim``), a metrics batch (its id, ``metrics_add.lua``). Issue 18: this docstring claimed every
    command was safe to retry; in fact the synchronous ``redis.retry.Retry`` given to these asyncio connections
    never resent anything, and a metrics flush re-sent by its caller was counted twice.
    """
    return _client(url, max_connections=max_connections, socket_timeout_s=socket_timeout_s)


def create_blocking_redis(url: str, *, block_ms: int, max_connections: int = 1) -> Redis:
    """A client for blocking readers; its socket timeout outlasts the longest block. On one server or a Sentinel
    primary it is one connection; on a Cluster, ``max_connections`` per node (one per concurrent reader)."""
    socket_timeout_s = block_ms / 1000 + COMMAND_TIMEOUT_S
    if parse_redis_url(url).kind == "cluster":
        return _client(url, max_connections=max_connections, socket_timeout_s=socket_timeout_s)
    return _client(url, max_connections=1, socket_timeout_s=socket_timeout_s, single=True)


def _eviction_policies(target: RedisTarget) -> list[str]:
    """``maxmemory-policy`` of the server, the Sentinels' primary, or every Cluster master."""
    kwargs: dict[str, Any] = {"socket_timeout": 2, "socket_connect_timeout": 2}
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.kind == "cluster":
        from redis.cluster import ClusterNode as SyncClusterNode
        from redis.cluster import RedisCluster as SyncRedisCluster

        cluster = SyncRedisCluster(
            startup_nodes=[SyncClusterNode(h, p) for h, p in target.hosts],  # type: ignore[no-untyped-call]
            ssl=target.ssl,
            **kwargs,
            **auth,
        )
        try:
            replies = cluster.info("memory", target_nodes=SyncRedisCluster.PRIMARIES)
        finally:
            cluster.close()
        infos = list(replies.values()) if isinstance(replies, dict) and "maxmemory_policy" not in replies else [replies]
    elif target.kind == "sentinel":
        from redis.sentinel import Sentinel as SyncSentinel

        # redis-py left Sentinel and master_for unannotated before 8.2
        sentinels = SyncSentinel(target.hosts, sentinel_kwargs=kwargs, ssl=target.ssl, **kwargs, **auth)  # type: ignore[no-untyped-call, unused-ignore]
        primary = sentinels.master_for(target.service, db=target.db)  # type: ignore[no-untyped-call, unused-ignore]
        try:
            infos = [primary.info("memory")]
        finally:
            primary.close()
    else:
        client = sync_redis.Redis.from_url(target.url, **kwargs)
        try:
            infos = [client.info("memory")]
        finally:
            client.close()
    return [str(info.get("maxmemory_policy", "noeviction")) for info in infos]


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
        policies = _eviction_policies(parse_redis_url(url))
    except (RedisError, OSError):
        return
    policy = next((p for p in policies if p != "noeviction"), "noeviction")
    if policy == "noeviction":
        return
    problem = (
        f"Redis evicts keys under memory pressure (maxmemory-policy {policy}): it would silently delete parts of "
        "generations. Set maxmemory-policy noeviction (redis.conf, or CONFIG SET maxmemory-policy noeviction)"
    )
    if not allow:
        raise ConfigurationError(f"{problem}, or set REASONQ_ALLOW_EVICTING_REDIS=true to run anyway")
    logging.getLogger(__name__).warning("%s. Running anyway: REASONQ_ALLOW_EVICTING_REDIS is set", problem)
