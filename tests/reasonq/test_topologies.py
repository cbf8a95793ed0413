"""Port choice of the local Redis Cluster (CI once saw a node exit "Address already in use": its cluster-bus port,
port + 10000, was another node's port, both chosen free before either started)."""

from __future__ import annotations

import pytest

from reasonq import topologies


def test_no_node_port_is_another_nodes_bus_port(monkeypatch: pytest.MonkeyPatch) -> None:
    offered = iter([49_407, 39_407, 59_407, 39_408])  # 39407's bus port is 49407; 59407 is 49407's bus port
    monkeypatch.setattr(topologies, "free_port", lambda: next(offered))
    # the machine's own ports are not what is tested: in CI 59407 was once in use, and 49407 was refused for it
    monkeypatch.setattr(topologies, "port_free", lambda port: True)
    taken: set[int] = set()
    chosen = []
    for _ in range(2):
        port = topologies.cluster_port(taken)
        taken |= {port, port + 10_000}
        chosen.append(port)
    assert chosen == [49_407, 39_408]
