"""Regression: the 401 and 404 answers were module-level ``ApiError`` instances raised again and again.

Python appends the frames of every raise to an exception's ``__traceback__``, so each refused request made the
shared instance's traceback longer: memory grew without bound under id probing or a client with a bad key.
Each answer is now a new exception.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from reasonq.api.access import not_found
from reasonq.api.auth import KeyRing, get_principal
from reasonq.api.errors import ApiError
from reasonq.shared.settings import Settings


def _request(app_state: Any) -> Request:
    app = type("App", (), {"state": app_state})()
    return Request({"type": "http", "headers": [(b"authorization", b"Bearer wrong")], "app": app})


def _raised(fn: Any, *args: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        fn(*args)
    return info.value


def test_each_refusal_is_a_new_exception_with_a_short_traceback() -> None:
    state = type("State", (), {"keyring": KeyRing.from_settings(Settings(api_keys="a:0123456789abcdef"))})()
    request = _request(state)
    first, *rest = [_raised(get_principal, request) for _ in range(50)]
    assert all(e is not first for e in rest)
    assert first.status_code == 401

    def depth(e: BaseException) -> int:
        n, tb = 0, e.__traceback__
        while tb is not None:
            n, tb = n + 1, tb.tb_next
        return n

    assert depth(rest[-1]) == depth(first) <= 3
    assert not_found() is not not_found()
