"""What ``pip install reasonq`` puts into site-packages: one ``reasonq`` namespace and its declared needs."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from importlib.metadata import distribution, packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (built,) = out.glob("reasonq-*.whl")
    return built


def test_the_wheel_holds_only_the_reasonq_namespace(wheel: Path) -> None:
    """Issue 11: the wheel installed top-level ``api``, ``worker``, ``shared`` and ``bench``, colliding with any
    other distribution that uses those names."""
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"reasonq", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    for module in ("reasonq/api/main.py", "reasonq/worker/app.py", "reasonq/shared/store/records.py", "reasonq/cli.py"):
        assert module in names
    # the data files the code opens at run time
    assert "reasonq/shared/lua/claim.lua" in names and "reasonq/api/static/viewer.html" in names
    assert not any(name.startswith(("reasonq/bench", "reasonq/tests")) for name in names)


def _third_party_imports() -> set[str]:
    found: set[str] = set()
    for folder in ("api", "worker", "shared", "reasonq"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name != "reasonq"}


def test_every_runtime_import_is_a_declared_dependency() -> None:
    """A module the code imports must come from a distribution ``pyproject.toml`` names, not from whatever the
    dev extras happened to bring along (``packaging`` reached kombu that way, issue 11)."""
    requires = distribution("reasonq").requires or []
    declared = {
        re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower().replace("_", "-")
        for req in requires
        if "extra ==" not in req
    }
    by_module = packages_distributions()
    missing = {}
    for module in sorted(_third_party_imports()):
        dists = {d.lower().replace("_", "-") for d in by_module.get(module, [])}
        if not dists & declared:
            missing[module] = sorted(dists)
    assert missing == {}, f"imported but not declared in [project] dependencies: {missing}"


def test_celery_is_asked_for_with_its_redis_extra() -> None:
    requires = distribution("reasonq").requires or []
    assert any(re.match(r"celery\[redis\]", req) for req in requires)


def test_redis_replies_are_parsed_in_c() -> None:
    """hiredis is a dependency for speed alone (a replay of ~4,800 events to 40 viewers: 2.7 s of the API's CPU with
    redis-py's own parser, 0.4 s with hiredis); redis-py falls back to its pure-Python parser in silence when the
    installed hiredis is one it does not accept."""
    from redis.asyncio.connection import DefaultParser
    from redis.utils import HIREDIS_AVAILABLE

    assert HIREDIS_AVAILABLE
    assert DefaultParser.__name__ == "_AsyncHiredisParser"
