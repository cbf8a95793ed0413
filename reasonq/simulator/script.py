"""What the simulator says: a deterministic reasoning trace and answer for a request, plus test directives.

Directives are ``sim:NAME=VALUE`` words anywhere in the messages, for tests and demos:

- ``sim:reasoning_tokens=N``, ``sim:content_tokens=N``: lengths of the two parts;
- ``sim:tokens_per_s=R``: token rate for this request (0 = as fast as possible);
- ``sim:fail_after=N``: drop the connection after N tokens (a broken upstream stream);
- ``sim:stall_after=N`` with ``sim:stall_s=S``: stop sending for S seconds after N tokens;
- ``sim:status=CODE``: answer this HTTP error (429 carries ``Retry-After``) instead of streaming;
- ``sim:echo=1``: the answer is the last user message itself, directives removed (to test what viewers do with
  arbitrary model output: Markdown, HTML, scripts);
- ``sim:record=1``: keep each token's emission time (``GET /sim/stats``), for latency benchmarks;
- ``sim:leak_key=1``: put the caller's bearer key into the error it answers (with ``sim:status``) or into an
  error object inside the stream (with ``sim:fail_after``), the way careless providers do, so tests can prove
  reasonq never passes it on;
- ``sim:token_chars=N``: every token is N characters long (its word repeated), for streams of many megabytes;
- ``sim:fail_times=K``: apply ``fail_after`` / ``status`` only to the first K requests for the same prompt;
- ``sim:tool_calls=N``: after the reasoning, call N tools (``finish_reason: "tool_calls"``, no answer text unless
  ``content_tokens`` is set); ``sim:tool=NAME`` picks the function (default: the request's ``tools`` in turn),
  ``sim:tool_args=JSON`` (no spaces) its arguments (default: made from the function's parameter schema). A request
  whose last message is a ``tool`` result is answered with text, so an agent loop ends.

A request whose last message is an assistant message with ``"prefix": true`` (DeepSeek's chat prefix
completion), or that sets ``continue_final_message`` (vLLM), continues that partial answer: the simulator
streams the rest of the same answer, with no new reasoning.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

_DIRECTIVE = re.compile(r"\bsim:([a-z_]+)=([0-9.]+)")
_TEXT_DIRECTIVE = re.compile(r"\bsim:(tool|tool_args)=(\S+)")

_WORDS = (
    "the of and to a in is it that for on with as this be are by we not at or from first then so next "
    "consider check assume suppose recall note since because therefore thus hence if when while where "
    "value answer question step case result term number sum part factor order rule claim idea approach "
    "simple direct small large equal greater less both each every some other same different possible "
    "compute count compare derive verify test reduce expand rewrite combine split estimate bound confirm "
    "carefully quickly exactly roughly again still already perhaps likely clearly indeed actually"
).split()


@dataclass(frozen=True, slots=True)
class Directives:
    """Test and demo controls parsed from the messages."""

    reasoning_tokens: int | None = None
    content_tokens: int | None = None
    tokens_per_s: float | None = None
    fail_after: int | None = None
    stall_after: int | None = None
    stall_s: float = 0.0
    status: int | None = None
    fail_times: int | None = None
    record: int = 0
    echo: int = 0
    leak_key: int = 0
    token_chars: int = 0
    tool_calls: int = 0
    tool: str | None = None
    tool_args: str | None = None


@dataclass(slots=True)
class Script:
    """The tokens the simulator will stream for one request."""

    reasoning: list[str]
    content: list[str]
    finish_reason: str
    prompt_tokens: int
    directives: Directives = field(default_factory=Directives)
    digest: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {id, type, function: {name, arguments}}

    @property
    def completion_tokens(self) -> int:
        """Reasoning plus answer tokens, as DeepSeek counts them."""
        return len(self.reasoning) + len(self.content) + sum(len(argument_pieces(c)) for c in self.tool_calls)

    def usage(self) -> dict[str, Any]:
        """The usage object of the final chunk."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "completion_tokens_details": {"reasoning_tokens": len(self.reasoning)},
        }


def parse_directives(messages: list[dict[str, Any]]) -> Directives:
    """Collect ``sim:NAME=VALUE`` directives from every message's text."""
    found: dict[str, str] = {}
    text: dict[str, str] = {}
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            found.update(_DIRECTIVE.findall(content))
            text.update(_TEXT_DIRECTIVE.findall(content))
    kwargs: dict[str, Any] = {}
    for name in (
        "reasoning_tokens",
        "content_tokens",
        "fail_after",
        "stall_after",
        "status",
        "fail_times",
        "record",
        "echo",
        "leak_key",
        "token_chars",
        "tool_calls",
    ):
        if name in found:
            kwargs[name] = int(float(found[name]))
    for name in ("tokens_per_s", "stall_s"):
        if name in found:
            kwargs[name] = float(found[name])
    return Directives(**kwargs, tool=text.get("tool"), tool_args=text.get("tool_args"))


def _schema_value(schema: Any, rng: random.Random) -> Any:
    """A deterministic value that fits a (simple) JSON Schema: enum's first, typed scalars, objects and arrays."""
    if not isinstance(schema, dict):
        return rng.choice(_WORDS)
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _schema_value(sub, rng) for name, sub in props.items()}
    if kind == "array":
        return [_schema_value(schema.get("items"), rng)]
    if kind == "integer":
        return rng.randint(1, 99)
    if kind == "number":
        return rng.randint(1, 999) / 10
    if kind == "boolean":
        return True
    return rng.choice(_WORDS)


def argument_pieces(call: dict[str, Any]) -> list[str]:
    """A tool call's arguments as the fragments the simulator streams (about one token each)."""
    arguments = str(call["function"]["arguments"])
    return [arguments[i : i + 6] for i in range(0, len(arguments), 6)]


def _tool_calls(body: dict[str, Any], directives: Directives, rng: random.Random, digest: str) -> list[dict[str, Any]]:
    tools = [t.get("function") or {} for t in body.get("tools") or () if isinstance(t, dict)]
    calls = []
    for i in range(directives.tool_calls):
        function = next((t for t in tools if t.get("name") == directives.tool), None) if directives.tool else None
        if function is None:
            function = tools[i % len(tools)] if tools else {"name": directives.tool or "simulated_tool"}
        name = directives.tool or str(function.get("name"))
        if directives.tool_args is not None:
            arguments = directives.tool_args
        else:
            arguments = orjson.dumps(_schema_value(function.get("parameters") or {"type": "object"}, rng)).decode()
        calls.append(
            {"id": f"call_{digest[:12]}_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}
        )
    return calls


def _words(rng: random.Random, n: int, opening: str) -> list[str]:
    tokens = [opening] if n > 0 else []
    while len(tokens) < n:
        word = rng.choice(_WORDS)
        if rng.random() < 0.08:
            word += rng.choice(".,;")
        tokens.append(" " + word)
    return tokens


def continuation_prefix(body: dict[str, Any]) -> str | None:
    """The partial answer a continuation request asks to continue, ``None`` for an ordinary request."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else None
    if (
        isinstance(last, dict)
        and last.get("role") == "assistant"
        and (last.get("prefix") or body.get("continue_final_message"))
    ):
        return str(last.get("content") or "")
    return None


def build_script(body: dict[str, Any]) -> Script:
    """The deterministic script for a chat-completions request body (same body and seed, same text).

    For a continuation, the script of the original request with the continued part (and the reasoning) cut off.
    """
    prefix = continuation_prefix(body)
    if prefix is not None:
        script = build_script({**body, "messages": body["messages"][:-1], "continue_final_message": None})
        done, skip = "", 0
        while skip < len(script.content) and len(done) < len(prefix):
            done += script.content[skip]
            skip += 1
        script.reasoning = []
        script.content = script.content[skip:] if done == prefix else script.content
        return script
    messages = body.get("messages") or []
    directives = parse_directives(messages)
    digest = hashlib.sha256(
        orjson.dumps([body.get("model"), messages, body.get("seed")], option=orjson.OPT_SORT_KEYS)
    ).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    n_reasoning = directives.reasoning_tokens if directives.reasoning_tokens is not None else rng.randint(40, 120)
    answers_tool = bool(messages) and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool"
    calls = _tool_calls(body, directives, rng, digest.hex()) if not answers_tool else []
    n_content = directives.content_tokens if directives.content_tokens is not None else rng.randint(20, 80)
    if calls and directives.content_tokens is None:
        n_content = 0
    reasoning = _words(rng, n_reasoning, "[simulated reasoning]")
    content = _words(rng, n_content, "[simulated answer]")
    if directives.token_chars > 0:
        n = directives.token_chars
        reasoning, content = ([(t * (n // len(t) + 1))[:n] for t in part] for part in (reasoning, content))
    if directives.echo:
        last_user: dict[str, Any] = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        text = _DIRECTIVE.sub("", str(last_user.get("content", ""))).strip()
        content = re.findall(r"\s*\S+", text)
    finish_reason = "tool_calls" if calls else "stop"
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    if isinstance(max_tokens, int) and max_tokens < len(reasoning) + len(content):
        finish_reason = "length"
        reasoning = reasoning[:max_tokens]
        content = content[: max_tokens - len(reasoning)]
    prompt_tokens = sum(len(str(m.get("content", "")).split()) + 4 for m in messages)
    if finish_reason == "length":
        calls = []
    return Script(reasoning, content, finish_reason, prompt_tokens, directives, digest.hex()[:16], calls)
