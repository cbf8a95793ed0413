"""The hub writes live viewers' chunks straight to their connections (issue 14): ``Topic.park`` and the server's
``DirectBody`` (``api/protocol.py``).

Through ASGI every event woke every viewer's task and resumed a chain of some twenty frames for one
``transport.write``; at 3,000 viewers that overhead was two thirds of the API's time. A parked viewer's task now
sleeps while the reader writes for it; it runs again only when the reader cannot write (a full socket, the end of
the stream, a failure). These tests hold the result to the bytes the ordinary path sends.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from reasonq.api.protocol import DirectBody, chunked
from reasonq.api.topics import NATIVE_SSE, HubUnavailable, Topic
from reasonq.shared.events import StoredEvent, to_sse
from tests.conftest import Cluster
from tests.helpers import metric_value, submit, wait_status

_ID = re.compile(rb"^id: (\d+)$", re.M)


def _event(seq: int, kind: str = "content") -> StoredEvent:
    return StoredEvent(seq=seq, type=kind, data=b'{"text":"t%d"}' % seq)


class Connection:
    """A viewer's connection as the hub sees it: takes framed chunks until told it is full."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.full = False

    def write(self, framed: bytes) -> bool:
        if self.full:
            return False
        self.written.append(framed)
        return True


def _topic(*seqs: int) -> Topic:
    topic = Topic(generation_id="g", key=b"k", cursor=0)
    topic.publish([_event(s) for s in seqs], 64)
    return topic


def test_parked_viewers_are_written_each_chunk_once_framed_and_stay_asleep() -> None:
    async def main() -> None:
        topic = _topic(1, 2)
        connections = [Connection() for _ in range(3)]
        parked = [asyncio.create_task(topic.park(2, NATIVE_SSE, c.write)) for c in connections]
        await asyncio.sleep(0)
        topic.publish([_event(3), _event(4)], 64)
        topic.publish([_event(5)], 64)
        await asyncio.sleep(0)
        assert not any(p.done() for p in parked)  # written for, not woken
        expected = [chunked(to_sse(_event(3)) + to_sse(_event(4))), chunked(to_sse(_event(5)))]
        assert all(c.written == expected for c in connections)
        topic.publish([_event(6, "done")], 64)  # the end: every viewer runs to send it and close the response
        assert await asyncio.gather(*parked) == [5, 5, 5]
        assert all(len(c.written) == 2 for c in connections)

    asyncio.run(main())


def test_a_full_connection_wakes_its_viewer_at_the_last_chunk_written_and_is_not_written_again() -> None:
    async def main() -> None:
        topic = _topic(1)
        slow, fast = Connection(), Connection()
        slow_task = asyncio.create_task(topic.park(1, NATIVE_SSE, slow.write))
        fast_task = asyncio.create_task(topic.park(1, NATIVE_SSE, fast.write))
        await asyncio.sleep(0)
        topic.publish([_event(2)], 64)
        slow.full = True
        topic.publish([_event(3)], 64)
        assert await slow_task == 2  # its task takes event 3 on (the ring has it) through its own send
        topic.publish([_event(4)], 64)
        assert len(slow.written) == 1
        assert len(fast.written) == 3 and not fast_task.done()
        fast_task.cancel()
        await asyncio.gather(fast_task, return_exceptions=True)
        assert not topic._parked  # a viewer that left is no longer written to

    asyncio.run(main())


def test_a_failed_reader_wakes_parked_viewers_with_the_error() -> None:
    async def main() -> None:
        topic = _topic(1)
        task = asyncio.create_task(topic.park(1, NATIVE_SSE, Connection().write))
        await asyncio.sleep(0)
        topic.fail(ConnectionError("redis gone"))
        with pytest.raises(HubUnavailable):
            await task
        with pytest.raises(HubUnavailable):  # parking on a failed topic fails at once
            await topic.park(1, NATIVE_SSE, Connection().write)

    asyncio.run(main())


def test_a_jump_in_ids_or_a_chunk_past_its_size_wakes_the_viewer_rather_than_writing_part() -> None:
    async def main() -> None:
        topic = _topic(1)
        connection = Connection()
        task = asyncio.create_task(topic.park(1, NATIVE_SSE, connection.write))
        await asyncio.sleep(0)
        topic.publish([_event(9)], 64)  # a failover's jump restarts the ring at 9: the viewer reads from Redis
        assert await task == 1 and connection.written == []
        big = [StoredEvent(seq=s, type="content", data=b"x" * 100_000) for s in (10, 11, 12)]
        task = asyncio.create_task(topic.park(9, NATIVE_SSE, connection.write))
        await asyncio.sleep(0)
        topic.publish(big, 64)  # 300 KB is more than one viewer's chunk (CHUNK_BYTES): its own task sends it
        assert await task == 9 and connection.written == []

    asyncio.run(main())


class _Transport:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.written.append(data)

    def is_closing(self) -> bool:
        return False


class _Flow:
    write_paused = False


class _Cycle:
    """The fields of uvicorn's RequestResponseCycle that DirectBody reads."""

    def __init__(self, transport: _Transport) -> None:
        self.transport, self.flow = transport, _Flow()
        self.disconnected = False
        self.response_started = True
        self.response_complete = False
        self.chunked_encoding = True


def test_the_direct_write_refuses_whenever_a_send_would_wait_or_fail() -> None:
    transport = _Transport()
    cycle = _Cycle(transport)
    body = DirectBody(cycle)  # type: ignore[arg-type]
    assert body.write(b"a") and transport.written == [b"a"]
    for field, value in (
        ("response_started", False),
        ("response_complete", True),
        ("chunked_encoding", False),
        ("disconnected", True),
    ):
        setattr(cycle, field, value)
        assert not body.write(b"b"), field
        setattr(cycle, field, not value)
    cycle.flow.write_paused = True  # past the high-water mark: the viewer's own send waits for the drain
    assert not body.write(b"b")
    cycle.flow.write_paused = False
    cycle.transport = _Transport(RuntimeError("closed"))  # never an error into the hub's reader
    assert not body.write(b"b")
    assert transport.written == [b"a"]


def test_no_middleware_that_could_change_a_body_sits_between_the_app_and_the_direct_write() -> None:
    """Direct writes go past the middleware stack: one that compresses or rewrites bodies would be bypassed for
    live viewers. The app's own middleware only reads requests; adding another means deciding this again."""
    from reasonq.api.main import app
    from reasonq.api.middleware import RequestLimitMiddleware

    assert [m.cls for m in app.user_middleware] == [RequestLimitMiddleware]


@pytest.fixture(scope="module")
def small_ring(stack_env: dict[str, str], logs_dir: Path) -> Iterator[Cluster]:
    """An API whose ring holds 8 events, so a viewer that stops reading falls behind it and reads from Redis."""
    c = Cluster({**stack_env, "REASONQ_HUB_RING_EVENTS": "8"}, logs_dir, "direct")
    c.start_api()
    c.add_worker()
    yield c
    c.stop()


def _stream(port: int, path: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return s


def _read_until_end(s: socket.socket, timeout_s: float) -> bytes:
    s.settimeout(timeout_s)
    received = bytearray()
    while not received.endswith(b"\r\n0\r\n\r\n"):
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        received += chunk
    return bytes(received)


def _body(raw: bytes) -> bytes:
    """The body of a chunked HTTP response, without its keep-alive comments and ``retry`` lines."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:100]
    body = bytearray()
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        body += rest[:size]
        rest = rest[size + 2 :]
    frames = [f for f in bytes(body).split(b"\n\n") if f and not f.startswith((b":", b"retry:"))]
    return b"\n\n".join(frames)


def test_live_viewers_written_directly_get_the_bytes_a_replay_gets(small_ring: Cluster) -> None:
    """Through the real server: thirty viewers of a live 8 MB generation, one of which stops reading (its socket
    fills, it falls back to its own task and reads from Redis), all end with exactly the bytes a replay of the finished
    generation sends, and most chunks were written by the hub."""
    gclient = httpx.Client(base_url=small_ring.url, timeout=30)
    port = int(small_ring.url.rsplit(":", 1)[1])
    metrics_before = gclient.get("/metrics").text
    before = metric_value(metrics_before, "reasonq_direct_writes_total")
    gid = submit(
        gclient,
        "direct sim:reasoning_tokens=200 sim:content_tokens=200 sim:token_chars=20000 sim:tokens_per_s=100"
        " sim:stall_after=0 sim:stall_s=1",
    )
    viewers = [_stream(port, f"/v1/generations/{gid}/events") for _ in range(29)]
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", port))
    stalled.sendall(f"GET /v1/generations/{gid}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    try:
        with ThreadPoolExecutor(len(viewers)) as pool:  # every viewer reads as it comes
            bodies = [_body(raw) for raw in pool.map(lambda s: _read_until_end(s, 60), viewers)]
        wait_status(gclient, gid, {"completed"})
        time.sleep(0.5)  # the stalled viewer reads again only after the end: it fell behind while it was live
        stalled_body = _body(_read_until_end(stalled, 60))
        with _stream(port, f"/v1/generations/{gid}/events") as again:  # ended: replayed from Redis, no hub
            replay = _body(_read_until_end(again, 30))
        metrics_after = gclient.get("/metrics").text
        written = metric_value(metrics_after, "reasonq_direct_writes_total") - before
    finally:
        for s in [*viewers, stalled]:
            s.close()
        gclient.close()
    ids = [int(i) for i in _ID.findall(replay)]
    assert ids == list(range(1, len(ids) + 1)) and len(ids) > 50
    assert all(body == replay for body in bodies)
    assert stalled_body == replay
    # 8 MB is more than the stalled viewer's socket buffers hold: the hub could not write for it, it fell behind the
    # ring of 8 and read from Redis.
    catchups = "reasonq_slow_viewer_catchups_total"
    assert metric_value(metrics_after, catchups) > metric_value(metrics_before, catchups)
    # Tokens come in batches of a few events; each viewer's chunks of the live part were nearly all written by the
    # hub (30 viewers x a few hundred batches).
    assert written > 29 * len(ids) // 2, (written, len(ids))
