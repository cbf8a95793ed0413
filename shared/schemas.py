"""Request and response bodies of the generations API; the worker reads ``GenerationCreate`` back from the record."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

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
Role = Literal["system", "developer", "user", "assistant"]
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


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    content: Text


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
    metadata: dict[str, str] | None = None
    simulated: bool = Field(False, description="Served by the built-in simulated model, not a real one.")
    messages: list[dict[str, Any]] = Field(default_factory=list, description="The conversation as submitted.")

    def to_chat_completion(self) -> dict[str, Any]:
        """The generation as an OpenAI ``chat.completion`` object (the message carries ``reasoning_content``)."""
        message = {"role": "assistant", "content": self.content, "reasoning_content": self.reasoning}
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": int(self.created_at),
            "model": self.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish_reason}],
            "usage": self.usage,
        }


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
