"""The worker's SSE chunk reader: framing rules, errors in the stream, any split of the bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reasonq.worker.chunks import ProviderStreamError, iter_chunks

BODY = (
    b": keep-alive comment\r\n\r\n"
    b'data: {"choices":[{"delta":{"reasoning_content":"a"}}]}\r\n\r\n'
    b"event: message\n"
    b'data: {"choices":[{"delta":\n'
    b'data: {"content":"b"}}]}\n\n'
    b'data:{"choices":[],"usage":{"total_tokens":2}}\n\n'
    b"data: [DONE]\n\n"
    b'data: {"ignored": "after done"}\n\n'
)
EXPECTED = [
    {"choices": [{"delta": {"reasoning_content": "a"}}]},
    {"choices": [{"delta": {"content": "b"}}]},
    {"choices": [], "usage": {"total_tokens": 2}},
]


async def _pieces(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _read(parts: list[bytes]) -> list[dict]:  # type: ignore[type-arg]
    async def main() -> list[dict]:  # type: ignore[type-arg]
        return [c async for c in iter_chunks(_pieces(parts))]

    return asyncio.run(main())


@given(st.lists(st.integers(min_value=0, max_value=len(BODY)), max_size=12))
def test_any_split_of_the_body_gives_the_same_chunks(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(BODY)]
    assert _read([BODY[a:b] for a, b in zip(points, points[1:], strict=False)]) == EXPECTED


def test_a_body_without_a_final_blank_line() -> None:
    assert _read([b'data: {"choices":[]}']) == [{"choices": []}]


def test_an_error_object_in_the_stream_raises() -> None:
    with pytest.raises(ProviderStreamError, match="overloaded"):
        _read([b'data: {"error": {"message": "overloaded", "code": 529}}\n\n'])
