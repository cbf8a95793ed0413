"""The chat-completions request one attempt sends to its provider, in the provider's own dialect.

Providers disagree on how reasoning goes back to them on assistant turns (``shared/providers.py``, ``Profile``):
DeepSeek's thinking mode answers 400 ("must be passed back") when an assistant turn of the current tool-call
exchange lacks ``reasoning_content``, and its older rule refused ``reasoning_content`` on earlier turns; vLLM reads
``message.reasoning`` (PR #27752) and silently drops ``reasoning_content`` (PR #33402); OpenAI takes neither.
Clients may send either name (``shared/schemas.Message`` keeps one); the translation happens here, once.
"""

from __future__ import annotations

from typing import Any

from reasonq.shared.providers import Profile
from reasonq.shared.schemas import AssistantMessage, GenerationCreate, Message

# Request fields passed to the provider when the client set them.
_OPTIONAL_PARAMS = ("max_tokens", "temperature", "top_p", "reasoning_effort", "stop", "seed", "parallel_tool_calls")
_MODEL_PARAMS = ("tools", "tool_choice")


def _current_exchange_start(messages: list[Message]) -> int:
    """Index of the first message after the last user turn: the assistant and tool turns of the exchange the
    model is in the middle of (DeepSeek: the tool-call sub-turns whose reasoning must come back)."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            return i + 1
    return 0


def upstream_messages(messages: list[Message], profile: Profile) -> list[dict[str, Any]]:
    """The conversation as ``profile``'s provider takes it (see the module's docstring)."""
    current = _current_exchange_start(messages)
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, AssistantMessage):
            out.append(message.model_dump(exclude_none=True))
            continue
        body = message.model_dump(exclude_none=True, exclude={"reasoning", "reasoning_content"})
        body.setdefault("content", None)  # tool calls and no text: null, as OpenAI sends it
        thinking = message.thinking
        if profile == "deepseek" and message.tool_calls and i >= current:
            body["reasoning_content"] = thinking or ""
        elif profile == "vllm" and thinking is not None:
            body["reasoning"] = thinking
        out.append(body)
    return out


def build_params(
    request: GenerationCreate, model: str, continue_content: str | None, profile: Profile = "generic"
) -> dict[str, Any]:
    """The chat-completions request for one attempt.

    With ``continue_content``, the partial answer is sent back as a trailing assistant message that the model
    continues: DeepSeek's chat prefix completion (``"prefix": true`` on the message) and vLLM's
    ``continue_final_message`` both read it.
    """
    params: dict[str, Any] = {
        name: getattr(request, name) for name in _OPTIONAL_PARAMS if getattr(request, name) is not None
    }
    for name in _MODEL_PARAMS:
        value = getattr(request, name)
        if value is not None:
            params[name] = (
                [v.model_dump(exclude_none=True) for v in value]
                if isinstance(value, list)
                else value
                if isinstance(value, str)
                else value.model_dump(exclude_none=True)
            )
    messages = upstream_messages(request.messages, profile)
    if continue_content:
        messages.append({"role": "assistant", "content": continue_content, "prefix": True})
        params["extra_body"] = {"continue_final_message": True, "add_generation_prompt": False}
    params |= {"model": model, "messages": messages, "stream": True, "stream_options": {"include_usage": True}}
    return params
