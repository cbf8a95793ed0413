"""Request bodies of the API's own routes (the OpenAI-compatible ones); shared request and record schemas live
in ``shared/schemas.py``. Routes import these; no route imports another route's schemas."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from reasonq.shared.schemas import CHAT_OPTIONS, ChatOptions, GenerationCreate, MaxTokens, Message, Role, Text


class TextPart(BaseModel):
    """A text content part (the only kind of part reasonq passes on)."""

    model_config = ConfigDict(strict=True)

    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    """A chat message as the OpenAI API takes it: text or a list of text parts."""

    model_config = ConfigDict(strict=True)

    role: Role
    content: Text | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True)

    include_usage: bool = False


class ChatCompletionRequest(ChatOptions):
    """The chat-completions request the ``openai`` SDK sends. Options that would change what comes back in ways
    reasonq does not do (several choices, tools, structured output, log probabilities) are refused by name;
    other unknown options are ignored, as OpenAI-compatible servers do."""

    model_config = ConfigDict(extra="ignore")

    # metadata: OpenAI allows 16 pairs; more would be cut silently, so more are refused (ChatOptions).
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    max_completion_tokens: MaxTokens | None = None
    n: Literal[1] | None = None
    tools: None = None
    tool_choice: None = None
    functions: None = None
    response_format: None = None
    logprobs: Literal[False] | None = None

    @field_validator("tools", "tool_choice", "functions", "response_format", mode="before")
    @classmethod
    def _unsupported(cls, value: Any) -> None:
        if value is not None:
            raise ValueError("is not supported by reasonq")
        return None

    def to_generation(self) -> GenerationCreate:
        """The native request this becomes."""
        options = {name: getattr(self, name) for name in CHAT_OPTIONS}
        options["max_tokens"] = self.max_tokens or self.max_completion_tokens
        return GenerationCreate(messages=[Message(role=m.role, content=m.text()) for m in self.messages], **options)


# Response bodies (what the routes declare; the OpenAPI document shows them).


class BatchRequestCounts(BaseModel):
    """How many of a batch's requests there are, and how many finished each way."""

    total: int
    completed: int
    failed: int


class BatchPublic(BaseModel):
    """A batch in OpenAI's Batch shape, as far as it applies."""

    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    status: Literal["in_progress", "cancelling", "completed", "cancelled"]
    created_at: float
    completed_at: float | None
    cancelled_at: float | None
    request_counts: BatchRequestCounts
    metadata: dict[str, str] | None
    results_url: str


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models``."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    """Answer of ``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class ChatCompletionMessage(BaseModel):
    """The assistant's message; ``reasoning_content`` is the reasoning trace (DeepSeek's field)."""

    role: Literal["assistant"]
    content: str
    reasoning_content: str


class ChatCompletionChoice(BaseModel):
    """The one choice of a chat completion."""

    index: int
    message: ChatCompletionMessage
    logprobs: None
    finish_reason: str | None


class ChatCompletion(BaseModel):
    """Answer of a non-streaming ``POST /v1/chat/completions`` (OpenAI's ``chat.completion``)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: dict[str, Any] | None


class Liveness(BaseModel):
    """Answer of ``GET /healthz``."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Answer of ``GET /readyz``: each check's result (``redis``, ``broker``: bool; ``workers``: how many beat;
    ``queues``: per queue, how many of them consume it) and, in words, what is missing."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, Any]
    problems: list[str] = []
