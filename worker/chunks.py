"""A lean reader of OpenAI-style ``text/event-stream`` chat-completion chunks.

The SDK's own stream builds a pydantic model for every chunk: about 77 µs of CPU per token on this machine,
against about 2 µs for splitting lines and ``orjson.loads`` (measured with 20,000 simulator tokens; see the
README's performance section). At hundreds of concurrent generations per worker process that difference is
the whole budget, so the worker lets the SDK build, authenticate and send the request and check its status,
then reads the body here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from reasonq.shared.errors import ReasonqError


class ProviderStreamError(ReasonqError):
    """The provider sent an error object inside the stream."""

    def __init__(self, payload: dict[str, Any]) -> None:
        error = payload.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        super().__init__(str(message or payload))
        self.payload = payload


async def iter_chunks(body: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    """Yield each JSON chunk of the stream until ``data: [DONE]`` (or the end of the body).

    Follows the SSE framing rules that matter here: ``\\n`` or ``\\r\\n`` line ends, several ``data:`` lines
    joined by newlines, comments (``:``) and other fields ignored, a blank line ends an event.
    """
    pending = b""
    data: list[bytes] = []
    async for piece in body:
        pending += piece
        if b"\n" not in piece:
            continue
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if line.startswith(b"data:"):
                data.append(line[6:] if line.startswith(b"data: ") else line[5:])
            elif not line and data:
                payload = data[0] if len(data) == 1 else b"\n".join(data)
                data = []
                if payload == b"[DONE]":
                    return
                chunk = orjson.loads(payload)
                if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
                    raise ProviderStreamError(chunk)
                yield chunk
    if pending.startswith(b"data:"):
        data.append(pending[5:].lstrip(b" "))
    if data and data != [b"[DONE]"]:
        chunk = orjson.loads(b"\n".join(data))
        if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
            raise ProviderStreamError(chunk)
        yield chunk
