"""The SSE response of every streaming route: bytes from an async iterator, keep-alive comments, and the end of the
stream when the client leaves.

sse-starlette's ``EventSourceResponse`` runs each stream as an anyio task group of four tasks (the stream, the
pings, a disconnect listener, a shutdown listener) inside cancel scopes. With thousands of viewers joining at once
that machinery was the largest cost of a new viewer after the thread-pool dependencies: py-spy put a quarter of
the API's time in a 3,000-viewer join storm in anyio's task handles, cancel scopes and ``current_task`` (issue 14).
The streams here need less: the frames are encoded upstream (``api/topics.py``, one encoder per wire format), the
hub ends every stream on shutdown (``Hub.drain``, with a ``retry`` hint), and there is no send timeout (a slow
viewer falls behind the ring and catches up from Redis). So a stream is the request's own task plus one watcher,
which sends a keep-alive comment when the stream has been quiet for ``ping_s`` and ends the stream when the
client disconnects. Content that can take it (``Hub.follow``'s) is handed the server's direct write to the
connection (``api/protocol.py``): while a viewer is live the hub writes its chunks without waking its task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from reasonq.api.protocol import DIRECT_BODY

# A comment line: EventSource and every SSE parser ignore it; proxies see bytes and keep the connection open.
PING_FRAME = b": keep-alive\n\n"
_END = {"type": "http.response.body", "body": b"", "more_body": False}


class _Stream:
    __slots__ = ("expired", "gone", "sent_at")

    def __init__(self, now: float) -> None:
        self.sent_at = now
        self.gone = False  # the client left: the watcher cancelled the stream
        self.expired = False  # the response's time ran out: the watcher cancelled the stream, which then ends


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class StreamResponse(Response):
    """``text/event-stream`` from ``content`` (already encoded frames), with a keep-alive comment after ``ping_s``
    of silence.

    Args:
        content: the frames; closed (``aclose``) when the client leaves, so its cleanup runs at once.
        ping_s: seconds of silence before a keep-alive comment.
        max_s: when given, the response ends (whole) after this long, quiet or not; the watcher's timer, so the
            frames' path pays nothing for it.
        headers: extra response headers.
    """

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        ping_s: float = 15.0,
        max_s: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        # A Response (no body) for FastAPI, which takes any other return annotation for a response model.
        self._content = content
        self._ping_s = ping_s
        self._max_s = max_s
        self.status_code = 200
        self.background = None
        self.media_type = "text/event-stream"
        self.init_headers({"cache-control": "no-store", "connection": "keep-alive", "x-accel-buffering": "no"})
        self.headers.update(headers or {})
        self._start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(self._start)
            if scope.get("method") == "HEAD":  # headers only: a stream on HEAD would never end (sse-starlette #218)
                await send(_END)
                return
            await self._stream(scope, receive, send)
        finally:
            aclose = getattr(self._content, "aclose", None)
            if aclose is not None:
                await aclose()  # a no-op when the iterator ended; else its ``finally`` (a viewer leaving) runs now

    def _offer_direct(self, scope: Scope, state: _Stream, loop: asyncio.AbstractEventLoop) -> None:
        """Hand content that can take it (``Hub.follow``'s) the server's direct write to this connection
        (``api/protocol.py``), which also counts as sending for the keep-alive timer."""
        direct = getattr(self._content, "direct", None)
        body = scope.get("extensions", {}).get(DIRECT_BODY)
        if direct is None or body is None:
            return  # another server (tests' ASGI transport, plain uvicorn), or content of another kind

        def write(framed: bytes) -> bool:
            if not body.write(framed):
                return False
            state.sent_at = loop.time()
            return True

        direct(write)

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        state = _Stream(loop.time())
        self._offer_direct(scope, state, loop)
        watcher = loop.create_task(self._watch(receive, send, task, state))
        try:
            async for chunk in self._content:
                state.sent_at = loop.time()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            # Stopped first: a keep-alive held by a slow socket must not follow the end (uvicorn refuses it), and
            # after the end uvicorn answers every receive with a disconnect.
            await _stop(watcher)
            await send(_END)
        except asyncio.CancelledError:
            if not (state.gone or state.expired):
                raise
            task.uncancel()  # the watcher cancelled the stream because the client left or time ran out: a normal end
            if state.expired:
                with contextlib.suppress(OSError):
                    await send(_END)
        except OSError:
            pass  # an ASGI 2.4 server's send to a client that is gone
        finally:
            await _stop(watcher)

    async def _watch(self, receive: Receive, send: Send, stream: asyncio.Task[None], state: _Stream) -> None:
        loop = asyncio.get_running_loop()
        end_at = float("inf") if self._max_s is None else loop.time() + self._max_s
        while True:
            try:
                async with asyncio.timeout_at(min(state.sent_at + self._ping_s, end_at)):
                    message = await receive()
            except TimeoutError:
                if loop.time() >= end_at:
                    state.expired = True
                    stream.cancel()
                    return
                if loop.time() < state.sent_at + self._ping_s:
                    continue  # a frame went out meanwhile
                state.sent_at = loop.time()
                try:
                    await send({"type": "http.response.body", "body": PING_FRAME, "more_body": True})
                    continue
                except OSError:
                    message = {"type": "http.disconnect"}
            if message["type"] == "http.disconnect":
                state.gone = True
                stream.cancel()
                return
