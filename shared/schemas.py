"""Request and response bodies of the generations API; the worker reads ``GenerationCreate`` back from the record."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, StrictBool

from reasonq.shared.events import Status


def _valid_unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError("contains a lone UTF-16 surrogate, which is not valid Unicode text") from e
    return value


def _json_number(value: Any) -> Any:
    # Lax enough for JSON Schema's numbers (3.0 is an integer) but not for true or "3" (a fuzzing finding:
    # "temperature": true was accepted as 1.0).
    if isinstance(value, bool | str | bytes):
        raise ValueError("must be a JSON number")
    return value


Text = Annotated[str, AfterValidator(_valid_unicode)]
_NUMBER = BeforeValidator(_json_number)
# Request fields shared by the native and the OpenAI-compatible bodies. The constraints come before the number
# check in Annotated, so the OpenAPI document states them as minimum/maximum (a fuzzing finding: in the other
# order they were documented as "ge"/"le", which no client understands).
ModelName = Annotated[Text, Field(min_length=1, max_length=200)]
MaxTokens = Annotated[int, Field(ge=1, le=1_000_000), _NUMBER]
Temperature = Annotated[float, Field(ge=0, le=2), _NUMBER]
TopP = Annotated[float, Field(ge=0, le=1), _NUMBER]
ReasoningEffort = Annotated[str, Field(pattern=r"^[a-z_]{1,16}$")]
Stop = Annotated[Text, Field(min_length=1)] | Annotated[list[Text], Field(min_length=1, max_length=4)]
Seed = Annotated[int, Field(ge=-(2**53), le=2**53, description="Within ±2^53 (exact in JSON and JavaScript)."), _NUMBER]
Metadata = Annotated[
    dict[Annotated[Text, Field(max_length=64)], Annotated[Text, Field(max_length=512)]], Field(max_length=16)
]


FunctionName = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Letters, digits, _ . - (64 at most).")
]
ToolCallId = Annotated[Text, Field(min_length=1, max_length=200)]


class FunctionCall(BaseModel):
    """The function an assistant turn called, and its arguments (a JSON string, as the model wrote it)."""

    model_config = ConfigDict(extra="forbid")

    name: FunctionName
    arguments: Text


class ToolCall(BaseModel):
    """One tool call of an assistant turn (OpenAI's ``message.tool_calls[]``)."""

    model_config = ConfigDict(extra="forbid")

    id: ToolCallId
    type: Literal["function"] = "function"
    function: FunctionCall


Name = Annotated[Text, Field(min_length=1, max_length=64)]


class SystemMessage(BaseModel):
    """A system (or developer) instruction."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer"]
    content: Text
    name: Name | None = None


class UserMessage(BaseModel):
    """A user turn."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user"]
    content: Text
    name: Name | None = None


class AssistantMessage(BaseModel):
    """An assistant turn: its text, its tool calls, and its reasoning, which reasonq sends back the way the provider
    wants it (``reasoning_content``, DeepSeek's name, or ``reasoning``, vLLM's: either is taken)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["assistant"]
    content: Text | None = None
    name: Name | None = None
    tool_calls: Annotated[list[ToolCall], Field(min_length=1, max_length=128)] | None = None
    reasoning_content: Text | None = None
    reasoning: Text | None = None

    @property
    def thinking(self) -> str | None:
        """The turn's reasoning, under whichever name it came."""
        return self.reasoning_content if self.reasoning_content is not None else self.reasoning


class ToolMessage(BaseModel):
    """A tool's result, answering one call of the assistant turn before it."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["tool"]
    content: Text
    tool_call_id: ToolCallId


# One chat message; its role says which fields it has (OpenAI's message types, one per role).
ROLE = Discriminator("role")  # api/errors.py words its errors: "role 'wizard' is not one of system, ..."
Message = Annotated[SystemMessage | UserMessage | AssistantMessage | ToolMessage, ROLE]


class FunctionDefinition(BaseModel):
    """A function the model may call: its name, what it does, and its parameters as a JSON Schema object."""

    model_config = ConfigDict(extra="forbid")

    name: FunctionName
    description: Annotated[Text, Field(max_length=8192)] | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class Tool(BaseModel):
    """One tool of ``tools`` (OpenAI's shape; functions are the only kind)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: FunctionName


class NamedToolChoice(BaseModel):
    """``tool_choice`` naming the function the model must call."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class ChatOptions(BaseModel):
    """What the native and the OpenAI-compatible chat requests share (each declares its own message type)."""

    model: ModelName | None = None
    messages: list[Any] = Field(min_length=1)
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    reasoning_effort: ReasoningEffort | None = None
    stop: Stop | None = None
    seed: Seed | None = None
    metadata: Metadata | None = None
    tools: Annotated[list[Tool], Field(min_length=1, max_length=128)] | None = None
    tool_choice: ToolChoice | None = None
    # A tool_choice naming a function that is not in tools is the provider's to refuse: no JSON Schema can say it,
    # and the OpenAPI document is the contract (tests/api/test_fuzz.py sends every schema-valid body).
    parallel_tool_calls: StrictBool | None = None


# The options a chat request passes on unchanged, by name.
CHAT_OPTIONS = frozenset(ChatOptions.model_fields) - {"messages"}


class GenerationCreate(ChatOptions):
    """Body of ``POST /v1/generations``: an OpenAI-style chat request."""

    model_config = ConfigDict(extra="forbid")

    messages: list[Message] = Field(min_length=1)


class GenerationAccepted(BaseModel):
    """Answer of ``POST /v1/generations``."""

    id: str
    status: Status
    created_at: float
    url: str
    events_url: str


OPENAI_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})


def openai_finish(generation_id: str, status: str, finish_reason: str | None) -> tuple[str, dict[str, str] | None]:
    """How a generation ended, in OpenAI's words: a ``finish_reason`` of OpenAI's (the SDK's types allow no
    other), and the ``reasonq`` object that says what that word hides (issue 15): a cancelled answer ends with
    ``stop`` and ``{"status": "cancelled"}``; a provider's own reason (vLLM's ``abort``) with ``stop`` and
    ``{"finish_reason": ...}``. ``None`` when OpenAI's word is the whole truth."""
    if status == "completed" and finish_reason in OPENAI_FINISH_REASONS:
        return finish_reason, None
    marker = {"status": status, "generation_id": generation_id}
    if finish_reason and finish_reason != status and finish_reason not in OPENAI_FINISH_REASONS:
        marker["finish_reason"] = finish_reason
    if finish_reason in OPENAI_FINISH_REASONS:
        return finish_reason, marker
    return "stop", marker


class GenerationPublic(BaseModel):
    """A generation as ``GET /v1/generations/{id}`` shows it; ``reasoning`` and ``content`` are the text so far."""

    id: str
    status: Status
    model: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    reasoning: str
    content: str
    finish_reason: str | None
    usage: dict[str, Any] | None
    error: dict[str, Any] | None
    attempt: int
    tool_calls: list[dict[str, Any]] | None = Field(None, description="The answer's tool calls, complete, once ended.")
    system_fingerprint: str | None = Field(None, description="The provider's `system_fingerprint`, once ended.")
    metadata: dict[str, str] | None = None
    simulated: bool = Field(False, description="Served by the built-in simulated model, not a real one.")
    messages: list[dict[str, Any]] = Field(default_factory=list, description="The conversation as submitted.")
    # Not shown: the request's other options, and what only the front door that created it said (the Responses
    # API's background, instructions, store), for the views that show the generation their way.
    request_options: dict[str, Any] = Field(default_factory=dict, exclude=True)
    surface: dict[str, Any] | None = Field(None, exclude=True)

    def to_chat_completion(self) -> dict[str, Any]:
        """The generation as an OpenAI ``chat.completion`` object (the message carries ``reasoning_content``)."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self.content if self.content or not self.tool_calls else None,
            "reasoning_content": self.reasoning,
        }
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        finish_reason, marker = openai_finish(self.id, self.status, self.finish_reason)
        completion: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": int(self.created_at),
            "model": self.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": self.usage,
        }
        if self.system_fingerprint:
            completion["system_fingerprint"] = self.system_fingerprint
        if marker:
            completion["reasonq"] = marker
        return completion


class GenerationCancel(BaseModel):
    """Answer of ``POST /v1/generations/{id}/cancel``."""

    id: str
    status: Status
    cancel_requested: bool


class GenerationSummary(BaseModel):
    """One row of ``GET /v1/generations``."""

    id: str
    status: Status
    model: str
    created_at: float
    preview: str
    simulated: bool = False


class GenerationList(BaseModel):
    """Answer of ``GET /v1/generations``."""

    object: Literal["list"] = "list"
    data: list[GenerationSummary]


class GenerationViewers(BaseModel):
    """Answer of ``GET /v1/generations/{id}/viewers``."""

    id: str
    viewers: int


class ShareCreate(BaseModel):
    """Body of ``POST /v1/generations/{id}/share`` (optional)."""

    model_config = ConfigDict(extra="forbid")

    ttl_s: Annotated[int, Field(ge=1, le=30 * 86_400, description="Lifetime in seconds."), _NUMBER] | None = None


class GenerationShare(BaseModel):
    """Answer of ``POST /v1/generations/{id}/share``: a read-only link to one generation."""

    id: str
    token: str
    expires_at: int
    page_url: str
    url: str
    events_url: str
