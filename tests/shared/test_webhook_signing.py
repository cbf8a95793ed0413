"""Webhook configuration, event types and signatures (issue 15): what the unchanged openai SDK verifies."""

from __future__ import annotations

import base64
import time

import openai
import pytest

from reasonq.shared.errors import ConfigurationError
from reasonq.shared.webhooks import event_body, generation_event_type, parse_webhooks, signature_headers

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.mark.parametrize("secret", [SECRET, "plain text secret"])
def test_the_sdk_unwraps_what_reasonq_signs(secret: str) -> None:
    body = event_body("evt_resp_1", "response.completed", 1_700_000_000)
    headers = signature_headers(secret, "evt_resp_1", int(time.time()), body)
    event = openai.OpenAI(api_key="unused").webhooks.unwrap(body, headers, secret=secret)
    assert (event.id, event.type, event.data.id) == ("evt_resp_1", "response.completed", "resp_1")
    with pytest.raises(openai.InvalidWebhookSignatureError):
        openai.OpenAI(api_key="unused").webhooks.unwrap(body.replace(b"resp_1", b"resp_2"), headers, secret=secret)


def test_an_old_signature_is_refused_so_each_retry_is_signed_anew() -> None:
    body = event_body("evt_x", "batch.completed", 1)
    headers = signature_headers(SECRET, "evt_x", int(time.time()) - 3_600, body)
    with pytest.raises(openai.InvalidWebhookSignatureError, match="too old"):
        openai.OpenAI(api_key="unused").webhooks.unwrap(body, headers, secret=SECRET)


@pytest.mark.parametrize(
    ("status", "finish_reason", "is_response", "expected"),
    [
        ("completed", "stop", True, "response.completed"),
        ("completed", "length", True, "response.incomplete"),
        ("failed", None, True, "response.failed"),
        ("cancelled", "cancelled", True, "response.cancelled"),
        ("completed", "length", False, "generation.completed"),
        ("cancelled", None, False, "generation.cancelled"),
    ],
)
def test_event_types(status: str, finish_reason: str | None, is_response: bool, expected: str) -> None:
    assert generation_event_type(status, finish_reason, is_response) == expected


def test_configuration_errors_name_the_entry_and_field_never_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match=r"REASONQ_WEBHOOKS\[0\]: url: .*http"):
        parse_webhooks('[{"url": "ftp://x", "secret": "s3cr3t-value"}]')
    with pytest.raises(ConfigurationError, match=r"REASONQ_WEBHOOKS\[1\]: events: .*unknown event types") as e:
        parse_webhooks(
            '[{"url": "http://a/", "secret": "s3cr3t-value"}, {"url": "http://b/", "secret": "s3cr3t-value", '
            '"events": ["response.done"]}]'
        )
    assert "s3cr3t-value" not in str(e.value)
    with pytest.raises(ConfigurationError, match="signing secret"):
        parse_webhooks('[{"url": "http://a/", "secret_env": "NOT_SET_HERE"}]')
    with pytest.raises(ConfigurationError, match="JSON list"):
        parse_webhooks('{"url": "http://a/"}')
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    (endpoint,) = parse_webhooks(
        '[{"url": "https://user:pw@hooks.example:8443/in?token=abc", "secret_env": "HOOK_SECRET", '
        '"events": ["batch.completed"]}]'
    )
    assert endpoint.secret.get_secret_value() == SECRET
    assert endpoint.shown == "https://hooks.example:8443/in"  # no password, no token
    assert endpoint.wants("batch.completed") and not endpoint.wants("response.completed")
