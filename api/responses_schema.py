"""The Responses API's request (``POST /v1/responses``, issue 15) and the chat conversation it becomes.

Input items map to chat turns: a ``message`` item to a turn of its role (its ``input_text`` / ``output_text`` parts
joined), ``function_call`` items to the tool calls of one assistant turn, ``function_call_output`` to a ``tool`` turn,
and a ``reasoning`` item's text to the next assistant turn's reasoning (which the provider's profile sends back the
way it wants it). ``instructions`` is a system turn in front. Function tools take the Responses shape
(``{"type": "function", "name", "parameters"}``) and go to the provider as chat tools.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictBool, Tag, field_validator

from reasonq.shared.schemas import (
    CHAT_OPTIONS,
    AssistantMessage,
    FunctionCall,
    FunctionDefinition,
    FunctionName,
    GenerationCreate,
    MaxTokens,
    Message,
    Metadata,
    ModelName,
    NamedFunction,
    NamedToolChoice,
    ReasoningEffort,
    SystemMessage,
    Temperature,
    Text,
    Tool,
    ToolCall,
    ToolCallId,
    ToolMessage,
    TopP,
    UserMessage,
)


class TextPart(BaseModel):
    """A text part of a message item (``input_text`` on input turns, ``output_text`` on earlier answers)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["input_text", "output_text", "text"]
    text: Text


_Parts = Annotated[list[TextPart], Field(min_length=1, max_length=256)]


class MessageItem(BaseModel):
    """A turn of the conversation: ``{"role", "content"}``, with or without ``"type": "message"``."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: Text | _Parts

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class FunctionCallItem(BaseModel):
    """A function call of an earlier answer, sent back with the conversation."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function_call"]
    call_id: ToolCallId
    name: FunctionName
    arguments: Text


class FunctionCallOutputItem(BaseModel):
    """The result of a function call."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function_call_output"]
    call_id: ToolCallId
    output: Text


class ReasoningText(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: Text


class ReasoningItem(BaseModel):
    """The reasoning of an earlier answer (its ``content`` texts), sent back with the conversation."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["reasoning"]
    content: Annotated[list[ReasoningText], Field(max_length=256)] | None = None
    summary: list[Any] | None = None


def _item_type(value: Any) -> str:
    return str(value.get("type", "message")) if isinstance(value, dict) else str(getattr(value, "type", "message"))


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")],
    Discriminator(_item_type),
]


class FunctionTool(BaseModel):
    """A function the model may call, in the Responses shape (flat, not under ``function``)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    name: FunctionName
    description: Annotated[Text, Field(max_length=8192)] | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class NamedFunctionChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    name: FunctionName


class ReasoningOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    effort: ReasoningEffort | None = None


class ResponseCreate(BaseModel):
    """Body of ``POST /v1/responses``. Unknown options are ignored, as with chat completions; the ones reasonq
    cannot honour are refused by name."""

    model_config = ConfigDict(extra="ignore")

    model: ModelName | None = None
    input: Annotated[Text, Field(min_length=1)] | Annotated[list[InputItem], Field(min_length=1, max_length=10_000)]
    instructions: Text | None = None
    max_output_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    reasoning: ReasoningOptions | None = None
    metadata: Metadata | None = None
    tools: Annotated[list[FunctionTool], Field(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedFunctionChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    store: StrictBool = Field(True, description="Echoed: reasonq keeps every response for REASONQ_RETENTION_S.")
    stream: StrictBool = False
    background: StrictBool = False
    previous_response_id: None = Field(
        None, description="Not supported: send the conversation in `input` (reasonq keeps no conversation state)."
    )
    conversation: None = Field(None, description="Not supported: send the conversation in `input`.")

    @field_validator("input")
    @classmethod
    def _has_a_turn(cls, value: Any) -> Any:
        if isinstance(value, list) and all(isinstance(item, ReasoningItem) for item in value):
            raise ValueError("needs a message, a function call or a function call's output: reasoning is not a turn")
        return value

    @field_validator("previous_response_id", "conversation", mode="before")
    @classmethod
    def _unsupported(cls, value: Any) -> None:
        if value is not None:
            raise ValueError("is not supported by reasonq: send the whole conversation in input")
        return None

    def messages(self) -> list[Message]:
        """The chat conversation: ``instructions`` first, then the input items as turns."""
        out: list[Message] = [SystemMessage(role="system", content=self.instructions)] if self.instructions else []
        if isinstance(self.input, str):
            return [*out, UserMessage(role="user", content=self.input)]
        reasoning: str | None = None
        calls: list[ToolCall] = []

        def flush_calls() -> None:
            nonlocal reasoning
            if calls:
                out.append(AssistantMessage(role="assistant", tool_calls=list(calls), reasoning_content=reasoning))
                calls.clear()
                reasoning = None

        for item in self.input:
            if isinstance(item, FunctionCallItem):
                calls.append(ToolCall(id=item.call_id, function=FunctionCall(name=item.name, arguments=item.arguments)))
                continue
            flush_calls()
            if isinstance(item, ReasoningItem):
                reasoning = "".join(part.text for part in item.content or ())
            elif isinstance(item, FunctionCallOutputItem):
                out.append(ToolMessage(role="tool", content=item.output, tool_call_id=item.call_id))
            elif item.role == "assistant":
                out.append(AssistantMessage(role="assistant", content=item.text(), reasoning_content=reasoning))
                reasoning = None
            elif item.role == "user":
                out.append(UserMessage(role="user", content=item.text()))
            else:
                out.append(SystemMessage(role=item.role, content=item.text()))
        flush_calls()
        return out

    def to_generation(self) -> GenerationCreate:
        """The native request this becomes."""
        tools = [
            Tool(
                type="function",
                function=FunctionDefinition(
                    name=t.name, description=t.description, parameters=t.parameters, strict=t.strict
                ),
            )
            for t in self.tools or ()
        ]
        choice = self.tool_choice
        options: dict[str, Any] = dict.fromkeys(CHAT_OPTIONS)
        options |= {
            "model": self.model,
            "max_tokens": self.max_output_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "reasoning_effort": self.reasoning.effort if self.reasoning else None,
            "metadata": self.metadata,
            "tools": tools or None,
            "tool_choice": NamedToolChoice(type="function", function=NamedFunction(name=choice.name))
            if isinstance(choice, NamedFunctionChoice)
            else choice,
            "parallel_tool_calls": self.parallel_tool_calls,
        }
        return GenerationCreate(messages=self.messages(), **options)

    def params(self) -> dict[str, Any]:
        """What the response object echoes and the generation's request does not say, kept in the record."""
        return {
            "background": self.background,
            "instructions": self.instructions,
            "store": self.store,
            "reasoning_effort": self.reasoning.effort if self.reasoning else None,
        }
