"""docker-compose.yml has the deployment shape the README promises (no Docker engine runs here to start it)."""

from __future__ import annotations

from pathlib import Path

import yaml

from reasonq.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_their_commands() -> None:
    services = _compose()["services"]
    assert {"redis", "api", "worker", "batch-worker", "sim", "flower"} <= set(services)
    assert "flower" in services["flower"]["command"]
    assert services["batch-worker"]["command"][:4] == ["reasonq", "worker", "--queues", "reasonq-batch"]
    assert services["api"]["command"][:2] == ["reasonq", "api"]
    assert services["worker"]["command"] == ["reasonq", "worker"]
    assert services["sim"]["command"][:2] == ["reasonq", "sim"]
    parser = build_parser()
    for name in ("api", "worker", "batch-worker", "sim"):
        parser.parse_args(services[name]["command"][1:])  # the commands exist with these flags


def test_restart_policies_and_persistent_redis() -> None:
    compose = _compose()
    services = compose["services"]
    for name in ("redis", "api", "worker", "batch-worker"):
        assert services[name]["restart"] == "unless-stopped"
    assert "--appendonly" in services["redis"]["command"]
    assert any(v.startswith("redis-data:") for v in services["redis"]["volumes"])
    assert "redis-data" in compose["volumes"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["REASONQ_REDIS_URL"] == "redis://redis:6379/0"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_open_mode_is_published_on_loopback_and_workers_have_health() -> None:
    services = _compose()["services"]
    assert services["api"]["ports"] == ["${REASONQ_PUBLISH_HOST:-127.0.0.1}:8000:8000"]
    assert services["api"]["environment"]["REASONQ_API_KEYS"] == "${REASONQ_API_KEYS:-}"
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    for name in ("worker", "batch-worker"):
        env = services[name]["environment"]
        assert env["REASONQ_WORKER_HEALTH_PORT"] == "8002"
        assert env["REASONQ_REDIS_URL"] == "redis://redis:6379/0"  # the shared environment, merged
        assert "8002/healthz" in " ".join(services[name]["healthcheck"]["test"])


def test_one_image_built_once_and_reused() -> None:
    """Issue 11: every reasonq service built the image again; one builds it, the rest reuse it."""
    services = _compose()["services"]
    reasonq_services = [name for name, s in services.items() if s.get("image") == "reasonq:latest"]
    assert set(reasonq_services) == {"api", "worker", "batch-worker", "sim"}
    assert [name for name in reasonq_services if "build" in services[name]] == ["api"]
    for name in reasonq_services:
        assert services[name]["pull_policy"] == "never"  # never fetched from a registry: built here
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "bench" not in dockerfile and "pip install --no-cache-dir ." in dockerfile


def test_every_long_running_service_has_a_healthcheck_and_flower_shares_the_broker() -> None:
    services = _compose()["services"]
    for name in ("redis", "api", "worker", "batch-worker", "sim"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    flower = services["flower"]
    assert flower["environment"]["CELERY_BROKER_URL"] == "${REASONQ_BROKER_URL:-redis://redis:6379/0}"
    assert not any("redis://" in part for part in flower["command"])  # no second, hard-coded broker
    assert services["api"]["environment"]["REASONQ_BROKER_URL"] == flower["environment"]["CELERY_BROKER_URL"]


def test_the_ha_shape_has_no_single_redis_broker_api_or_worker() -> None:
    """Issue 13: Sentinel with a replica, RabbitMQ with quorum queues, two API containers behind a proxy that
    passes event streams unbuffered, workers scaled, Flower on the same broker; every command parses and every
    URL is one reasonq accepts."""
    from reasonq.shared.redis_urls import parse_redis_url
    from reasonq.shared.settings import Settings

    compose = yaml.safe_load((ROOT / "docker-compose.ha.yml").read_text())
    services = compose["services"]
    assert {"redis-primary", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3", "rabbitmq", "proxy"} <= set(
        services
    )
    assert {"api-1", "api-2", "worker", "batch-worker", "flower", "sim"} <= set(services)
    assert services["redis-replica"]["command"][services["redis-replica"]["command"].index("--replicaof") + 1] == (
        "redis-primary"
    )
    for i in (1, 2, 3):
        script = services[f"sentinel-{i}"]["command"][2]
        assert "sentinel monitor reasonq redis-primary 6379 2" in script and "--sentinel" in script  # 2 of 3 agree
    env = services["worker"]["environment"]
    target = parse_redis_url(env["REASONQ_REDIS_URL"])
    assert target.kind == "sentinel" and target.service == "reasonq" and len(target.hosts) == 3
    assert env["REASONQ_BROKER_QUEUE_TYPE"] == "quorum" and env["REASONQ_BROKER_URL"].startswith(
        "${REASONQ_BROKER_URL:-amqp://"
    )
    broker = env["REASONQ_BROKER_URL"].removeprefix("${REASONQ_BROKER_URL:-").removesuffix("}")
    settings = Settings(redis_url=env["REASONQ_REDIS_URL"], broker_url=broker, broker_queue_type="quorum")
    assert not settings.broker_is_redis
    assert services["flower"]["environment"]["CELERY_BROKER_URL"] == env["REASONQ_BROKER_URL"]
    assert services["worker"]["deploy"]["replicas"] >= 2
    parser = build_parser()
    for name in ("api-1", "api-2", "worker", "batch-worker", "sim"):
        assert services[name]["image"] == "reasonq:latest"
        parser.parse_args(services[name]["command"][1:])
    assert [name for name in services if "build" in services[name]] == ["api-1"]
    assert "--workers" in services["api-2"]["command"]
    nginx = compose["configs"]["nginx"]["content"]
    assert "server api-1:8000" in nginx and "server api-2:8000" in nginx
    assert "proxy_buffering off" in nginx and "proxy_read_timeout 1h" in nginx
    assert services["proxy"]["ports"] == ["${REASONQ_PUBLISH_HOST:-127.0.0.1}:8000:8000"]
    for name, service in services.items():
        if name != "flower":
            assert service["healthcheck"]["test"][0] == "CMD", name
