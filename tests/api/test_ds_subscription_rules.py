"""The pure rules under the Durable Streams subscription APIs: the protocol's glob (PROTOCOL.md 6.2), the webhook
URL rule (6.2, 12.8), the retry schedule (7.1) and the signing key's configuration and thumbprint (6.5)."""

from __future__ import annotations

import base64
import re

import pytest

from reasonq.api.ds_signing import WebhookSigner, parse_seed
from reasonq.api.ds_subscriptions_schema import webhook_url_problem
from reasonq.api.ds_wakes import retry_delay_ms
from reasonq.shared.errors import ConfigurationError
from reasonq.shared.store.subscriptions import glob_match


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("events/*", "events/a", True),
        ("events/*", "events/a/b", False),
        ("events/*", "events", False),
        ("events/**", "events", True),
        ("events/**", "events/a/b/c", True),
        ("**/log", "a/b/log", True),
        ("**/log", "log", True),
        ("a/*/c", "a/b/c", True),
        ("a/*/c", "a/b/d", False),
        ("/events/*/", "events/x", True),
        ("events/a*", "events/abc", False),  # * is a whole segment, never part of one
        ("**", "anything/at/all", True),
    ],
)
def test_the_protocols_glob(pattern: str, path: str, matches: bool) -> None:
    assert glob_match(pattern, path) is matches


@pytest.mark.parametrize(
    ("url", "loopback", "allowed"),
    [
        ("https://hooks.example.com/x?token=1", False, True),
        ("https://8.8.8.8/x", False, True),
        ("http://localhost:8080/x", True, True),
        ("http://127.0.0.7/x", True, True),
        ("http://127.0.0.1/x", False, False),  # the development exception is off
        ("http://127.1.0.1/x", True, False),  # 127.0.0.x only
        ("http://hooks.example.com/x", True, False),
        ("https://127.0.0.1/x", True, False),
        ("https://100.64.0.1/x", False, False),  # carrier-grade NAT: not global
        ("https://[2001:4860:4860::8888]/x", False, True),
        ("https://[fe80::1]/x", False, False),
        ("https://0.0.0.0/x", False, False),
        ("https://example.com:99999/x", False, False),
        ("javascript:alert(1)", True, False),
    ],
)
def test_the_webhook_url_rule(url: str, loopback: bool, allowed: bool) -> None:
    problem = webhook_url_problem(url, loopback=loopback)
    assert (problem is None) is allowed, problem
    assert problem is None or problem.startswith("webhook.url: ")


def test_the_retry_schedule_doubles_from_one_second_to_a_minute_with_a_fifth_of_jitter() -> None:
    for retries, base in [(0, 1_000), (1, 2_000), (3, 8_000), (6, 60_000), (40, 60_000)]:
        delays = [retry_delay_ms(retries) for _ in range(200)]
        assert base * 0.8 <= min(delays) and max(delays) <= base * 1.2
        assert max(delays) - min(delays) > base * 0.1  # jittered, not fixed


def test_a_configured_key_is_a_32_byte_seed_and_its_kid_is_its_thumbprint() -> None:
    seed = bytes(range(32))
    for text in (base64.b64encode(seed).decode(), base64.urlsafe_b64encode(seed).decode().rstrip("=")):
        assert parse_seed(text) == seed
    for bad in ("", "short", base64.b64encode(b"x" * 31).decode(), "!!!!"):
        with pytest.raises(ConfigurationError, match="REASONQ_DS_WEBHOOK_SIGNING_KEY"):
            parse_seed(bad)
    one, again, other = WebhookSigner(seed), WebhookSigner(seed), WebhookSigner()
    assert one.kid == again.kid != other.kid and one.kid.startswith("ds_")
    header = one.sign(b"{}", now_s=1_700_000_000)
    assert re.fullmatch(rf"t=1700000000,kid={one.kid},ed25519=[A-Za-z0-9_-]{{86}}", header), header
