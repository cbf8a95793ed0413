"""The simulator's HTTP surface: ``POST /v1/chat/completions`` (streaming or not) and ``GET /v1/models``.

It speaks the OpenAI chat-completions protocol the way DeepSeek's reasoner does: ``delta.reasoning_content``
chunks, then ``delta.content`` chunks, a finish chunk, a usage chunk (``choices == []``) when
``stream_options.include_usage`` is set, and ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from reasonq.simulator.script import Script, argument_pieces, build_script

logger = logging.getLogger(__name__)

MODEL_ID = "reasonq-sim"
# At an unlimited rate, this many chunks go to the socket in one write.
_UNPACED_BATCH = 32


class _Aborted(Exception):
    """Raised inside the stream to drop the connection on purpose (``sim:fail_after``)."""


class _AbortableStream(StreamingResponse):
    """A streaming response that can end by dropping the connection, as a broken upstream would."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except _Aborted:
            # Returning without the final body message makes the server close the connection mid-body.
            logger.info("simulator: dropped the connection on purpose (sim:fail_after)")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    kind = "rate_limit_error" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status, headers=headers)


class _ChunkEncoder:
    """Encodes the chunks of one response; the envelope is built once and each token is spliced in."""

    def __init__(self, model: str) -> None:
        head = {
            "id": "chatcmpl-sim-" + secrets.token_hex(8),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_reasonq_simulator",
        }
        self._head = orjson.dumps(head)[:-1] + b',"choices":'

    def chunk(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        tail = b',"usage":' + orjson.dumps(usage) if usage is not None else b""
        return b"data: " + self._head + orjson.dumps(choices) + tail + b"}\n\n"

    def token(self, field: str, text: str) -> bytes:
        other = "content" if field == "reasoning_content" else "reasoning_content"
        delta = {field: text, other: None}
        return self.chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def tool_call(self, call: dict[str, Any]) -> bytes:
        """One ``delta.tool_calls`` fragment (``call`` as OpenAI streams it: index, and id/type/name first)."""
        delta = {"content": None, "tool_calls": [call]}
        return self.chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])


def _tool_fragments(script: Script) -> list[dict[str, Any]]:
    """Each tool call as OpenAI streams it: the first fragment with id, type, name and empty arguments, then the
    arguments in pieces."""
    out: list[dict[str, Any]] = []
    for index, call in enumerate(script.tool_calls):
        head = {"name": call["function"]["name"], "arguments": ""}
        out.append({"index": index, "id": call["id"], "type": "function", "function": head})
        out += [{"index": index, "function": {"arguments": piece}} for piece in argument_pieces(call)]
    return out


class _Stats:
    """What the simulator saw, for tests: requests, completed streams, and streams the client dropped."""

    def __init__(self) -> None:
        self.requests = 0
        self.completed = 0
        self.active = 0  # streams open now
        self.max_active = 0  # the most open at once (tests of providers' concurrency limits)
        self.bodies: list[dict[str, Any]] = []  # the last request bodies received (tests of the exact request)
        self.disconnects: list[str] = []
        self.by_digest: dict[str, int] = {}
        self.emitted: dict[str, list[float]] = {}  # label -> emission time of each token (sim:record=1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "completed": self.completed,
            "active": self.active,
            "max_active": self.max_active,
            "bodies": self.bodies,
            "disconnects": self.disconnects[-1000:],
            "emitted": self.emitted,
        }


# The last bytes of every stream.
DONE_FRAME = b"data: [DONE]\n\n"


async def _stream(
    script: Script,
    model: str,
    rate: float,
    include_usage: bool,
    faulty: bool,
    stats: _Stats,
    label: str,
    leaked: str = "",
) -> AsyncIterator[bytes]:
    finished = False
    open_ = True
    stats.active += 1
    stats.max_active = max(stats.max_active, stats.active)
    stamps: list[float] | None = None
    if script.directives.record:
        while len(stats.emitted) >= 100:
            stats.emitted.pop(next(iter(stats.emitted)))
        stamps = stats.emitted[label] = []
    try:
        async for chunk in _chunks(script, model, rate, include_usage, faulty, stamps, leaked):
            if chunk.endswith(DONE_FRAME):
                # A client may end its stream, and give its provider slot to the next, once it has this: counted as
                # open until this loop resumed, a limit of 2 was once measured as 3 on a loaded CI machine.
                open_ = False
                stats.active -= 1
            yield chunk
        finished = True
        stats.completed += 1
    except _Aborted:
        finished = True  # dropped on purpose, not by the client
        raise
    finally:
        if open_:
            stats.active -= 1
        if not finished:
            stats.disconnects.append(label)  # the client closed the stream before the end


async def _chunks(
    script: Script,
    model: str,
    rate: float,
    include_usage: bool,
    faulty: bool,
    stamps: list[float] | None,
    leaked: str = "",
) -> AsyncIterator[bytes]:
    enc = _ChunkEncoder(model)
    d = script.directives
    first = {"role": "assistant", "content": None, "reasoning_content": ""}
    yield enc.chunk([{"index": 0, "delta": first, "logprobs": None, "finish_reason": None}])
    tokens: list[tuple[str, Any]] = [("reasoning_content", t) for t in script.reasoning]
    tokens += [("content", t) for t in script.content] + [("tool_call", c) for c in _tool_fragments(script)]
    start = time.monotonic()
    pending: list[bytes] = []
    for i, (field, text) in enumerate(tokens):
        if faulty and d.fail_after is not None and i == d.fail_after:
            if leaked:  # an error object inside the stream, as providers send mid-stream failures
                error = {"error": {"message": f"upstream failure{leaked}", "type": "server_error"}}
                yield b"".join(pending) + b"data: " + orjson.dumps(error) + b"\n\n"
                return
            if pending:
                yield b"".join(pending)
            raise _Aborted
        if d.stall_after is not None and i == d.stall_after and d.stall_s > 0:
            if pending:
                yield b"".join(pending)
                pending = []
            await asyncio.sleep(d.stall_s)
            start = time.monotonic() - (i / rate if rate > 0 else 0)
        pending.append(enc.tool_call(text) if field == "tool_call" else enc.token(field, text))
        if stamps is not None:
            stamps.append(time.time())
        if rate > 0:
            delay = start + (i + 1) / rate - time.monotonic()
            if delay > 0:
                yield b"".join(pending)
                pending = []
                await asyncio.sleep(delay)
        elif len(pending) >= _UNPACED_BATCH:
            yield b"".join(pending)
            pending = []
    final = {"index": 0, "delta": {"content": "", "reasoning_content": None}, "logprobs": None}
    pending.append(enc.chunk([{**final, "finish_reason": script.finish_reason}]))
    if include_usage:
        pending.append(enc.chunk([], usage=script.usage()))
    pending.append(DONE_FRAME)
    yield b"".join(pending)


def _completion(script: Script, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-sim-" + secrets.token_hex(8),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_reasonq_simulator",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "".join(script.content) if script.content or not script.tool_calls else None,
                    "reasoning_content": "".join(script.reasoning),
                    **({"tool_calls": script.tool_calls} if script.tool_calls else {}),
                },
                "logprobs": None,
                "finish_reason": script.finish_reason,
            }
        ],
        "usage": script.usage(),
    }


def create_app(tokens_per_s: float) -> Starlette:
    """The simulator app; ``tokens_per_s`` is the default rate (0 = unlimited), a request may override it."""
    stats = _Stats()

    async def chat_completions(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, "request body is not valid JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error(400, "messages must be a non-empty list")
        script = build_script(body)
        d = script.directives
        stats.requests += 1
        stats.bodies = [*stats.bodies[-49:], body]
        seen = stats.by_digest[script.digest] = stats.by_digest.get(script.digest, 0) + 1
        faulty = d.fail_times is None or seen <= d.fail_times
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        leaked = f" (request made with key {bearer})" if d.leak_key else ""
        if faulty and d.status is not None and d.status >= 400:
            headers = {"Retry-After": "1"} if d.status == 429 else None
            return _error(d.status, f"simulated HTTP {d.status} (sim:status){leaked}", headers)
        model = str(body.get("model") or MODEL_ID)
        if not body.get("stream"):
            return JSONResponse(_completion(script, model))
        rate = d.tokens_per_s if d.tokens_per_s is not None else tokens_per_s
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        last_user: dict[str, Any] = next((m for m in reversed(body["messages"]) if m.get("role") == "user"), {})
        label = str(last_user.get("content", ""))[:200]
        return _AbortableStream(
            _stream(script, model, rate, include_usage, faulty, stats, label, leaked),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Reasonq-Simulator": "1"},
        )

    async def models(request: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "reasonq-sim"}]}
        )

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "simulator": True})

    async def sim_stats(request: Request) -> Response:
        return JSONResponse(stats.to_dict())

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
            Route("/sim/stats", sim_stats, methods=["GET"]),
        ]
    )
