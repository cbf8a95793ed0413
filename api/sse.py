"""The SSE response of the events endpoint.

sse-starlette's ``EventSourceResponse`` wraps every send in an anyio cancel scope to apply ``send_timeout``;
reasonq sets no send timeout (a slow viewer is handled by the hub: it falls behind the ring and catches up from
Redis), so the scope is pure cost on the hottest path of the API: one per event per viewer. It was 8% of the
API's CPU with 1,000 viewers of one generation (py-spy, ``bench/fanout.py``).
"""

from __future__ import annotations

from typing import Any

from sse_starlette import EventSourceResponse
from starlette.types import Message, Send


class StreamResponse(EventSourceResponse):
    """``EventSourceResponse`` without the per-send cancel scope (there is no send timeout to apply)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("send_timeout", None)
        super().__init__(*args, **kwargs)

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        await send(message)
