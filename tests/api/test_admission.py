"""The per-key admission script (``shared/lua/admit.lua``) against a real redis-server."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from reasonq.api.auth import KeyLimits, KeyRing, Principal
from reasonq.api.errors import ApiError
from reasonq.api.limits import Admission
from reasonq.shared import keys
from reasonq.shared.errors import ConfigurationError
from reasonq.shared.redis import create_redis
from reasonq.shared.settings import Settings
from reasonq.shared.store import AdmissionCounts


def _principal(**limits: int) -> Principal:
    return Principal(f"k{secrets.token_hex(4)}", KeyLimits(**limits))


def _run(unit_redis_url: str, body):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        redis = create_redis(unit_redis_url, max_connections=4)
        try:
            return await body(redis, Admission(AdmissionCounts(redis), retention_s=3600))
        finally:
            await redis.aclose()

    return asyncio.run(main())


def test_rate_limit_counts_a_sliding_minute_and_says_when(unit_redis_url: str) -> None:
    principal = _principal(rpm=3)

    async def body(redis, admission):  # type: ignore[no-untyped-def]
        for i in range(3):
            await admission.admit(principal, f"gen_{i}", interactive=True)
        with pytest.raises(ApiError) as refused:
            await admission.admit(principal, "gen_x", interactive=True)
        assert refused.value.status_code == 429 and refused.value.headers == {"Retry-After": "60"}
        assert await redis.zcard(keys.key_rate_key(principal.name)) == 3  # the refused one is not counted
        await admission.release(principal, "gen_1")  # a creation that failed costs nothing
        await admission.admit(principal, "gen_y", interactive=True)
        # Age the oldest entry: the window slides, and Retry-After follows it.
        await redis.zadd(keys.key_rate_key(principal.name), {"gen_0": int(time.time() * 1000) - 50_000})
        with pytest.raises(ApiError) as again:
            await admission.admit(principal, "gen_z", interactive=True)
        assert again.value.headers is not None and 9 <= int(again.value.headers["Retry-After"]) <= 11

    _run(unit_redis_url, body)


def test_concurrency_prunes_ended_generations_only_when_full(unit_redis_url: str) -> None:
    principal = _principal(concurrent=2)

    async def body(redis, admission):  # type: ignore[no-untyped-def]
        await redis.hset(keys.record_key("gen_a"), "status", "running")
        await redis.hset(keys.record_key("gen_b"), "status", "queued")
        await admission.admit(principal, "gen_a", interactive=True)
        await admission.admit(principal, "gen_b", interactive=True)
        with pytest.raises(ApiError) as refused:
            await admission.admit(principal, "gen_c", interactive=True)
        assert refused.value.status_code == 429 and refused.value.error_type == "too_many_running"
        await admission.admit(principal, "batch_1", interactive=False)  # batches do not count
        await redis.hset(keys.record_key("gen_a"), "status", "completed")
        await admission.admit(principal, "gen_c", interactive=True)  # gen_a ended: its slot is free
        active = await redis.zrange(keys.key_active_key(principal.name), 0, -1)
        assert sorted(active) == [b"gen_b", b"gen_c"]
        # A member whose record never appeared (its creation failed) holds a slot for a minute at most.
        await redis.zadd(keys.key_active_key(principal.name), {"gen_c": int(time.time() * 1000) - 61_000})
        await admission.admit(principal, "gen_d", interactive=True)
        await redis.delete(keys.record_key("gen_a"), keys.record_key("gen_b"))

    _run(unit_redis_url, body)


def test_no_limits_touch_no_key(unit_redis_url: str) -> None:
    principal = _principal()

    async def body(redis, admission):  # type: ignore[no-untyped-def]
        await admission.admit(principal, "gen_a", interactive=True)
        assert not await redis.exists(keys.key_rate_key(principal.name), keys.key_active_key(principal.name))

    _run(unit_redis_url, body)


@pytest.mark.parametrize(
    ("api_keys", "key_limits", "message"),
    [
        ("alice:short", "", "entry 1: the secret must be at least 16 characters"),
        ("bad name:0123456789abcdef", "", "entry 1: the name must be"),
        ("anonymous:0123456789abcdef", "", "entry 1: the name must be"),
        ("a:0123456789abcdef,a:fedcba9876543210", "", "entry 2: a key with this name or secret is already listed"),
        ("a:sha256:abc", "", "entry 1: sha256: must be followed by 64 hex digits"),
        ("a:0123456789abcdef", "{", "REASONQ_KEY_LIMITS: not valid JSON"),
        ("a:0123456789abcdef", '{"b": {"rpm": 1}}', "no key named ['b']"),
        ("a:0123456789abcdef", '{"a": {"rpn": 1}}', "unknown limit(s) ['rpn']"),
        ("a:0123456789abcdef", '{"a": {"rpm": -1}}', "rpm must be a non-negative integer"),
    ],
)
def test_bad_key_configuration_is_named_without_the_secret(api_keys: str, key_limits: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        KeyRing.from_settings(Settings(api_keys=api_keys, key_limits=key_limits))  # type: ignore[arg-type]
    assert message in str(e.value)
    for secret in ("0123456789abcdef", "fedcba9876543210", "short"):
        assert secret not in str(e.value)


def test_keys_are_found_by_digest_and_bare_secrets_get_a_name() -> None:
    ring = KeyRing.from_settings(
        Settings(api_keys="alice:alice-secret-0123456789, bare-secret-0123456789", limit_rpm=5)  # type: ignore[arg-type]
    )
    alice = ring.lookup("alice-secret-0123456789")
    assert alice is not None and alice.name == "alice" and alice.limits.rpm == 5
    bare = ring.lookup("bare-secret-0123456789")
    assert bare is not None and bare.name.startswith("key-")
    assert ring.lookup("alice-secret-012345678") is None and ring.lookup("") is None
    assert not ring.open and KeyRing.from_settings(Settings()).open
