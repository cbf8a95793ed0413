"""Prompts reach the logs only when debug logging of bodies is switched on explicitly."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from reasonq.processes import ManagedProcess, free_port, http_ok, wait_until
from tests.conftest import python_m


@pytest.mark.parametrize(("log_bodies", "logged"), [("1", True), ("0", False)])
def test_prompt_bodies_are_logged_only_on_request(
    stack_env: dict[str, str], logs_dir: Path, log_bodies: str, logged: bool
) -> None:
    port = free_port()
    log_path = logs_dir / f"api-log-bodies-{log_bodies}.log"
    api = ManagedProcess(
        f"api-log-bodies-{log_bodies}",
        python_m("--log-level", "DEBUG", "api", "--port", str(port)),
        {**stack_env, "REASONQ_LOG_BODIES": log_bodies},
        log_path=log_path,
    ).start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(f"{url}/healthz"), timeout_s=30, what="API", process=api)
        prompt = f"a private prompt {log_bodies} sim:reasoning_tokens=1 sim:content_tokens=1"
        r = httpx.post(f"{url}/v1/generations", json={"messages": [{"role": "user", "content": prompt}]})
        assert r.status_code == 202
        gid = r.json()["id"]
        wait_until(lambda: gid in log_path.read_text(), timeout_s=10, what="the submission's log line")
    finally:
        api.stop()
    text = log_path.read_text()
    assert (prompt in text) is logged
    assert "sk-test-SECRET" not in text


def test_open_mode_says_so_loudly(api_url: str, logs_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    from reasonq.cli import _warn_if_exposed

    assert "OPEN MODE: no REASONQ_API_KEYS configured" in (logs_dir / "api.log").read_text()
    with caplog.at_level(logging.WARNING):
        _warn_if_exposed("127.0.0.1")
        assert not caplog.records
        _warn_if_exposed("0.0.0.0")
    assert "OPEN MODE on 0.0.0.0" in caplog.text


def test_share_tokens_in_urls_never_reach_the_access_log(stack_env: dict[str, str], logs_dir: Path) -> None:
    port = free_port()
    log_path = logs_dir / "api-access-log.log"
    api = ManagedProcess(
        "api-access-log", python_m("api", "--port", str(port), "--access-log"), stack_env, log_path=log_path
    ).start()
    token = "1795999999.SECRET-share-token-value"
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(f"{url}/healthz"), timeout_s=30, what="API", process=api)
        path = "/v1/generations/gen_AAAAAAAAAAAAAAAAAAAAAA"
        assert httpx.get(f"{url}{path}/events", params={"after": 1, "token": token}).status_code == 404
        wait_until(lambda: f"{path}/events" in log_path.read_text(), timeout_s=10, what="the access log line")
    finally:
        api.stop()
    text = log_path.read_text()
    assert "SECRET-share-token" not in text
    assert f"{path}/events?after=1&token=[redacted]" in text
