"""A generation as an OpenAI Responses object and event stream (issue 15).

The response id is the generation id. Its object is built from the record (``response_object``); its stream from
the generation's stored events by ``ResponseEvents``, which numbers every Responses event it makes. The numbering
is a pure function of the stored events, so ``starting_after=N`` replays the generation from its first event,
skips the Responses events up to N and follows live: exactly the rest, for as long as the generation is retained
(OpenAI's background mode stops at 5 minutes, openai-python #2828).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from reasonq.shared.events import StoredEvent
from reasonq.shared.schemas import GenerationPublic

# The SDK's ResponseError codes closest to a provider's failures (its Literal allows no other).
_ERROR_CODES = {429: "rate_limit_exceeded", 400: "invalid_prompt"}
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


@dataclass(frozen=True)
class Shell:
    """What a response object says whatever its state: the request as created."""

    id: str
    created_at: float
    model: str
    options: dict[str, Any]  # the generation's request, less its messages
    params: dict[str, Any]  # what only the Responses request said (background, instructions, store, effort)

    @classmethod
    def of(cls, record: GenerationPublic) -> Shell:
        return cls(record.id, record.created_at, record.model, record.request_options, record.surface or {})


def _usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if not usage:
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    details = usage.get("completion_tokens_details") or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": int(cached), "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": int(details.get("reasoning_tokens") or 0)},
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
    }


def _error(error: dict[str, Any] | None) -> dict[str, Any]:
    error = error or {}
    code = _ERROR_CODES.get(error.get("status_code"), "server_error")  # type: ignore[arg-type]
    return {"code": code, "message": str(error.get("message", "the generation failed"))}


def outcome(status: str, finish_reason: str | None) -> tuple[str, dict[str, str] | None]:
    """A generation's status as a response's, with ``incomplete_details`` when the answer was cut short."""
    if status == "running":
        return "in_progress", None
    if status == "completed" and finish_reason in _INCOMPLETE:
        return "incomplete", {"reason": _INCOMPLETE[finish_reason]}
    return status, None


def response_object(
    shell: Shell,
    status: str,
    output: list[dict[str, Any]],
    *,
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    incomplete: dict[str, str] | None = None,
    completed_at: float | None = None,
) -> dict[str, Any]:
    """The Responses object (OpenAI's ``Response``) of a generation in ``status`` with ``output``."""
    options, params = shell.options, shell.params
    choice = options.get("tool_choice")
    if isinstance(choice, dict):
        choice = {"type": "function", "name": choice["function"]["name"]}
    tools = [{"type": "function", **t["function"]} for t in options.get("tools") or ()]
    for tool in tools:
        tool.setdefault("parameters", None)
        tool.setdefault("strict", None)
    return {
        "id": shell.id,
        "object": "response",
        "created_at": int(shell.created_at),
        "status": status,
        "background": bool(params.get("background", False)),
        "model": shell.model,
        "instructions": params.get("instructions"),
        "max_output_tokens": options.get("max_tokens"),
        "metadata": options.get("metadata") or {},
        "output": output,
        "parallel_tool_calls": options.get("parallel_tool_calls", True),
        "temperature": options.get("temperature"),
        "top_p": options.get("top_p"),
        "tool_choice": choice or "auto",
        "tools": tools,
        "reasoning": {"effort": params.get("reasoning_effort") or options.get("reasoning_effort"), "summary": None},
        "store": bool(params.get("store", True)),
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "usage": _usage(usage),
        "error": _error(error) if status == "failed" else None,
        "incomplete_details": incomplete,
        "completed_at": int(completed_at) if completed_at is not None and status == "completed" else None,
    }


def _suffix(generation_id: str) -> str:
    return generation_id.removeprefix("gen_")


def reasoning_item(generation_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "reasoning_text", "text": text}]
    return {
        "id": f"rs_{_suffix(generation_id)}",
        "type": "reasoning",
        "summary": [],
        "content": content,
        "status": status,
    }


def message_item(generation_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {
        "id": f"msg_{_suffix(generation_id)}",
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def call_item(generation_id: str, index: int, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": f"fc_{_suffix(generation_id)}_{index}",
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def record_output(record: GenerationPublic) -> list[dict[str, Any]]:
    """A record's output items: its reasoning, its answer, its tool calls (what the record holds now)."""
    item_status = {"running": "in_progress", "queued": "in_progress", "completed": "completed"}.get(
        record.status, "incomplete"
    )
    out = [reasoning_item(record.id, record.reasoning, item_status)] if record.reasoning else []
    if record.content or (record.status == "completed" and not record.tool_calls):
        out.append(message_item(record.id, record.content, item_status))
    for index, call in enumerate(record.tool_calls or ()):
        function = call.get("function") or {}
        out.append(
            call_item(
                record.id,
                index,
                call.get("id", ""),
                function.get("name", ""),
                function.get("arguments", ""),
                "completed",
            )
        )
    return out


def record_response(record: GenerationPublic) -> dict[str, Any]:
    """The response object of a generation as its record stands."""
    status, incomplete = outcome(record.status, record.finish_reason)
    return response_object(
        Shell.of(record),
        status,
        record_output(record),
        usage=record.usage,
        error=record.error,
        incomplete=incomplete,
        completed_at=record.finished_at,
    )


@dataclass
class _Item:
    """An output item being streamed: its place, kind, text so far, and (for a call) id and name."""

    output_index: int
    kind: str  # "reasoning", "message", or "call:<index>"
    text: str = ""
    call_id: str = ""
    name: str = ""


@dataclass
class ResponseEvents:
    """The Responses events of one generation, numbered from 0, made from its stored events in order."""

    shell: Shell
    seq: int = -1
    items: list[_Item] = field(default_factory=list)
    open: _Item | None = None
    in_progress: bool = False

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        return {"type": kind, "sequence_number": self.seq, **fields}

    def start(self) -> list[dict[str, Any]]:
        """``response.created``, as the response was when created."""
        return [self._event("response.created", response=response_object(self.shell, "queued", []))]

    def _item_json(self, item: _Item, status: str) -> dict[str, Any]:
        gid = self.shell.id
        if item.kind == "reasoning":
            return reasoning_item(gid, item.text, status)
        if item.kind == "message":
            return message_item(gid, item.text, status)
        return call_item(gid, int(item.kind[5:]), item.call_id, item.name, item.text, status)

    def _close(self, status: str = "completed") -> list[dict[str, Any]]:
        item, self.open = self.open, None
        if item is None:
            return []
        where = {"item_id": self._item_json(item, status)["id"], "output_index": item.output_index}
        out: list[dict[str, Any]] = []
        part: dict[str, Any]
        if item.kind == "reasoning":
            part = {"type": "reasoning_text", "text": item.text}
            out += [
                self._event("response.reasoning_text.done", **where, content_index=0, text=item.text),
                self._event("response.content_part.done", **where, content_index=0, part=part),
            ]
        elif item.kind == "message":
            part = {"type": "output_text", "text": item.text, "annotations": [], "logprobs": []}
            out += [
                self._event("response.output_text.done", **where, content_index=0, text=item.text, logprobs=[]),
                self._event("response.content_part.done", **where, content_index=0, part=part),
            ]
        else:
            out.append(self._event("response.function_call_arguments.done", **where, arguments=item.text))
        out.append(
            self._event("response.output_item.done", output_index=item.output_index, item=self._item_json(item, status))
        )
        return out

    def _open(self, kind: str, call_id: str = "", name: str = "") -> list[dict[str, Any]]:
        out = self._close()
        item = self.open = _Item(len(self.items), kind, call_id=call_id, name=name)
        self.items.append(item)
        added = self._item_json(item, "in_progress")
        if kind == "reasoning":
            added["content"] = []
        elif kind == "message":
            added["content"] = []
        out.append(self._event("response.output_item.added", output_index=item.output_index, item=added))
        where = {"item_id": added["id"], "output_index": item.output_index, "content_index": 0}
        if kind == "reasoning":
            out.append(self._event("response.content_part.added", **where, part={"type": "reasoning_text", "text": ""}))
        elif kind == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out.append(self._event("response.content_part.added", **where, part=part))
        return out

    def _delta(self, kind: str, delta: str) -> list[dict[str, Any]]:
        out = self._open(kind) if self.open is None or self.open.kind != kind else []
        item = self.open
        assert item is not None
        item.text += delta
        where = {"item_id": self._item_json(item, "in_progress")["id"], "output_index": item.output_index}
        if kind == "reasoning":
            return [*out, self._event("response.reasoning_text.delta", **where, content_index=0, delta=delta)]
        if kind == "message":
            event = self._event("response.output_text.delta", **where, content_index=0, delta=delta, logprobs=[])
            return [*out, event]
        return [*out, self._event("response.function_call_arguments.delta", **where, delta=delta)]

    def feed(self, event: StoredEvent) -> tuple[list[dict[str, Any]], bool]:
        """The Responses events of one stored event, and whether the stream ends with it."""
        data = orjson.loads(event.data)
        if event.type == "status":
            if data["status"] == "running" and not self.in_progress:
                self.in_progress = True
                return [
                    self._event("response.in_progress", response=response_object(self.shell, "in_progress", []))
                ], False
            return [], False
        if event.type in ("reasoning", "content"):
            return self._delta("reasoning" if event.type == "reasoning" else "message", data["delta"]), False
        if event.type == "tool_call":
            kind = f"call:{data['index']}"
            out = self._open(kind, data.get("id") or "", data.get("name") or "") if "id" in data else []
            return out + (self._delta(kind, data["arguments"]) if data.get("arguments") else []), False
        if event.type == "restart" and self.items:
            # Text already sent cannot be taken back in this format: end, and point at the stream that can.
            message = (
                f"response {self.shell.id} restarted (attempt {data['attempt']}, {data['reason']}); read it "
                f"again with GET /v1/responses/{self.shell.id} or follow /v1/generations/{self.shell.id}/events"
            )
            return [self._event("error", code="generation_restarted", message=message, param=None)], True
        if event.type == "done":
            return self._done(data), True
        return [], False

    def _done(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        status, incomplete = outcome(data["status"], data.get("finish_reason"))
        out = self._close("completed" if status == "completed" else "incomplete")
        item_status = "completed" if status == "completed" else "incomplete"
        output = [self._item_json(item, item_status) for item in self.items]
        final = response_object(
            self.shell, status, output, usage=data.get("usage"), error=data.get("error"), incomplete=incomplete
        )
        if status == "completed":
            final["completed_at"] = None  # the record's time is not in the event: retrieve() has it
        kind = {"completed": "response.completed", "failed": "response.failed"}.get(status, "response.incomplete")
        out.append(self._event(kind, response=final))
        return out
