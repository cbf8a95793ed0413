"""One settings object for every reasonq process, read from ``REASONQ_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting, its default and its meaning; the README's configuration table mirrors this class."""

    model_config = SettingsConfigDict(env_prefix="REASONQ_", extra="ignore")

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis holding records and event streams.")
    broker_url: str | None = Field(None, description="Celery broker; defaults to redis_url. amqp:// works too.")
    queue_name: str = Field("reasonq", description="Celery queue that generation tasks go to.")

    model_base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. https://api.deepseek.com")
    model_api_key: SecretStr = Field(SecretStr(""), description="API key for model_base_url; never logged.")
    default_model: str = Field("reasonq-sim", description="Model used when a request names none.")
    model_timeout_s: float = Field(600.0, gt=0, description="Upstream read timeout between two chunks.")
    model_connect_timeout_s: float = Field(10.0, gt=0, description="Upstream connect timeout.")

    retention_s: int = Field(86_400, gt=0, description="How long a finished generation stays readable.")
    flush_interval_ms: float = Field(
        10.0, ge=0, description="Worker write coalescing: at most one stream write per generation per interval."
    )
    worker_concurrency: int = Field(200, gt=0, description="Generations one worker process runs at once.")
    lease_ttl_s: float = Field(
        10.0, gt=0, description="A running generation's lease; its worker renews it every third of this."
    )

    sse_ping_s: float = Field(10.0, gt=0, description="Keep-alive comment interval on idle event streams.")
    hub_block_ms: int = Field(5_000, gt=0, description="How long the API's stream reader blocks in one XREAD.")
    hub_ring_events: int = Field(
        512, gt=0, description="Recent events kept in memory per watched stream; older ones are re-read from Redis."
    )
    redis_max_connections: int = Field(64, gt=0, description="Redis connection pool size per process.")

    sim_tokens_per_s: float = Field(40.0, ge=0, description="Simulator token rate; 0 means as fast as possible.")

    @property
    def effective_broker_url(self) -> str:
        """The broker URL, falling back to the Redis URL."""
        return self.broker_url or self.redis_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once (tests set the environment first, or clear this cache)."""
    return Settings()
