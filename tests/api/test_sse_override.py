"""``api/sse.py`` overrides a private method of sse-starlette; this fails if the pinned range stops routing the
events through it (issue 18: a looser pin could let the measured CPU saving vanish silently)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.types import Message, Send

from reasonq.api.sse import StreamResponse


class _Counting(StreamResponse):
    calls = 0

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        type(self).calls += 1
        await super()._send_with_timeout(send, message)


def test_every_event_goes_through_the_overridden_send() -> None:
    async def events() -> AsyncIterator[bytes]:
        for i in range(5):
            yield b"id: %d\nevent: content\ndata: {}\n\n" % i

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        await asyncio.sleep(10)  # the client never disconnects during the test
        return {"type": "http.disconnect"}

    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "method": "GET",
        "path": "/",
        "headers": [],
    }
    asyncio.run(_Counting(events(), ping=3600)(scope, receive, send))
    bodies = [m["body"] for m in sent if m["type"] == "http.response.body" and m.get("body")]
    assert len(bodies) == 5 and bodies[0].startswith(b"id: 0")
    assert _Counting.calls >= 5  # each event passed through the override, not around it
