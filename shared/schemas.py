"""Request and response bodies of the generations API; the worker reads ``GenerationCreate`` back from the record."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.events import Status


def _valid_unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError("contains a lone UTF-16 surrogate, which is not valid Unicode text") from e
    return value


Text = Annotated[str, AfterValidator(_valid_unicode)]
Role = Literal["system", "developer", "user", "assistant"]


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    content: Text


class GenerationCreate(BaseModel):
    """Body of ``POST /v1/generations``: an OpenAI-style chat request."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[Text, Field(min_length=1, max_length=200)] | None = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    reasoning_effort: Annotated[str, Field(pattern=r"^[a-z_]{1,16}$")] | None = None
    stop: Annotated[Text, Field(min_length=1)] | Annotated[list[Text], Field(min_length=1, max_length=4)] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    metadata: (
        Annotated[
            dict[Annotated[Text, Field(max_length=64)], Annotated[Text, Field(max_length=512)]], Field(max_length=16)
        ]
        | None
    ) = None


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


class GenerationList(BaseModel):
    """Answer of ``GET /v1/generations``."""

    object: Literal["list"] = "list"
    data: list[GenerationSummary]


class GenerationViewers(BaseModel):
    """Answer of ``GET /v1/generations/{id}/viewers``."""

    id: str
    viewers: int
