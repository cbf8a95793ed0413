"""Keys live in one module; settings come from REASONQ_* variables."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from reasonq.shared import keys
from reasonq.shared.errors import ConfigurationError
from reasonq.shared.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]


def test_generation_keys_are_distinct_and_prefixed() -> None:
    names = keys.generation_keys("gen_x")
    assert len(set(names)) == 4
    assert all(name.startswith(keys.PREFIX) for name in names)


def test_no_redis_key_is_built_outside_keys_module() -> None:
    offenders = []
    for package in ("api", "worker", "shared", "reasonq"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "keys.py":
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("rq:"):
                    offenders.append(f"{path}:{node.lineno}")
    assert offenders == []


def test_every_key_a_lua_script_touches_is_one_of_its_keys() -> None:
    """Issue 18: `requeue.lua` and `admit.lua` built record keys from an ARGV prefix, and callers passed
    `record_key("")` as that prefix. Redis Cluster routes a script by its KEYS, so every key a script touches
    must be one of them: the first argument of every keyed `redis.call` is `KEYS[...]` or a local set from it."""
    import re

    call = re.compile(r"redis\.call\('([A-Z]+)',\s*([^,)]+)")
    unkeyed = {"TIME"}
    offenders = []
    for path in sorted((ROOT / "shared" / "lua").glob("*.lua")):
        source = path.read_text()
        from_keys = set(re.findall(r"local\s+(\w+)\s*=\s*KEYS\[", source))
        for command, first in call.findall(source):
            first = first.strip()
            if command not in unkeyed and not first.startswith("KEYS[") and first not in from_keys:
                offenders.append(f"{path.name}: {command} {first}")
        if re.search(r"ARGV\[[^\]]+\]\s*\.\.", source):
            offenders.append(f"{path.name}: a key built from ARGV")
    assert offenders == []
    for package in ("api", "worker", "shared"):  # and no key builder called with an empty id as a prefix
        for path in (ROOT / package).rglob("*.py"):
            assert '_key("")' not in path.read_text(), path


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_api_and_worker_never_import_each_other() -> None:
    """Since the ``reasonq.*`` namespace (issue 11) every import starts with ``reasonq``: the check compares the
    part after it (comparing the first part, as it did, could no longer fail)."""
    checked = 0
    for package, forbidden in (("api", "worker"), ("worker", "api"), ("shared", "api"), ("shared", "worker")):
        for path in (ROOT / package).rglob("*.py"):
            for name in _imports(path):
                parts = name.split(".")
                top = parts[1] if parts[0] == "reasonq" and len(parts) > 1 else parts[0]
                assert top != forbidden, f"{path} imports {name}"
                checked += top in ("api", "worker", "shared")
    assert checked > 100  # the walk saw the package imports it is about


def test_api_reaches_redis_only_through_the_store() -> None:
    """Issue 18: ``api/`` reached through ``store.redis`` at 11 sites. Only ``api/main.py`` makes clients (and hands
    them to the store and the hub); no other module of ``api/`` touches a raw client."""
    for path in (ROOT / "api").rglob("*.py"):
        if path.name == "main.py":
            continue
        text = path.read_text()
        assert ".redis." not in text and ".redis(" not in text and "store.redis" not in text, path
        assert not any(name.startswith("reasonq.shared.redis") for name in _imports(path)), path


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASONQ_RETENTION_S", "60")
    monkeypatch.setenv("REASONQ_MODEL_API_KEY", "sk-secret")
    monkeypatch.setenv("REASONQ_SOMETHING_ELSE", "ignored")
    settings = Settings()
    assert settings.retention_s == 60
    assert settings.effective_broker_url == settings.redis_url
    assert "sk-secret" not in repr(settings)
    get_settings.cache_clear()
    try:
        assert get_settings().retention_s == 60
    finally:
        get_settings.cache_clear()


def test_every_setting_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"REASONQ_{name.upper()}" in readme, name


def test_quorum_queues_need_an_amqp_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    """``REASONQ_BROKER_QUEUE_TYPE=quorum`` with a Redis broker is refused in one line saying why; with an
    ``amqp://`` broker it is accepted."""
    monkeypatch.setenv("REASONQ_BROKER_QUEUE_TYPE", "quorum")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigurationError) as refused:
            get_settings()
        assert str(refused.value).startswith("REASONQ_BROKER_QUEUE_TYPE=quorum needs an amqp:// broker")
        monkeypatch.setenv("REASONQ_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
        get_settings.cache_clear()
        assert get_settings().broker_queue_type == "quorum"
    finally:
        get_settings.cache_clear()


def test_issue13_every_script_call_site_keys_share_one_slot() -> None:
    """What each script is called with, for many ids: one hash slot per call (Redis Cluster refuses others)."""
    from redis.crc import key_slot

    def slot_of(names: list[str]) -> set[int]:
        return {key_slot(name.encode()) for name in names}

    for i in range(2_000):
        gid = f"gen_{i:022d}"
        shard = keys.shard_of(gid)
        assert len(slot_of([*keys.script_keys(gid), keys.viewers_key(gid)])) == 1  # claim, finish, cancel, restore
        assert len(slot_of([keys.leases_key(shard), keys.queued_key(shard), keys.record_key(gid)])) == 1  # requeue
        assert len(slot_of([keys.hub_wake_key("hub", shard), keys.events_key(gid)])) == 1  # one XREAD per shard
    for owner in ("anonymous", "a}b", "{x}", "carol"):
        assert len(slot_of([keys.key_rate_key(owner), keys.key_active_key(owner)])) == 1  # admit.lua
    assert len(slot_of([keys.batch_key("b{1}"), keys.batch_items_key("b{1}")])) == 1
    assert len(slot_of([keys.metrics_key(), keys.metrics_batch_key("x")])) == 1  # metrics_add.lua
    # the tags are fixed forever (persisted keys depend on them) and spread over the slot space
    assert keys.SHARD_TAGS[:4] == ("g0.43", "g1.40", "g2.63", "g3.60")
    assert [key_slot(keys.leases_key(s).encode()) * keys.SHARDS // 16_384 for s in range(keys.SHARDS)] == list(
        range(keys.SHARDS)
    )


def test_issue13_redis_urls_of_every_kind_and_a_cluster_broker_refused() -> None:
    from reasonq.shared.redis_urls import kombu_broker, parse_redis_url

    sentinel = parse_redis_url("redis+sentinel://:s3cret@h1:26379,h2:26380/reasonq/2")
    assert (sentinel.kind, sentinel.hosts, sentinel.service, sentinel.db) == (
        "sentinel",
        [("h1", 26379), ("h2", 26380)],
        "reasonq",
        2,
    )
    assert sentinel.password == "s3cret"
    cluster = parse_redis_url("redis+cluster://n1:7000,n2:7001")
    assert (cluster.kind, cluster.hosts) == ("cluster", [("n1", 7000), ("n2", 7001)])
    assert parse_redis_url("redis://127.0.0.1:6379/0").kind == "single"
    for bad, said in (
        ("mysql://x", "scheme"),
        ("redis+sentinel://h1:26379", "service_name"),
        ("redis+cluster://h1:7000/3", "database 0"),
        ("redis+cluster://:pw-NEVER-SHOWN@nohostport", "host:port"),
    ):
        with pytest.raises(ConfigurationError, match=said) as caught:
            parse_redis_url(bad)
        assert "NEVER-SHOWN" not in str(caught.value)
    assert kombu_broker("redis+sentinel://h1:26379,h2:26380/reasonq/1") == (
        "sentinel://h1:26379;sentinel://h2:26380/1",
        {"master_name": "reasonq"},
    )
    assert kombu_broker("sentinel://h1:26379;sentinel://h2:26380/reasonq") == (
        "sentinel://h1:26379;sentinel://h2:26380/0",
        {"master_name": "reasonq"},
    )
    with pytest.raises(ConfigurationError, match="master"):
        kombu_broker("sentinel://h1:26379;sentinel://h2:26380/0")
    with pytest.raises(ValueError, match="celery/celery#2852"):
        Settings(redis_url="redis+cluster://n1:7000", model_base_url="http://m")
    ok = Settings(redis_url="redis+cluster://n1:7000", broker_url="amqp://guest@localhost//", model_base_url="x")
    assert not ok.broker_is_redis and not ok.broker_is_store
    assert Settings(redis_url="redis+sentinel://h:1/s").broker_is_redis


@pytest.mark.parametrize(
    ("providers", "says"),
    [
        ("{not json", "REASONQ_PROVIDERS is not valid JSON"),
        ('["a"]', "REASONQ_PROVIDERS must be a JSON object"),
        ('{"b": {"base_url": "http://b/v1", "modles": ["x"]}}', "REASONQ_PROVIDERS['b']: modles: Extra inputs"),
        (
            '{"b": {"base_url": "http://b/v1", "profile": "anthropic"}}',
            "REASONQ_PROVIDERS['b']: profile: Input should be",
        ),
        ('{"b": {"base_url": "http://b/v1", "fallback": "c"}}', "fallback 'c' is not a configured provider"),
        (
            '{"b": {"base_url": "http://b/v1", "models": ["m"]}, "c": {"base_url": "http://c/v1", "models": ["m"]}}',
            "model 'm' is served by two providers ('b' and 'c')",
        ),
    ],
)
def test_issue16_a_wrong_provider_setting_names_the_provider_and_field(
    monkeypatch: pytest.MonkeyPatch, providers: str, says: str
) -> None:
    monkeypatch.setenv("REASONQ_PROVIDERS", providers)
    monkeypatch.setenv("REASONQ_MODEL_API_KEY", "sk-never-shown-0123")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigurationError) as info:
            get_settings()
    finally:
        get_settings.cache_clear()
    assert says in str(info.value) and "sk-never-shown" not in str(info.value)


def test_issue16_models_route_to_their_provider_with_its_own_name_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_KEY", "sk-vllm-0123")
    settings = Settings(
        model_base_url="http://default/v1",
        models="a,shared",
        providers='{"v": {"base_url": "http://v/v1", "api_key_env": "VLLM_KEY", "profile": "vllm",'
        ' "models": {"r1": "deepseek-ai/DeepSeek-R1", "shared": "s"}, "max_concurrent": 8, "fallback": "default"}}',
    )  # type: ignore[call-arg]
    routes = settings.provider_routes
    assert settings.model_list == ["a", "shared", "r1"]
    assert routes.route("a").name == "default"  # type: ignore[union-attr]
    assert routes.route("shared").name == "v"  # type: ignore[union-attr]  # the named provider wins
    v = routes.route("r1")
    assert v is not None and v.upstream_model("r1") == "deepseek-ai/DeepSeek-R1" and v.profile == "vllm"
    assert v.api_key.get_secret_value() == "sk-vllm-0123" and "sk-vllm" not in repr(v)
    assert v.reserved_slots == 2 and routes.fallback_of(v) is routes.providers["default"]
    assert routes.route("unknown").name == "default"  # type: ignore[union-attr]
    assert "sk-vllm-0123" in routes.secrets()
