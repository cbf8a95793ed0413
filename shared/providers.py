"""Model providers: which endpoint serves which model, how it wants reasoning sent back, and its limits.

The deployment's first provider is the one set by ``REASONQ_MODEL_BASE_URL`` (named ``default``); more come from
``REASONQ_PROVIDERS`` (JSON, one object per provider name). A model name routes to the provider that lists it,
else to ``default``. Nothing here holds a client: the worker builds one per provider (``worker/model.py``).
"""

from __future__ import annotations

import math
import os
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from reasonq.shared.errors import ConfigurationError

# How a provider takes reasoning on input (shared/reasoning.py applies it):
#   deepseek: ``reasoning_content`` on the assistant turns of the current tool-call exchange (DeepSeek's thinking
#             mode answers 400 "must be passed back" without it), none on earlier turns (its older rule refused it);
#   vllm:     ``reasoning`` on every assistant turn that has it (vLLM PR #27752 renamed the field; #33402 removed
#             ``reasoning_content``, which it now drops silently on input);
#   openai:   none (its chat API has no reasoning field on input);
#   generic:  none, the safe default for an endpoint whose rules are unknown.
Profile = Literal["deepseek", "vllm", "openai", "generic"]
DEFAULT_PROVIDER = "default"
_NAME = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")]


class ProviderConfig(BaseModel):
    """One OpenAI-compatible endpoint and its limits (one entry of ``REASONQ_PROVIDERS``).

    ``models`` lists the model names it serves; a mapping ``{"public name": "upstream name"}`` renames them on the
    way out. ``max_concurrent`` (upstream streams at once) and ``rpm`` (generations started per minute) hold across
    every worker; 0 is unlimited. ``interactive_reserved`` slots of ``max_concurrent`` are never taken by batch
    generations (default: a quarter, rounded up, when the limit is 2 or more). ``fallback`` names a provider to use
    when this one fails before the first token (5xx, connection error).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: _NAME = DEFAULT_PROVIDER
    base_url: str = Field(min_length=1)
    api_key: SecretStr = SecretStr("")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key.")
    profile: Profile = "generic"
    models: list[str] | dict[str, str] = Field(default_factory=list)
    max_concurrent: int = Field(0, ge=0)
    rpm: int = Field(0, ge=0)
    interactive_reserved: int | None = Field(None, ge=0)
    fallback: _NAME | None = None

    @model_validator(mode="after")
    def _key_from_environment(self) -> ProviderConfig:
        if self.api_key_env and not self.api_key.get_secret_value():
            object.__setattr__(self, "api_key", SecretStr(os.environ.get(self.api_key_env, "")))
        return self

    @property
    def model_names(self) -> list[str]:
        """The public model names this provider serves."""
        return list(self.models)

    def upstream_model(self, model: str) -> str:
        """The name the provider knows ``model`` by."""
        return self.models.get(model, model) if isinstance(self.models, dict) else model

    @property
    def reserved_slots(self) -> int:
        """Slots of ``max_concurrent`` kept for interactive generations."""
        if self.interactive_reserved is not None:
            return min(self.interactive_reserved, self.max_concurrent)
        return math.ceil(self.max_concurrent / 4) if self.max_concurrent >= 2 else 0

    @property
    def limited(self) -> bool:
        """Whether a generation must take a slot of this provider before it starts."""
        return self.max_concurrent > 0 or self.rpm > 0


def parse_providers(text: str, default: ProviderConfig | None) -> dict[str, ProviderConfig]:
    """``REASONQ_PROVIDERS`` (a JSON object of provider name to settings) plus the default provider.

    Raises:
        ConfigurationError: malformed JSON, an unknown field, a model served by two providers, or a fallback that
            names no provider; the message names the provider and field, never a key.
    """
    import orjson

    providers: dict[str, ProviderConfig] = {}
    if default is not None:
        providers[default.name] = default
    if text.strip():
        try:
            raw: Any = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise ConfigurationError(f"REASONQ_PROVIDERS is not valid JSON ({e})") from None
        if not isinstance(raw, dict):
            raise ConfigurationError('REASONQ_PROVIDERS must be a JSON object: {"name": {"base_url": ...}, ...}')
        for name, body in raw.items():
            if not isinstance(body, dict):
                raise ConfigurationError(f"REASONQ_PROVIDERS[{name!r}] must be an object")
            try:
                providers[name] = ProviderConfig.model_validate({**body, "name": name})
            except ValidationError as e:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or 'provider'}: {err['msg']}" for err in e.errors()
                )
                raise ConfigurationError(f"REASONQ_PROVIDERS[{name!r}]: {problems}") from None
    served: dict[str, str] = {}
    for provider in providers.values():
        if provider.fallback is not None and provider.fallback not in providers:
            raise ConfigurationError(
                f"REASONQ_PROVIDERS[{provider.name!r}]: fallback {provider.fallback!r} is not a configured provider"
            )
        if provider.fallback == provider.name:
            raise ConfigurationError(f"REASONQ_PROVIDERS[{provider.name!r}]: a provider cannot fall back to itself")
        for model in provider.model_names:
            if model in served and provider.name != DEFAULT_PROVIDER and served[model] != DEFAULT_PROVIDER:
                raise ConfigurationError(
                    f"model {model!r} is served by two providers ({served[model]!r} and {provider.name!r}): "
                    "list it under one, and name the other as its fallback"
                )
            served[model] = provider.name
    return providers


class ProviderRoutes:
    """Model name → provider, over the parsed providers."""

    def __init__(self, providers: dict[str, ProviderConfig]) -> None:
        self.providers = providers
        self._by_model: dict[str, ProviderConfig] = {}
        for provider in providers.values():
            for model in provider.model_names:
                # a named provider wins over the default's list (the default lists REASONQ_MODELS)
                if model not in self._by_model or self._by_model[model].name == DEFAULT_PROVIDER:
                    self._by_model[model] = provider

    def route(self, model: str) -> ProviderConfig | None:
        """The provider of ``model``: the one that lists it, else the default, else ``None``."""
        return self._by_model.get(model) or self.providers.get(DEFAULT_PROVIDER)

    def fallback_of(self, provider: ProviderConfig) -> ProviderConfig | None:
        """The provider to use when ``provider`` fails before the first token."""
        return self.providers.get(provider.fallback) if provider.fallback else None

    @property
    def models(self) -> list[str]:
        """Every model a named provider lists (the default's are ``Settings.model_list``)."""
        return [m for m, p in self._by_model.items() if p.name != DEFAULT_PROVIDER]

    def secrets(self) -> list[str]:
        """Every provider key (redacted from anything a provider says)."""
        return [k for p in self.providers.values() if (k := p.api_key.get_secret_value())]
