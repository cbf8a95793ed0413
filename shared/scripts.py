"""The one loader of reasonq's Lua scripts (``shared/lua/*.lua``), registered on a client."""

from __future__ import annotations

from functools import cache
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


@cache
def script_source(name: str) -> str:
    """The text of ``shared/lua/<name>.lua`` (read once per process)."""
    return resources.files("reasonq.shared").joinpath("lua", f"{name}.lua").read_text()


def load_script(redis: Redis, name: str) -> AsyncScript:
    """``shared/lua/<name>.lua`` registered on ``redis`` (EVALSHA, loaded on first use)."""
    return redis.register_script(script_source(name))
