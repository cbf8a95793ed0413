"""What one attempt has received from its provider so far: counts for usage, and its tool calls, on their way to
the event writer."""

from __future__ import annotations

import secrets
import time
from typing import Any

from reasonq.shared.events import REASONING, DeltaKind, ToolCallEvent
from reasonq.shared.stats import Stats
from reasonq.worker.writer import EventWriter


class Answer:
    """Counts deltas and gathers tool calls on their way to the writer (usage so far when a stream is cut short;
    the complete tool calls the record keeps).

    Args:
        writer: the attempt's writer.
        drop_reasoning: a continuation keeps the first attempt's reasoning trace: new reasoning is dropped.
        stats: the process's statistics.
        created_at: set while this generation's first token is still to come (time to first token).
    """

    def __init__(self, writer: EventWriter, drop_reasoning: bool, stats: Stats, created_at: float | None) -> None:
        self.writer = writer
        self.drop_reasoning = drop_reasoning
        self.reasoning = 0
        self.content = 0
        self._stats = stats
        self._created_at = created_at
        self._calls: dict[int, dict[str, Any]] = {}

    def _token(self) -> None:
        if self._created_at is not None:
            self._stats.observe("ttft", time.time() - self._created_at)
            self._created_at = None
        self._stats.tokens(1)

    def __call__(self, kind: DeltaKind, text: str) -> None:
        if kind is REASONING:
            if self.drop_reasoning:
                return
            self.reasoning += 1
        else:
            self.content += 1
            if kind.index is not None:
                self._calls[kind.index]["function"]["arguments"] += text
        self._token()
        self.writer.add(kind, text)

    def tool_call(self, index: int, call_id: str | None, name: str | None, arguments: str) -> None:
        """The first fragment of tool call ``index`` (a provider that sends no id gets one made here)."""
        call_id = call_id or f"call_{secrets.token_hex(12)}"
        function = {"name": name or "", "arguments": arguments}
        self._calls[index] = {"id": call_id, "type": "function", "function": function}
        self.content += 1
        self._token()
        self.writer.add_event(ToolCallEvent(index=index, id=call_id, name=name or "", arguments=arguments))

    @property
    def tokens(self) -> int:
        return self.reasoning + self.content

    @property
    def tool_calls(self) -> list[dict[str, Any]] | None:
        """The attempt's tool calls, complete, in index order (``None`` without any)."""
        return [self._calls[i] for i in sorted(self._calls)] or None

    def usage(self) -> dict[str, Any]:
        """Usage counted from the deltas received (about one per token), marked as an estimate, in OpenAI's shape
        (the SDK's ``CompletionUsage`` requires all three counts; the prompt's is not known here: 0)."""
        return {
            "prompt_tokens": 0,
            "completion_tokens": self.tokens,
            "total_tokens": self.tokens,
            "completion_tokens_details": {"reasoning_tokens": self.reasoning},
            "estimated": True,
        }
