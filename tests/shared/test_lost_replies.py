"""Writes sent again after a lost reply are applied once (issue 18: `shared/redis.py` said retries were safe
for every command; a metrics batch re-sent by its caller was counted twice, and a lost claim reply left the
attempt owned by nobody).

A TCP proxy between the client and the suite's redis-server lets a command through and drops its reply, once:
the client sees a connection error after Redis applied the command, and sends it again.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from redis.exceptions import ConnectionError

from reasonq.processes import RedisServer, free_port
from reasonq.shared import keys
from reasonq.shared.redis import create_redis
from reasonq.shared.schemas import GenerationCreate, UserMessage
from reasonq.shared.stats import Stats, add_metrics, read_stats
from reasonq.shared.store import GenerationStore


class ReplyDroppingProxy:
    """Forwards 127.0.0.1:port to a Redis; after ``drop_next_reply()``, the next reply is swallowed and that
    connection closed."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._drop = threading.Event()
        self.dropped = 0
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def drop_next_reply(self) -> None:
        self._drop.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if replies and self._drop.is_set():
                    self._drop.clear()
                    self.dropped += 1
                    break  # the command was applied; its reply never arrives
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[ReplyDroppingProxy]:
    p = ReplyDroppingProxy(redis_server.port)
    yield p
    p.close()


def _url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/1"


def test_issue18_a_metrics_flush_resent_after_a_lost_reply_counts_once(
    proxy: ReplyDroppingProxy, unit_redis_url: str
) -> None:
    field = f"test:lost:{time.monotonic_ns()}"

    async def main() -> float:
        redis = create_redis(_url(proxy.port), max_connections=2)
        try:
            await add_metrics(redis, f"warm-{field}", {"test:warm": 0})  # the script is loaded, the link is up
            stats = Stats()
            stats.pending[field] += 1
            proxy.drop_next_reply()
            with pytest.raises(ConnectionError):
                await stats.flush(redis)  # applied, but the reply never came
            await stats.flush(redis)  # the next heartbeat sends the same batch again
            return (await read_stats(redis))[field]
        finally:
            await redis.aclose()

    assert asyncio.run(main()) == 1.0
    assert proxy.dropped == 1


def test_issue18_a_claim_resent_after_a_lost_reply_is_still_claimed(
    proxy: ReplyDroppingProxy, unit_redis_url: str
) -> None:
    async def main() -> tuple[str, int, str]:
        direct = create_redis(unit_redis_url, max_connections=2)
        through = create_redis(_url(proxy.port), max_connections=2)
        try:
            gid = f"gen_lost_{time.monotonic_ns()}"
            request = GenerationCreate(messages=[UserMessage(role="user", content="x")])
            await GenerationStore(direct).records.create(gid, request, time.time(), "q", "anonymous")
            store = GenerationStore(through)
            await store.leases.claim(f"gen_warm_{gid}", 0, 1000, [])  # loads the script over the proxy
            proxy.drop_next_reply()
            claim = await store.leases.claim(gid, 0, 60_000, [])
            attempt = int(await direct.hget(keys.record_key(gid), "attempt") or 0)
            return claim.outcome, attempt, str(claim.seq)
        finally:
            await direct.aclose()
            await through.aclose()

    outcome, attempt, seq = asyncio.run(main())
    assert proxy.dropped == 1
    assert (outcome, attempt, seq) == ("claimed", 1, "1")
