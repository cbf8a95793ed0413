"""uvicorn's httptools protocol with a deadline for request headers, and a direct write for streamed bodies.

uvicorn closes idle keep-alive connections, but a connection that sends its headers a byte at a time (or
nothing at all) is kept forever (its protocol starts no timer in ``connection_made``): enough of those hold
every file descriptor the process has. Here each request's headers must be complete within
``request_read_timeout_s`` of the connection opening or the previous response ending.

Each request's scope also carries ``DIRECT_BODY`` (an ASGI server extension): a synchronous write of one chunk of
an already-started chunked response straight to the connection's transport, or ``False`` when it cannot go now.
The hub fans one event out to thousands of viewers; through ASGI each of them was a task woken, a coroutine chain
of some twenty frames resumed and a ``send`` through every middleware, for one ``transport.write`` at the bottom
(py-spy at 3,000 viewers: two thirds of the API's time around the third spent in the write, issue 14). With this,
the hub's reader writes a viewer's bytes itself while the viewer's task sleeps (``api/topics.py``).
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from reasonq.shared.settings import get_settings

# The scope["extensions"] key of a request's ``DirectBody``.
DIRECT_BODY = "reasonq.direct_body"


def chunked(body: bytes) -> bytes:
    """``body`` as one chunk of HTTP/1.1 chunked transfer coding (RFC 9112 section 7.1), as uvicorn frames a
    ``send``: framed once, written to every connection that takes it."""
    return b"%x\r\n%b\r\n" % (len(body), body)


class DirectBody:
    """Writes chunks of one request's streamed response to its connection, outside ASGI's ``send``.

    ``write`` only when nothing else is sending on the connection (the caller's ``send`` is not in progress): the
    bytes go into the transport's buffer in call order, as a ``send`` would put them.
    """

    __slots__ = ("_cycle",)

    def __init__(self, cycle: RequestResponseCycle) -> None:
        self._cycle = cycle

    def write(self, framed: bytes) -> bool:
        """Writes ``framed`` (from ``chunked``) now and says ``True``; ``False`` when it cannot go now: the
        response has not started or has ended, is not chunked, the client left, or the socket's buffer is past
        its high-water mark (a ``send`` would wait for it to drain)."""
        cycle = self._cycle
        if (
            cycle.flow.write_paused
            or cycle.disconnected
            or not cycle.response_started
            or cycle.response_complete
            or not cycle.chunked_encoding
            or cycle.transport.is_closing()
        ):
            return False
        try:
            cycle.transport.write(framed)
        except (OSError, RuntimeError):  # a transport closed under it: the caller's own send finds the client gone
            return False
        return True


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Closes a connection whose request headers do not arrive in time; offers each request a ``DirectBody``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout_s = get_settings().request_read_timeout_s
        self._header_timer: TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self._header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    # uvicorn annotates the parameter as BaseTransport; it is always a Transport here.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope and self.scope.get("method") != "HEAD":
            # The request's task was created, not yet run: it sees the extension from its first step.
            extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
            extensions[DIRECT_BODY] = DirectBody(cycle)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
