"""uvicorn's httptools protocol with a deadline for request headers.

uvicorn closes idle keep-alive connections, but a connection that sends its headers a byte at a time (or
nothing at all) is kept forever (its protocol starts no timer in ``connection_made``): enough of those hold
every file descriptor the process has. Here each request's headers must be complete within
``request_read_timeout_s`` of the connection opening or the previous response ending.
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from reasonq.shared.settings import get_settings


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Closes a connection whose request headers do not arrive in time."""

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

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
