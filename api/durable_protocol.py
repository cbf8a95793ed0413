"""The Durable Streams protocol's wire rules (issue 17; ``PROTOCOL.md`` of durable-streams/durable-streams): offsets,
header values, JSON mode's messages, cursors, the SSE encoding and the response headers. Pure functions: the
routes (``api/routes/durable.py``) and live reads (``api/durable_reads.py``) are built on them.
"""

from __future__ import annotations

import base64
import json
import random
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import orjson

from reasonq.shared.events import StoredEvent
from reasonq.shared.store.durable import Producer

OFFSET_WIDTH: Final = 16
# An offset is "<entry>_<position in it>", each zero-padded so that offsets sort as strings (section 8). Every offset
# this server issues is at an entry's end (position 0 of the next); the form is the reference server's, which the
# conformance suite writes out as the start of a stream ("0000000000000000_0000000000000000").
_OFFSET_RE = re.compile(rf"^(\d{{{OFFSET_WIDTH}}})_0{{{OFFSET_WIDTH}}}$")
_ZEROS: Final = "0" * OFFSET_WIDTH
_DECIMAL_RE = re.compile(r"^(0|[1-9][0-9]*)$")
MAX_SAFE_INTEGER: Final = 2**53 - 1
# Section 10.1: cursors count 20 s intervals from 2024-10-09T00:00:00Z.
CURSOR_EPOCH_S: Final = 1_728_432_000
CURSOR_INTERVAL_S: Final = 20
JSON_TYPE: Final = "application/json"

STREAM_HEADERS: Final = (
    "Stream-Next-Offset",
    "Stream-Cursor",
    "Stream-Up-To-Date",
    "Stream-Closed",
    "Stream-TTL",
    "Stream-Expires-At",
    "Stream-SSE-Data-Encoding",
    "Producer-Epoch",
    "Producer-Seq",
    "Producer-Expected-Seq",
    "Producer-Received-Seq",
    "ETag",
    "Location",
)
# Every response: browsers may read it cross-origin and see the protocol's headers; never sniffed.
BASE_HEADERS: Final = {
    "x-content-type-options": "nosniff",
    "cross-origin-resource-policy": "cross-origin",
    "access-control-allow-origin": "*",
    "access-control-expose-headers": ", ".join(STREAM_HEADERS),
}
PREFLIGHT_HEADERS: Final = {
    **BASE_HEADERS,
    "access-control-allow-methods": "GET, HEAD, PUT, POST, DELETE, OPTIONS",
    "access-control-allow-headers": "*, authorization, content-type, if-none-match, stream-seq, stream-ttl, "
    "stream-expires-at, stream-closed, stream-forked-from, stream-fork-offset, stream-fork-sub-offset, "
    "producer-id, producer-epoch, producer-seq",
    "access-control-max-age": "86400",
}


class ProtocolError(Exception):
    """A request the protocol answers with a 4xx (``status``), ``message`` in the caller's words."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def format_offset(entry: int) -> str:
    """The offset after entry ``entry`` (0: the start)."""
    return f"{entry:0{OFFSET_WIDTH}d}_{_ZEROS}"


Start = int | Literal["now"]


def parse_offset(values: list[str]) -> Start | None:
    """The ``offset`` query parameter: the entry to read after, ``"now"`` (the tail), or ``None`` when absent."""
    if not values:
        return None
    if len(values) > 1:
        raise ProtocolError(400, "offset: give it once")
    raw = values[0]
    if raw == "-1":
        return 0
    if raw == "now":
        return "now"
    match = _OFFSET_RE.match(raw)
    if match is None:
        raise ProtocolError(400, f"offset: {raw[:64]!r} is not an offset this server issued (nor -1 or now)")
    return int(match.group(1))


def issued_offset(raw: str) -> int | None:
    """The entry of an offset this server issued, or ``None``."""
    match = _OFFSET_RE.match(raw)
    return None if match is None else int(match.group(1))


def parse_fork_offset(raw: str) -> int:
    """``Stream-Fork-Offset``: an offset this server issued."""
    match = _OFFSET_RE.match(raw)
    if match is None:
        raise ProtocolError(400, f"Stream-Fork-Offset: {raw[:64]!r} is not an offset this server issued")
    return int(match.group(1))


def parse_count(raw: str, name: str, limit: int = MAX_SAFE_INTEGER) -> int:
    """A non-negative decimal integer header (no sign, leading zeros, point or exponent)."""
    raw = raw.strip()
    if not _DECIMAL_RE.match(raw) or int(raw) > limit:
        raise ProtocolError(400, f"{name}: {raw[:32]!r} is not a non-negative integer of at most {limit}")
    return int(raw)


def parse_expires_at(raw: str) -> tuple[int, str]:
    """``Stream-Expires-At`` (RFC 3339 with a time zone): its time in ms and its text as normalized."""
    text = raw.strip()
    try:
        when = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" else text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None or "T" not in text.upper():
        raise ProtocolError(400, f"Stream-Expires-At: {raw[:64]!r} is not an RFC 3339 time with a time zone")
    return int(when.timestamp() * 1000), when.isoformat().replace("+00:00", "Z")


def is_true(value: str | None) -> bool:
    """``Stream-Closed``: present only when exactly ``true`` (any case); other values are ignored (section 4.1)."""
    return value is not None and value.strip().lower() == "true"


def media_type(value: str | None) -> str | None:
    """A Content-Type compared as the protocol does: its media type, lower case, without parameters."""
    if value is None:
        return None
    media = value.split(";", 1)[0].strip().lower()
    return media or None


def parse_producer(producer_id: str | None, epoch: str | None, seq: str | None) -> Producer | None:
    """The idempotent producer headers: all three or none (section 5.2.1)."""
    given = [v is not None for v in (producer_id, epoch, seq)]
    if not any(given):
        return None
    if not all(given):
        raise ProtocolError(400, "Producer-Id, Producer-Epoch and Producer-Seq go together: give all three or none")
    assert producer_id is not None and epoch is not None and seq is not None
    if not producer_id.strip():
        raise ProtocolError(400, "Producer-Id: must not be empty")
    return Producer(producer_id, parse_count(epoch, "Producer-Epoch"), parse_count(seq, "Producer-Seq"))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_messages(body: bytes, *, allow_empty: bool) -> list[bytes]:
    """A JSON-mode body as its messages, each its exact text: a top-level array is flattened one level (section
    9.1.2), any other value is one message. ``[]`` is no message (valid on PUT only)."""
    try:
        text = body.decode()
        # Numbers are checked, not converted: a 5,000-digit integer is valid JSON (Python refuses to convert it).
        value = json.loads(text, parse_int=len, parse_float=len, parse_constant=_reject_constant)
    except RecursionError:
        raise ProtocolError(400, "body: JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(400, f"body: not valid JSON ({e})") from None
    if not isinstance(value, list):
        return [text.strip().encode()]
    if not value:
        if allow_empty:
            return []
        raise ProtocolError(400, "body: an empty JSON array appends nothing")
    return [part.encode() for part in _array_items(text)]


def _array_items(text: str) -> list[str]:
    """The element texts of a valid JSON array (string-aware split at depth 1)."""
    items: list[str] = []
    depth = 0
    in_string = escaped = False
    start = text.index("[") + 1
    for i in range(start, len(text)):
        char = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            if depth == 0:
                items.append(text[start:i].strip())
                break
            depth -= 1
        elif char == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    return items


def entry_messages(entry: bytes) -> list[bytes]:
    """The messages of one stored JSON-mode entry (its messages joined by commas)."""
    return [part.encode() for part in _array_items("[" + entry.decode() + "]")]


def next_cursor(client_cursor: str | None, now_s: float | None = None) -> str:
    """The cursor of a live response (section 10.1): the current interval, or past the client's when it has
    caught up, with jitter, so that cursors only move forward."""
    interval = int(((time.time() if now_s is None else now_s) - CURSOR_EPOCH_S) // CURSOR_INTERVAL_S)
    if client_cursor is not None and client_cursor.isdigit() and int(client_cursor) >= interval:
        return str(int(client_cursor) + random.randint(1, 3600 // CURSOR_INTERVAL_S))
    return str(interval)


@dataclass(frozen=True, slots=True)
class Encoding:
    """How a stream's bytes travel: JSON mode (arrays of messages), text, or base64 in SSE (binary types)."""

    content_type: str

    @property
    def json(self) -> bool:
        return self.content_type == JSON_TYPE

    @property
    def base64(self) -> bool:
        return not (self.json or self.content_type.startswith("text/"))

    def body(self, events: list[StoredEvent]) -> bytes:
        """A read's body: the entries' bytes, or in JSON mode one array of their messages."""
        if self.json:
            return b"[" + b",".join(e.data for e in events) + b"]"
        return b"".join(e.data for e in events)

    def sse_data(self, events: list[StoredEvent]) -> bytes:
        """One ``data`` event carrying ``events`` (none of them empty)."""
        payload = self.body(events)
        if self.base64:
            lines = [base64.b64encode(payload)]
        else:
            lines = re.split(rb"\r\n|\r|\n", payload)
        # "data:" then the line; a line that starts with a space keeps it behind the one space SSE strips.
        framed = ((b"data: " if line[:1] == b" " else b"data:") + line + b"\n" for line in lines)
        return b"event: data\n" + b"".join(framed) + b"\n"


def sse_control(next_offset: str, *, cursor: str | None, up_to_date: bool, closed: bool) -> bytes:
    """One ``control`` event (JSON, never encoded)."""
    control: dict[str, Any] = {"streamNextOffset": next_offset}
    if closed:
        control["streamClosed"] = True
        control["upToDate"] = True
    else:
        control["streamCursor"] = cursor
        if up_to_date:
            control["upToDate"] = True
    return b"event: control\ndata:" + orjson.dumps(control) + b"\n\n"
