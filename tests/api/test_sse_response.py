"""``api/sse.py``'s stream on its own (no server): frames in order, keep-alives when quiet, the end when the client
leaves (with the content's cleanup run at once), and HEAD. The streaming tests on real uvicorn cover the rest."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.types import Message

from reasonq.api.sse import PING_FRAME, StreamResponse

SCOPE: dict[str, Any] = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "method": "GET"}


class Client:
    """The ASGI server's side: collects what is sent; disconnects when told to."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.left = asyncio.Event()
        self.broken = False

    async def send(self, message: Message) -> None:
        if self.broken:
            raise OSError("connection reset")
        self.sent.append(message)

    async def receive(self) -> Message:
        await self.left.wait()
        return {"type": "http.disconnect"}

    @property
    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body"]


class Frames:
    """Content that yields frames, then waits (a live stream) until closed; records its cleanup."""

    def __init__(self, frames: list[bytes], then_wait: bool = False) -> None:
        self.frames = frames
        self.then_wait = then_wait
        self.started = False
        self.closed = False

    async def __call__(self) -> AsyncIterator[bytes]:
        self.started = True
        try:
            for frame in self.frames:
                yield frame
            if self.then_wait:
                await asyncio.sleep(3600)
        finally:
            self.closed = True


def test_frames_in_order_then_the_end() -> None:
    client, content = Client(), Frames([b"id: 1\n\n", b"id: 2\n\n"])
    asyncio.run(StreamResponse(content(), ping_s=3600)(SCOPE, client.receive, client.send))
    start = client.sent[0]
    assert start["type"] == "http.response.start" and start["status"] == 200
    assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
    assert (b"cache-control", b"no-store") in start["headers"]
    assert client.bodies == [b"id: 1\n\n", b"id: 2\n\n", b""]
    assert client.sent[-1]["more_body"] is False and content.closed


def test_a_quiet_stream_gets_keep_alives_and_a_client_that_leaves_ends_it() -> None:
    async def main() -> tuple[Client, Frames]:
        client, content = Client(), Frames([b"id: 1\n\n"], then_wait=True)
        stream = asyncio.create_task(StreamResponse(content(), ping_s=0.05)(SCOPE, client.receive, client.send))
        while client.bodies.count(PING_FRAME) < 2:
            await asyncio.sleep(0.01)
        client.left.set()
        await asyncio.wait_for(stream, 5)  # ends without raising: a client leaving is a normal end
        return client, content

    client, content = asyncio.run(main())
    assert client.bodies[0] == b"id: 1\n\n" and set(client.bodies[1:]) == {PING_FRAME}
    assert content.closed  # the content's cleanup (the hub's viewer count) ran at once


def test_a_send_to_a_gone_client_ends_the_stream_and_closes_the_content() -> None:
    async def main() -> Frames:
        client, content = Client(), Frames([b"id: 1\n\n", b"id: 2\n\n"], then_wait=True)

        async def send(message: Message) -> None:
            await client.send(message)
            client.broken = len(client.bodies) >= 1  # the first frame gets through, then the socket is gone

        await asyncio.wait_for(StreamResponse(content(), ping_s=3600)(SCOPE, client.receive, send), 5)
        return content

    assert asyncio.run(main()).closed


def test_head_sends_headers_only_and_never_starts_the_content() -> None:
    client, content = Client(), Frames([b"id: 1\n\n"], then_wait=True)
    asyncio.run(StreamResponse(content(), ping_s=3600)({**SCOPE, "method": "HEAD"}, client.receive, client.send))
    assert [m["type"] for m in client.sent] == ["http.response.start", "http.response.body"]
    assert client.bodies == [b""] and not content.started
