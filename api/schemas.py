"""Request bodies of the API's own routes (the OpenAI-compatible ones); shared request and record schemas live
in ``shared/schemas.py``. Routes import these; no route imports another route's schemas."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, TypeAdapter, field_validator

from reasonq.shared.schemas import (
    CHAT_OPTIONS,
    ROLE,
    ChatOptions,
    GenerationCreate,
    MaxTokens,
    Message,
    Name,
    Text,
    ToolCall,
    ToolCallId,
)


class TextPart(BaseModel):
    """A text content part (the only kind of part reasonq passes on)."""

    model_config = ConfigDict(strict=True)

    type: Literal["text"]
    text: Text


Parts = Text | list[TextPart]


def _text(content: Parts | None) -> str | None:
    if content is None or isinstance(content, str):
        return content
    return "".join(p.text for p in content)


class ChatSystemMessage(BaseModel):
    model_config = ConfigDict(strict=True)

    role: Literal["system", "developer"]
    content: Parts
    name: Name | None = None


class ChatUserMessage(BaseModel):
    model_config = ConfigDict(strict=True)

    role: Literal["user"]
    content: Parts
    name: Name | None = None


class ChatAssistantMessage(BaseModel):
    """An assistant turn as the SDK sends it back: text or parts, tool calls, and reasoning under DeepSeek's name
    (``reasoning_content``) or vLLM's (``reasoning``)."""

    model_config = ConfigDict(strict=True)

    role: Literal["assistant"]
    content: Parts | None = None
    name: Name | None = None
    tool_calls: Annotated[list[ToolCall], Field(min_length=1, max_length=128)] | None = None
    reasoning_content: Text | None = None
    reasoning: Text | None = None


class ChatToolMessage(BaseModel):
    model_config = ConfigDict(strict=True)

    role: Literal["tool"]
    content: Parts
    tool_call_id: ToolCallId


# A chat message as the OpenAI API takes it (text or a list of text parts; other fields are ignored).
ChatMessage = Annotated[ChatSystemMessage | ChatUserMessage | ChatAssistantMessage | ChatToolMessage, ROLE]
_MESSAGE: TypeAdapter[Message] = TypeAdapter(Message)


def to_message(message: ChatSystemMessage | ChatUserMessage | ChatAssistantMessage | ChatToolMessage) -> Message:
    """The native message a chat message becomes (its parts joined into text)."""
    fields = message.model_dump(exclude_none=True)
    if "content" in fields:
        fields["content"] = _text(message.content)
    return _MESSAGE.validate_python(fields)


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True)

    include_usage: bool = False


class ChatCompletionRequest(ChatOptions):
    """The chat-completions request the ``openai`` SDK sends. Options that would change what comes back in ways
    reasonq does not do (several choices, legacy functions, structured output, log probabilities) are refused by
    name; other unknown options are ignored, as OpenAI-compatible servers do."""

    model_config = ConfigDict(extra="ignore")

    # metadata: OpenAI allows 16 pairs; more would be cut silently, so more are refused (ChatOptions).
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    max_completion_tokens: MaxTokens | None = None
    n: Literal[1] | None = None
    functions: None = None
    function_call: None = None
    response_format: None = None
    logprobs: Literal[False] | None = None

    @field_validator("functions", "function_call", mode="before")
    @classmethod
    def _legacy_functions(cls, value: Any) -> None:
        if value is not None:
            raise ValueError("is OpenAI's deprecated form of tools and is not supported: send tools and tool_choice")
        return None

    @field_validator("response_format", mode="before")
    @classmethod
    def _unsupported(cls, value: Any) -> None:
        if value is not None:
            raise ValueError("is not supported by reasonq")
        return None

    def to_generation(self) -> GenerationCreate:
        """The native request this becomes."""
        options = {name: getattr(self, name) for name in CHAT_OPTIONS}
        options["max_tokens"] = self.max_tokens or self.max_completion_tokens
        return GenerationCreate(messages=[to_message(m) for m in self.messages], **options)


# Response bodies (what the routes declare; the OpenAPI document shows them).


class BatchRequestCounts(BaseModel):
    """How many of a batch's requests there are, and how many finished each way."""

    total: int
    completed: int
    failed: int


class BatchPublic(BaseModel):
    """A batch in OpenAI's Batch shape (the SDK's ``Batch`` type parses it), with reasonq's ``results_url``. Times
    are integer Unix seconds."""

    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: None = None
    input_file_id: str = Field(description="The uploaded input file; empty for lines sent in the body.")
    completion_window: str
    status: Literal["in_progress", "cancelling", "completed", "cancelled", "expired"]
    output_file_id: str | None = Field(description="The successes, once the batch ended (GET /v1/files/{id}/content).")
    error_file_id: str | None = Field(description="The failures, once the batch ended with any.")
    created_at: int
    in_progress_at: int | None
    expires_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: BatchRequestCounts
    metadata: dict[str, str] | None
    results_url: str


class BatchList(BaseModel):
    """Answer of ``GET /v1/batches``: a cursor page, newest first."""

    object: Literal["list"] = "list"
    data: list[BatchPublic]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FilePublic(BaseModel):
    """An uploaded file, or a batch's output or error file (OpenAI's ``FileObject``)."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None
    filename: str
    purpose: Literal["batch", "batch_output"]
    status: Literal["processed"]
    status_details: None = None


class FileList(BaseModel):
    """Answer of ``GET /v1/files``: a cursor page, newest first."""

    object: Literal["list"] = "list"
    data: list[FilePublic]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(BaseModel):
    """Answer of ``DELETE /v1/files/{id}``."""

    id: str
    object: Literal["file"] = "file"
    deleted: Literal[True] = True


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
    """The assistant's message; ``reasoning_content`` is the reasoning trace (DeepSeek's field). With tool calls and
    no text, ``content`` is null."""

    role: Literal["assistant"]
    content: str | None
    reasoning_content: str
    tool_calls: list[ToolCall] | None = None


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
    system_fingerprint: str | None = Field(None, description="The provider's, when it sent one.")
    reasonq: dict[str, str] | None = Field(
        None,
        description="What `finish_reason` (always one of OpenAI's) does not say: `status` (`cancelled`), the "
        "provider's own `finish_reason`, and `generation_id`. Absent when the answer simply completed.",
    )


class Liveness(BaseModel):
    """Answer of ``GET /healthz``."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Answer of ``GET /readyz``: each check's result (``redis``, ``broker``: bool; ``workers``: how many beat;
    ``queues``: per queue, how many of them consume it) and, in words, what is missing."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, Any]
    problems: list[str] = []
