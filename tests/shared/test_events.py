"""The event codec: one encode/decode pair, one SSE framing."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reasonq.shared.events import (
    ContentEvent,
    DoneEvent,
    ReasoningEvent,
    StatusEvent,
    StoredEvent,
    decode_event,
    encode_delta,
    encode_event,
    parse_entry,
    to_sse,
)


@pytest.mark.parametrize(
    "event",
    [
        StatusEvent(status="running", attempt=2),
        ReasoningEvent(delta="think"),
        ContentEvent(delta="answer\nwith newline"),
        DoneEvent(status="failed", error={"type": "provider_timeout", "message": "x"}),
    ],
)
def test_round_trip(event: StatusEvent | ReasoningEvent | ContentEvent | DoneEvent) -> None:
    event_type, data = encode_event(event)
    assert not orjson.loads(data).get("type")  # the type travels on the event line
    assert decode_event(event_type, data) == event


def test_done_always_carries_all_fields() -> None:
    _, data = encode_event(DoneEvent(status="completed", finish_reason="stop"))
    assert orjson.loads(data) == {"status": "completed", "finish_reason": "stop", "usage": None, "error": None}


def test_unknown_types_decode_to_none() -> None:
    assert decode_event("telemetry", b'{"attempt": 2}') is None


def test_status_carries_retry_fields_only_when_set() -> None:
    assert encode_event(StatusEvent(status="running", attempt=1))[1] == b'{"status":"running","attempt":1}'
    _, data = encode_event(StatusEvent(status="running", attempt=1, retry_in_s=1.5, reason="HTTP 429"))
    assert orjson.loads(data) == {"status": "running", "attempt": 1, "retry_in_s": 1.5, "reason": "HTTP 429"}


@given(st.text())
def test_delta_encoding_matches_the_model_and_is_one_line(text: str) -> None:
    data = encode_delta(text)
    assert b"\n" not in data and b"\r" not in data
    assert decode_event("content", data) == ContentEvent(delta=text)


def test_sse_frame_and_entry_parsing() -> None:
    event = parse_entry(b"12-0", {b"t": b"reasoning", b"d": b'{"delta":"x"}'})
    assert event == StoredEvent(12, "reasoning", b'{"delta":"x"}')
    assert to_sse(event) == b'id: 12\nevent: reasoning\ndata: {"delta":"x"}\n\n'
