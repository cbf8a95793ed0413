"""One settings object for every reasonq process, read from ``REASONQ_*`` environment variables."""

from __future__ import annotations

from functools import cached_property, lru_cache
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reasonq.shared.errors import ConfigurationError
from reasonq.shared.providers import DEFAULT_PROVIDER, Profile, ProviderConfig, ProviderRoutes, parse_providers
from reasonq.shared.redis_urls import CLUSTER_SCHEMES, SENTINEL_SCHEMES, kombu_broker, parse_redis_url
from reasonq.shared.webhooks import WebhookEndpoint, parse_webhooks


class Settings(BaseSettings):
    """Every setting, its default and its meaning; the README's configuration table mirrors this class."""

    model_config = SettingsConfigDict(env_prefix="REASONQ_", extra="ignore")

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis holding records and event streams: redis://, rediss://, redis+sentinel://, redis+cluster://.",
    )
    broker_url: str | None = Field(
        None, description="Celery broker; defaults to redis_url. amqp://, redis://, redis+sentinel:// (not a Cluster)."
    )
    broker_queue_type: Literal["classic", "quorum"] = Field(
        "classic", description="Type of the queues declared on an AMQP broker (quorum: replicated RabbitMQ queues)."
    )
    queue_name: str = Field("reasonq", description="Celery queue that generation tasks go to.")
    batch_queue_name: str = Field(
        "reasonq-batch", description="Celery queue of batch generations (served by their own workers)."
    )
    batch_max_lines: int = Field(50_000, gt=0, description="Most lines one batch may have.")

    model_base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. https://api.deepseek.com")
    model_api_key: SecretStr = Field(SecretStr(""), description="API key for model_base_url; never logged.")
    default_model: str = Field("reasonq-sim", description="Model used when a request names none.")
    models: str = Field(
        "",
        description="Comma-separated models offered (GET /v1/models lists them; others are refused); `*` allows any "
        "name. Empty: default_model only.",
    )
    model_simulated: bool = Field(
        False,
        description="Set by `reasonq up` when it runs the built-in simulator: generations are labelled simulated.",
    )
    model_profile: Profile = Field(
        "generic",
        description="How model_base_url takes reasoning back on assistant turns: deepseek, vllm, openai, generic.",
    )
    model_max_concurrent: int = Field(
        0, ge=0, description="Most upstream streams to model_base_url at once, over all workers (0 = no limit)."
    )
    model_rpm: int = Field(
        0, ge=0, description="Most generations started per minute on model_base_url, over all workers (0 = no limit)."
    )
    model_fallback: str | None = Field(
        None, description="A provider of REASONQ_PROVIDERS to use when model_base_url fails before the first token."
    )
    providers: str = Field(
        "",
        description='More providers as JSON: ``{"name": {"base_url": …, "api_key_env": "ENV", "models": […], '
        '"profile": …, "max_concurrent": N, "rpm": N, "interactive_reserved": N, "fallback": "name"}}``.',
    )
    model_timeout_s: float = Field(600.0, gt=0, description="Upstream read timeout between two chunks.")
    model_connect_timeout_s: float = Field(10.0, gt=0, description="Upstream connect timeout.")

    retention_s: int = Field(86_400, gt=0, description="How long a finished generation stays readable.")
    flush_interval_ms: float = Field(
        10.0, ge=0, description="Worker write coalescing: at most one stream write per generation per interval."
    )
    flush_max_interval_ms: float = Field(
        50.0, ge=0, description="For a fast stream the interval doubles up to this while writes carry several deltas."
    )
    worker_concurrency: int = Field(200, gt=0, description="Generations one worker process runs at once.")
    worker_pickup: bool = Field(
        True,
        description="A worker with room takes queued generations from Redis' queued index ahead of the broker's "
        "messages (a burst starts at once; each still runs once).",
    )
    lease_ttl_s: float = Field(
        10.0, gt=0, description="A running generation's lease; its worker renews it every third of this."
    )

    sweep_interval_s: float = Field(
        2.0, gt=0, description="How often each worker looks for expired leases and lost task messages."
    )
    redispatch_after_s: float = Field(
        30.0, gt=0, description="A queued generation is re-dispatched if still queued this long with the queue empty."
    )
    allow_evicting_redis: bool = Field(
        False,
        description="Run against a Redis whose maxmemory-policy evicts keys (warned about; it can delete generations).",
    )
    max_worker_losses: int = Field(3, gt=0, description="Workers lost by one generation before it ends failed.")
    shutdown_grace_s: float = Field(
        20.0, ge=0, description="On SIGTERM, how long a worker lets running generations finish before handing back."
    )
    resume_strategy: Literal["restart", "continue"] = Field(
        "restart", description="After a lost worker or broken stream: restart the text, or continue the answer."
    )
    provider_max_retries: int = Field(4, ge=0, description="Retries of a failed or broken provider request.")
    provider_backoff_s: float = Field(0.5, gt=0, description="First retry delay; doubles each retry, with jitter.")
    provider_backoff_max_s: float = Field(30.0, gt=0, description="Longest retry delay (Retry-After included).")
    generation_timeout_s: float = Field(3_600.0, gt=0, description="A generation running longer than this fails.")
    stall_timeout_s: float = Field(300.0, gt=0, description="A generation with no token for this long fails.")
    redis_outage_s: float = Field(
        30.0, gt=0, description="How long a worker keeps buffering writes while Redis is unreachable."
    )

    sse_ping_s: float = Field(10.0, gt=0, description="Keep-alive comment interval on idle event streams.")
    hub_block_ms: int = Field(5_000, gt=0, description="How long the API's stream reader blocks in one XREAD.")
    hub_ring_events: int = Field(
        512, gt=0, description="Recent events kept in memory per watched stream; older ones are re-read from Redis."
    )
    hub_activity_topics: int = Field(
        200,
        gt=0,
        description="Above this many watched live streams (per Redis shard group), the API reads only the streams "
        "that moved, from the shards' activity index, instead of one XREAD over every stream it watches.",
    )
    redis_max_connections: int = Field(64, gt=0, description="Redis connection pool size per process.")

    log_json: bool = Field(False, description="Log one JSON object per line (with generation_id when about one).")
    log_bodies: bool = Field(
        False, description="Debug only: log request bodies (prompts). Off by default; keys are never logged."
    )

    api_keys: SecretStr = Field(
        SecretStr(""),
        description="Client keys, comma-separated ``name:secret`` or ``name:sha256:<hex>``. Empty: open (local) mode.",
    )
    key_limits: str = Field(
        "", description='Per-key limits as JSON, e.g. ``{"alice": {"rpm": 60, "concurrent": 4}}`` (overrides limit_*).'
    )
    limit_rpm: int = Field(0, ge=0, description="Default per key: creating requests per minute (0 = no limit).")
    limit_concurrent: int = Field(
        0, ge=0, description="Default per key: interactive generations queued or running at once (0 = no limit)."
    )
    limit_max_tokens: int = Field(0, ge=0, description="Default per key: highest max_tokens (0 = no cap).")
    limit_models: str = Field("", description="Default per key: comma-separated models allowed (empty = any).")
    share_secret: SecretStr = Field(
        SecretStr(""), description="Signs share links; empty: a random secret kept in Redis, shared by API processes."
    )
    share_ttl_s: int = Field(86_400, gt=0, description="Default lifetime of a share link.")
    max_body_bytes: int = Field(1_048_576, gt=0, description="Largest request body (413 above it).")
    max_batch_body_bytes: int = Field(
        104_857_600, gt=0, description="Largest POST /v1/batches body and POST /v1/files upload (413 above it)."
    )
    batch_window_s: int = Field(
        86_400,
        gt=0,
        description="A batch's completion window (OpenAI's `24h`): lines unfinished after it are cancelled and the "
        "batch ends `expired`.",
    )
    webhooks: str = Field(
        "",
        description='Webhook endpoints as JSON: ``[{"url": …, "secret": "whsec_…" | "secret_env": "ENV", '
        '"events": ["response.completed", …]}]`` (all event types when ``events`` is omitted). Set on API and workers.',
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="A webhook delivery attempt fails after this.")
    webhook_backoff_s: float = Field(
        5.0, gt=0, description="First webhook retry delay; doubles each retry (jitter ±20 %), at most an hour."
    )
    webhook_retry_for_s: float = Field(
        86_400.0, gt=0, description="How long an undelivered webhook is retried before it is marked failed."
    )
    ds_long_poll_s: float = Field(
        20.0, gt=0, description="Durable Streams: how long a long-poll read waits for data before its 204."
    )
    ds_sse_max_s: float = Field(
        60.0, gt=0, description="Durable Streams: an SSE read ends after this (the client resumes from its offset)."
    )
    ds_max_append_bytes: int = Field(
        16_777_216, gt=0, description="Durable Streams: largest create or append body (413 above it)."
    )
    ds_webhook_signing_key: SecretStr = Field(
        SecretStr(""),
        description="Durable Streams: Ed25519 seed (32 bytes, base64) signing subscription webhooks, the same on "
        "every API process; empty: each process makes its own (its public key is in the JWKS either way).",
    )
    ds_webhook_loopback: bool | None = Field(
        None,
        description="Durable Streams: accept http://localhost and http://127.0.0.x webhook URLs (the protocol's "
        "development exception); unset: only while no api_keys are configured.",
    )
    max_messages: int = Field(256, gt=0, description="Most messages in one chat request.")
    max_prompt_chars: int = Field(400_000, gt=0, description="Most characters over all messages of one request.")
    request_read_timeout_s: float = Field(
        30.0, gt=0, description="A request's headers, and then its body, must arrive within this (slow clients)."
    )
    max_json_depth: int = Field(32, gt=0, description="Deepest nesting of a JSON request body.")
    metrics_require_key: bool = Field(
        False, description="With api_keys set, GET /metrics asks for a key too (health endpoints never do)."
    )
    worker_health_host: str = Field("127.0.0.1", description="Address a worker's health endpoint binds to.")
    worker_health_port: int = Field(
        0, ge=0, le=65_535, description="Port of a worker process's /healthz and /metrics (0 = not served)."
    )

    sim_tokens_per_s: float = Field(40.0, ge=0, description="Simulator token rate; 0 means as fast as possible.")

    @property
    def _default_models(self) -> list[str]:
        named = [m.strip() for m in self.models.split(",") if m.strip() and m.strip() != "*"]
        return named or [self.default_model]

    @property
    def model_list(self) -> list[str]:
        """The models this deployment lists: those named in ``models`` (else the default model), then every model
        a provider of ``providers`` serves."""
        own = self._default_models if self.model_base_url or not self.providers.strip() else []
        return list(dict.fromkeys([*own, *self.provider_routes.models]))

    def offers_model(self, model: str) -> bool:
        """Whether a request may name ``model``: one of ``model_list``, or any with ``*`` in ``models``."""
        return model in self.model_list or "*" in (m.strip() for m in self.models.split(","))

    @cached_property
    def provider_routes(self) -> ProviderRoutes:
        """Every provider (``model_base_url`` as ``default``, then ``providers``) and which serves each model."""
        default = None
        if self.model_base_url:
            default = ProviderConfig(
                name=DEFAULT_PROVIDER,
                base_url=self.model_base_url,
                api_key=self.model_api_key,
                profile=self.model_profile,
                models=self._default_models,
                max_concurrent=self.model_max_concurrent,
                rpm=self.model_rpm,
                fallback=self.model_fallback,
            )
        return ProviderRoutes(parse_providers(self.providers, default))

    @cached_property
    def webhook_endpoints(self) -> tuple[WebhookEndpoint, ...]:
        """The endpoints of ``webhooks`` (empty: no webhooks; nothing is written for them)."""
        return parse_webhooks(self.webhooks)

    @property
    def effective_broker_url(self) -> str:
        """The broker URL, falling back to the Redis URL."""
        return self.broker_url or self.redis_url

    @property
    def broker_is_redis(self) -> bool:
        """Whether the broker is a Redis server (kombu's Redis transport, Sentinel included)."""
        return self.effective_broker_url.startswith(
            ("redis://", "rediss://", "unix://", "sentinel://", *(f"{s}://" for s in SENTINEL_SCHEMES))
        )

    @property
    def broker_is_store(self) -> bool:
        """Whether the broker is the Redis holding the records (its queues are lists there)."""
        return self.effective_broker_url == self.redis_url and self.broker_is_redis

    @model_validator(mode="after")
    def _urls_are_usable(self) -> Settings:
        parse_redis_url(self.redis_url)  # raises a ConfigurationError that names what is wrong
        if self.effective_broker_url.startswith(tuple(f"{s}://" for s in CLUSTER_SCHEMES)):
            raise ValueError(
                "a Redis Cluster cannot be Celery's broker (kombu's Redis transport has no Cluster support, "
                "celery/celery#2852): set REASONQ_BROKER_URL to amqp://… (RabbitMQ; REASONQ_BROKER_QUEUE_TYPE=quorum "
                "for replicated queues), or to a redis:// or redis+sentinel:// server"
            )
        if self.broker_is_redis:
            kombu_broker(self.effective_broker_url)
        _ = self.provider_routes  # raises a ConfigurationError that names the provider and field
        _ = self.webhook_endpoints  # raises a ConfigurationError that names the entry and field
        return self

    @model_validator(mode="after")
    def _quorum_needs_amqp(self) -> Settings:
        if self.broker_queue_type == "quorum" and self.broker_is_redis:
            raise ValueError(
                "REASONQ_BROKER_QUEUE_TYPE=quorum needs an amqp:// broker (REASONQ_BROKER_URL); a Redis broker's queues"
                " are lists"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once (tests set the environment first, or clear this cache).

    Raises:
        ConfigurationError: one line per wrong setting, named as it is set (``REASONQ_RETENTION_S: ...``),
            never quoting the value (it may be a secret).
    """
    try:
        return Settings()
    except ValidationError as e:
        problems = [  # a check across settings has no location: its message names them
            f"REASONQ_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            if error["loc"]
            else str(error["msg"]).removeprefix("Value error, ")
            for error in e.errors()
        ]
        raise ConfigurationError("; ".join(problems)) from None
