"""Request limits enforced before any route runs: body size (413), a body that arrives too slowly (408), a body
that is not UTF-8 (422; JSON is UTF-8) and JSON nesting depth (422). Pure ASGI, so streaming responses pass
through untouched."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reasonq.shared.settings import Settings

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A JSON string literal (the unrolled form runs at C speed even on a 100 MB batch).
_STRING_RE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


# Python refuses to convert an integer of more than this many digits (CVE-2020-10735); FastAPI then answers a bare
# "400 There was an error parsing the body".
INT_MAX_DIGITS = sys.get_int_max_str_digits() or 4300
_LONG_DIGITS_RE = re.compile(rb"\d{%d}" % (INT_MAX_DIGITS + 1))
_LONG_NUMBER_FIELD_RE = re.compile(rb'"((?:[^"\\]|\\.){1,200})"\s*:\s*-?\d{%d}' % (INT_MAX_DIGITS + 1))


def oversized_number(body: bytes) -> str | None:
    """The name of the field that holds a JSON number too long to read (``""`` when it has no name), ``None`` when
    there is none. Digits inside strings are text and do not count."""
    if not _LONG_DIGITS_RE.search(body) or not _LONG_DIGITS_RE.search(_STRING_RE.sub(b'""', body)):
        return None  # the first scan copies nothing: it is all an ordinary body costs
    named = _LONG_NUMBER_FIELD_RE.search(body)
    return named.group(1).decode(errors="replace") if named else ""


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether JSON (or JSON lines) in ``body`` nests deeper than ``limit`` (brackets inside strings ignored)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for char in _STRING_RE.sub(b"", body).translate(None, _NOT_BRACKETS):
        if char in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _error(status: int, kind: str, message: str) -> tuple[dict[str, Any], bytes]:
    body = orjson.dumps({"error": {"type": kind, "message": message}})
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-content-type-options", b"nosniff"),
        ],
    }
    return start, body


_FORM = b"application/x-www-form-urlencoded"


# Bodies that may be as large as a batch: the batch itself, or its input file uploaded first.
_UPLOADS = frozenset({"/v1/batches", "/v1/files"})
# Durable Streams bodies are the stream's bytes (binary, any type): only their size is checked here; the protocol's
# own rules (JSON mode's validation) are the route's (issue 17).
_RAW_PREFIX = "/v1/stream/"


def _form_as_json(scope: Scope) -> Scope:
    """A body sent as curl's ``-d`` default type is read as JSON, what every route here takes (issue 11: the
    README's own ``curl -d`` examples answered "Input should be a valid dictionary"). No route takes forms."""
    headers = scope["headers"]
    if not any(name == b"content-type" and value.split(b";")[0].strip().lower() == _FORM for name, value in headers):
        return scope
    rewritten = [(n, b"application/json" if n == b"content-type" else v) for n, v in headers]
    return {**scope, "headers": rewritten}


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then the connection's own messages."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class RequestLimitMiddleware:
    """Reads a request body up to its limit within ``request_read_timeout_s``, checks its JSON depth, and hands
    it to the app (which reads it from memory)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        settings = self.settings
        raw = scope["path"].startswith(_RAW_PREFIX)
        if raw:
            limit = settings.ds_max_append_bytes
        else:
            limit = settings.max_batch_body_bytes if scope["path"] in _UPLOADS else settings.max_body_bytes
        too_large = f"body: larger than {limit} bytes"
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                await self._reject(send, 413, "too_large", too_large)
                return
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + settings.request_read_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                await self._reject(send, 408, "timeout", "body: not received in time")
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._reject(send, 413, "too_large", too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if raw:
            await self.app(scope, _replay(body, receive), send)
            return
        try:
            body.decode()
        except UnicodeDecodeError as e:
            await self._reject(send, 422, "invalid_request", f"body: not valid UTF-8 (byte {e.start})")
            return
        if json_depth_exceeds(body, settings.max_json_depth):
            await self._reject(
                send, 422, "invalid_request", f"body: JSON nested deeper than {settings.max_json_depth} levels"
            )
            return
        field = oversized_number(body)
        if field is not None:
            where = f"body {field}" if field else "body"
            await self._reject(send, 422, "invalid_request", f"{where}: a number longer than {INT_MAX_DIGITS} digits")
            return
        if scope["path"] not in _UPLOADS:
            scope = _form_as_json(scope)
        await self.app(scope, _replay(body, receive), send)

    @staticmethod
    async def _reject(send: Send, status: int, kind: str, message: str) -> None:
        start, body = _error(status, kind, message)
        start["headers"].append((b"connection", b"close"))
        await send(start)
        await send({"type": "http.response.body", "body": body})
