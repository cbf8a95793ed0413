"""The Redis URLs reasonq takes (``REASONQ_REDIS_URL``, a Redis ``REASONQ_BROKER_URL``), parsed without a client.

- ``redis://`` / ``rediss://``: one server;
- ``redis+sentinel://[user:password@]host:port[,host:port…]/service_name[/db]``: the primary the Sentinels name;
- ``redis+cluster://[user:password@]host:port[,host:port…]``: a Redis Cluster (any reachable nodes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

from reasonq.shared.errors import ConfigurationError

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


@dataclass(frozen=True)
class RedisTarget:
    """What a ``REASONQ_REDIS_URL`` names."""

    kind: str  # "single" | "sentinel" | "cluster"
    url: str = ""  # the plain URL, for "single"
    hosts: list[tuple[str, int]] = field(default_factory=list)
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False


def parse_redis_url(url: str) -> RedisTarget:
    """Parse a Redis URL of any supported kind; errors name the problem but never echo the URL (a password)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigurationError(
            "REASONQ_REDIS_URL must start with redis://, rediss://, redis+sentinel:// or redis+cluster://"
        )
    if scheme in ("redis", "rediss", "unix"):
        return RedisTarget("single", url=url)
    if scheme not in SENTINEL_SCHEMES + CLUSTER_SCHEMES:
        raise ConfigurationError(
            f"REASONQ_REDIS_URL has the scheme {scheme!r}; use redis:// or rediss:// (one server), "
            "redis+sentinel://host:port[,host:port…]/service_name[/db] or redis+cluster://host:port[,host:port…]"
        )
    userinfo, at, rest = rest.rpartition("@")
    username = password = None
    if at:
        user, _, secret = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    netloc, _, path = rest.partition("/")
    hosts = []
    for item in filter(None, netloc.split(",")):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(f"REASONQ_REDIS_URL: {item!r} is not host:port")
        hosts.append((host, int(port)))
    if not hosts:
        raise ConfigurationError("REASONQ_REDIS_URL names no host:port")
    parts = [p for p in path.split("?")[0].split("/") if p]
    ssl = scheme.startswith("rediss")
    if scheme in CLUSTER_SCHEMES:
        if parts not in ([], ["0"]):
            raise ConfigurationError("REASONQ_REDIS_URL: a Redis Cluster has only database 0")
        return RedisTarget("cluster", hosts=hosts, username=username, password=password, ssl=ssl)
    if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ConfigurationError("REASONQ_REDIS_URL: a Sentinel URL ends with /service_name or /service_name/db")
    db = int(parts[1]) if len(parts) == 2 else 0
    return RedisTarget("sentinel", hosts=hosts, service=parts[0], db=db, username=username, password=password, ssl=ssl)


def kombu_broker(url: str) -> tuple[str, dict[str, str]]:
    """Celery's broker URL and transport options for ``url``: a Sentinel URL (``redis+sentinel://`` as above, or
    kombu's ``sentinel://h:p;sentinel://h:p/service_name[/db]``) becomes kombu's ``sentinel://h:p;…/db`` with the
    service as ``master_name``; other URLs pass unchanged."""
    scheme = url.partition("://")[0]
    if scheme == "sentinel":  # kombu's own list form, with the master name in the path
        url = "redis+sentinel://" + ",".join(part.removeprefix("sentinel://") for part in url.split(";"))
        parts = [p for p in url.partition("://")[2].partition("/")[2].split("/") if p]
        if not parts or parts[0].isdigit():
            raise ConfigurationError(
                "REASONQ_BROKER_URL: a sentinel:// broker URL ends with /service_name[/db] (the master's name)"
            )
    elif scheme not in SENTINEL_SCHEMES:
        return url, {}
    target = parse_redis_url(url)
    auth = f"{target.username or ''}:{target.password}@" if target.password else ""
    hosts = ";".join(f"sentinel://{auth}{host}:{port}" for host, port in target.hosts)
    return f"{hosts}/{target.db}", {"master_name": target.service}
