"""The event schema and its one codec, used by the worker (encode) and the API and clients (decode, SSE framing).

An event is stored in the generation's Redis Stream as entry ``N-0`` with two fields: ``t`` (its type) and ``d``
(its JSON data, without the type). The SSE frame is ``id: N``, ``event: t``, ``data: d``. JSON is produced by orjson
in one line (it escapes newlines), so one ``data:`` line always carries the whole object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

Status = Literal["queued", "running", "completed", "failed", "cancelled"]
TERMINAL_STATUSES: Final = frozenset({"completed", "failed", "cancelled"})

TYPE_FIELD: Final = b"t"
DATA_FIELD: Final = b"d"


class _EventBase(BaseModel):
    def payload(self) -> dict[str, Any]:
        """The event's data as stored and sent (the type travels separately)."""
        return self.model_dump(exclude={"type"})


class StatusEvent(_EventBase):
    """The generation changed state; while waiting to retry the provider, ``retry_in_s`` and ``reason`` say why."""

    type: Literal["status"] = "status"
    status: Status
    attempt: int
    retry_in_s: float | None = None
    reason: str | None = None

    def payload(self) -> dict[str, Any]:
        """Status data carries the retry fields only when set."""
        return self.model_dump(exclude={"type"}, exclude_none=True)


class RestartEvent(_EventBase):
    """A new attempt starts the text again: discard the reasoning and content received so far."""

    type: Literal["restart"] = "restart"
    attempt: int
    reason: str


class ReasoningEvent(_EventBase):
    """More of the reasoning trace."""

    type: Literal["reasoning"] = "reasoning"
    delta: str


class ContentEvent(_EventBase):
    """More of the answer."""

    type: Literal["content"] = "content"
    delta: str


class ToolCallEvent(_EventBase):
    """More of a tool call of the answer: the first event of call ``index`` carries its ``id`` and function ``name``,
    and every event the next fragment of its JSON ``arguments`` string (join them per index)."""

    type: Literal["tool_call"] = "tool_call"
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""

    def payload(self) -> dict[str, Any]:
        """A fragment carries only index and arguments."""
        return self.model_dump(exclude={"type"}, exclude_none=True)


class DoneEvent(_EventBase):
    """The last event of every generation."""

    type: Literal["done"] = "done"
    status: Status
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    system_fingerprint: str | None = None  # the provider's, when it sent one

    def payload(self) -> dict[str, Any]:
        """The four fields always; ``system_fingerprint`` when there is one."""
        data = self.model_dump(exclude={"type"})
        if data["system_fingerprint"] is None:
            del data["system_fingerprint"]
        return data


AnyEvent = StatusEvent | RestartEvent | ReasoningEvent | ContentEvent | ToolCallEvent | DoneEvent
Event = Annotated[AnyEvent, Field(discriminator="type")]
_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as it sits in the stream: its id, type and encoded data."""

    seq: int
    type: str
    data: bytes


def encode_event(event: AnyEvent) -> tuple[str, bytes]:
    """Return the ``(type, data)`` pair that is stored for ``event``."""
    return event.type, orjson.dumps(event.payload())


@dataclass(frozen=True, slots=True)
class DeltaKind:
    """A kind of streamed text and how it accumulates: consecutive deltas of one kind are joined into one event
    of type ``name``, and the joined text extends the record's running text in ``text_slot`` (1 the reasoning,
    2 the content, 0 neither: the event alone carries it, 3 a tool call's: the record notes that the attempt began
    a tool call, which a continued attempt cannot take over). ``index`` is the tool call's, for that kind."""

    name: str
    text_slot: Literal[0, 1, 2, 3]
    index: int | None = None


REASONING: Final = DeltaKind("reasoning", 1)
CONTENT: Final = DeltaKind("content", 2)
TOOL_SLOT: Final = 3
_TOOL_KINDS: dict[int, DeltaKind] = {}
# What a writer sends the append scripts per event: (type, data, text_slot, text).
EventArgs = tuple[str, bytes, int, str]


def tool_call_kind(index: int) -> DeltaKind:
    """The delta kind of tool call ``index``'s argument fragments (one object per index: writers join by identity)."""
    kind = _TOOL_KINDS.get(index)
    if kind is None:
        kind = _TOOL_KINDS[index] = DeltaKind("tool_call", TOOL_SLOT, index)
    return kind


def delta_args(kind: DeltaKind, text: str) -> EventArgs:
    """The append-script arguments of one joined delta."""
    if kind.index is not None:
        return kind.name, orjson.dumps({"index": kind.index, "arguments": text}), kind.text_slot, ""
    return kind.name, encode_delta(text), kind.text_slot, text


def tool_call_args(event: ToolCallEvent) -> EventArgs:
    """The append-script arguments of a tool call's first event (it marks the record like its fragments)."""
    event_type, data = encode_event(event)
    return event_type, data, TOOL_SLOT, ""


def event_args(event: AnyEvent) -> EventArgs:
    """The append-script arguments of a non-delta event (it extends no running text)."""
    event_type, data = encode_event(event)
    return event_type, data, 0, ""


def encode_delta(text: str) -> bytes:
    """Data of a ``reasoning`` or ``content`` event; the hot-path twin of ``encode_event(ReasoningEvent(...))``."""
    return orjson.dumps({"delta": text})


def decode_event(event_type: str, data: bytes | str) -> Event | None:
    """Decode one event; ``None`` for a type this version does not know (clients must ignore those)."""
    payload = orjson.loads(data)
    if not isinstance(payload, dict):
        raise ValueError(f"event data must be a JSON object, got {type(payload).__name__}")
    try:
        return _EVENT_ADAPTER.validate_python({**payload, "type": event_type})
    except ValidationError as e:
        if any(err["type"] == "union_tag_invalid" for err in e.errors()):
            return None
        raise


def parse_entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> StoredEvent:
    """Turn one XRANGE/XREAD entry into a ``StoredEvent``."""
    raw_id = entry_id if isinstance(entry_id, bytes) else entry_id.encode()
    return StoredEvent(
        seq=int(raw_id.partition(b"-")[0]),
        type=fields[TYPE_FIELD].decode(),
        data=fields[DATA_FIELD],
    )


def sse_frame(data: bytes, event: str | None = None, event_id: int | None = None) -> bytes:
    """One Server-Sent Events frame (``data`` is one line: JSON, or ``[DONE]``). Every SSE frame reasonq sends
    is built here: native events, batch progress, OpenAI chunks."""
    if event is None:
        return b"data: %s\n\n" % data
    if event_id is None:
        return b"event: %s\ndata: %s\n\n" % (event.encode(), data)
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, event.encode(), data)


def to_sse(event: StoredEvent) -> bytes:
    """The SSE frame of one event, ready for the socket (computed once per event, shared by every viewer)."""
    return sse_frame(event.data, event.type, event.seq)
