"""HTTP errors: every error answer is JSON ``{"error": {"type", "message", ...}}`` and names what was wrong."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import BusyLoadingError, OutOfMemoryError, ReadOnlyError, RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from reasonq.shared.errors import ReasonqError

logger = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    """What went wrong: a machine-readable ``type`` and a ``message`` naming the problem."""

    type: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    """Every error answer's body."""

    error: ErrorDetail


_MEANINGS = {
    400: "The model's provider refused the request (the message quotes it), or an upload is not valid multipart form "
    "data; retrying the same request will not help",
    401: "No valid API key (send Authorization: Bearer <key>), or an expired share link",
    403: "The key may not use this model",
    404: "No such object (or it expired, or another key owns it), or a model this deployment does not offer",
    409: "This Idempotency-Key was used with another body, or its first request is still being processed",
    410: "The generation's data is no longer whole in Redis (evicted under memory pressure); it cannot be read",
    413: "The body is larger than the limit",
    415: "The body is not JSON (send Content-Type: application/json)",
    422: "Invalid request; the message names the field",
    429: "Over the key's rate or concurrency limit; retry after Retry-After seconds",
    502: "The generation failed (the message says why)",
    503: "Redis or the task queue is unavailable; retry after Retry-After seconds",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the error answers a route can give."""
    return {code: {"model": ErrorBody, "description": _MEANINGS[code]} for code in codes}


class ApiError(ReasonqError):
    """An error answer raised by a route.

    Args:
        status_code: the HTTP status.
        error_type: short machine-readable kind (``not_found``, ``invalid_request``...).
        message: text for a person, naming the problem.
        headers: extra headers (``Retry-After``).
    """

    def __init__(self, status_code: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_type = error_type
        self.message = message
        self.headers = headers


def data_lost() -> ApiError:
    """The 410 of a generation some of whose keys Redis evicted (issue 12): said on every read, never a record
    with empty text or an event stream that waits for ever."""
    return ApiError(
        410,
        "generation_data_lost",
        "this generation's data is no longer complete: Redis evicted some of it under memory pressure (run Redis "
        "with maxmemory-policy noeviction); it cannot be read or resumed",
    )


def not_found() -> ApiError:
    """The 404 of an unknown, expired or another key's generation: one body for all, so ids cannot be probed."""
    return ApiError(404, "not_found", "no generation with this id")


def error_response(
    status_code: int, error_type: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The JSON error body every error answer uses."""
    return JSONResponse(
        {"error": {"type": error_type, "message": message, **extra}}, status_code=status_code, headers=headers
    )


_PREFIXES = ("Value error, ", "Assertion failed, ")
# The tags of tagged unions, which pydantic puts in a location after a list index: a message's role, a Responses
# input item's type (api/responses_schema.py).
_UNION_TAGS = frozenset({"system", "developer", "user", "assistant", "tool"}) | frozenset(
    {"message", "function_call", "function_call_output", "reasoning"}
)
_NOT_JSON_TYPES = frozenset({"dict_type", "model_attributes_type", "model_type"})


def _location(loc: Sequence[Any]) -> str:
    # pydantic names the member of a union it tried (``function-after[_valid_unicode(), str]``,
    # ``list[TextPart]``, a message's role after its index): that is the schema's vocabulary, not the user's; only
    # field names and indexes stay.
    parts = [
        str(p)
        for i, p in enumerate(loc)
        if isinstance(p, int)
        or ("[" not in str(p) and "(" not in str(p) and not (p in _UNION_TAGS and i and isinstance(loc[i - 1], int)))
    ]
    if parts and parts[0] in ("body", "query", "header", "path"):
        where, rest = parts[0], parts[1:]
        return f"{where} {'.'.join(rest)}" if rest else where
    return ".".join(parts)


def _message(err: dict[str, Any]) -> str:
    message = str(err.get("msg", "invalid"))
    for prefix in _PREFIXES:
        message = message.removeprefix(prefix)
    ctx = err.get("ctx") or {}
    if err.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        # A message's role picks its fields: say which roles there are, not pydantic's "Input tag ... found".
        field = str(ctx.get("discriminator", "type")).strip("'")
        if err["type"] == "union_tag_not_found":
            return f"needs a {field}"
        expected = str(ctx.get("expected_tags", "")).replace("'", "")
        return f"{field} {ctx.get('tag')!r} is not one of {expected}"
    if err.get("type") in ("too_long", "too_short") and isinstance(err.get("input"), str):
        # A length constraint checked after a validator says "items" even for a string.
        bound = "at most" if err["type"] == "too_long" else "at least"
        limit = ctx.get("max_length" if err["type"] == "too_long" else "min_length")
        message = f"should have {bound} {limit} characters, not {len(err['input'])}"
    return message


def _json_syntax(err: dict[str, Any], doc: Any) -> str:
    position = next((p for p in err.get("loc", ())[1:] if isinstance(p, int)), None)
    reason = (err.get("ctx") or {}).get("error", "invalid JSON")
    if position is None or not isinstance(doc, str | bytes):
        return f"body: not valid JSON ({reason})"
    text = doc.decode(errors="replace") if isinstance(doc, bytes) else doc
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return f"body: not valid JSON: {reason} at line {line}, column {column}"


def _validation_message(errors: Sequence[Any], doc: Any = None) -> tuple[str, list[dict[str, Any]]]:
    """One message naming the first wrong field in the user's words, and every problem in ``details``."""
    by_field: dict[str, list[str]] = {}
    located = [(err, _location(err.get("loc", ()))) for err in errors]
    fields = {field for _, field in located}
    for err, field in located:
        if err.get("type") == "json_invalid":
            message = _json_syntax(err, doc)
            return message, [{"field": "body", "message": message.removeprefix("body: ")}]
        # A union of a text and a list (``input``, a message's ``content``) whose list member failed inside: "should
        # be a valid string" at the field itself is noise; the inner problem is the one to name.
        if str(err.get("type", "")).endswith("_type") and any(f.startswith((field + ".", field + " ")) for f in fields):
            continue
        text = _message(err)
        if text not in by_field.setdefault(field, []):
            by_field[field].append(text)
    details = []
    for field, texts in by_field.items():
        # The members of a union each failed: "Input should be a valid string or a valid list".
        joined = texts[0] + "".join(" or " + t.removeprefix("Input should be ") for t in texts[1:])
        details.append({"field": field, "message": joined})
    first = details[0] if details else {"field": "body", "message": "invalid request"}
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return f"{first['field']}: {first['message']}{more}", details


def _is_json(content_type: str) -> bool:
    main = content_type.split(";", 1)[0].strip().lower()
    return main in ("", "application/json") or main.endswith("+json")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status_code, exc.error_type, exc.message, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    content_type = request.headers.get("content-type", "")
    if not _is_json(content_type) and any(
        e.get("loc") == ("body",) and e.get("type") in _NOT_JSON_TYPES for e in errors
    ):
        return error_response(
            415,
            "unsupported_media_type",
            f"body: sent as Content-Type {content_type.split(';')[0]!r}; send JSON with "
            "Content-Type: application/json (curl: -H 'content-type: application/json')",
        )
    message, details = _validation_message(errors, exc.body)
    return error_response(422, "invalid_request", message, details=details)


def _allowed_methods(request: Request) -> str:
    """Every method the API documents at this path: Starlette's 405 names only the first route's (issue 12:
    ``GET /v1/generations`` and ``POST /v1/generations`` are two routes). Read from the OpenAPI document, the
    one list of routes and methods that FastAPI keeps public; ``""`` for an undocumented path."""
    app = request.app
    templates: list[tuple[re.Pattern[str], str]] | None = getattr(app.state, "allow_by_path", None)
    if templates is None:
        templates = [
            (
                re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$"),
                ", ".join(sorted(m.upper() for m in ops)),
            )
            for path, ops in app.openapi().get("paths", {}).items()
        ]
        app.state.allow_by_path = templates
    return next((methods for pattern, methods in templates if pattern.match(request.url.path)), "")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 400 and "multipart" in str(exc.detail).lower():  # Starlette's form parser
        message = "body: not valid multipart/form-data (send the file as the form field `file`, with `purpose`)"
        return error_response(400, "invalid_request", message)
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    return error_response(exc.status_code, kind, str(exc.detail), headers)


def _redis_cause(exc: Exception) -> str:
    """The cause of a Redis failure in an operator's words (no address, no credentials)."""
    if isinstance(exc, OutOfMemoryError):
        return "the event store is out of memory (Redis maxmemory reached); retry shortly"
    if isinstance(exc, ReadOnlyError):
        return "the event store is read-only (a Redis replica, during a failover); retry shortly"
    if isinstance(exc, BusyLoadingError):
        return "the event store is loading its data after a restart; retry shortly"
    return "the event store is unavailable; retry shortly"


async def _redis_error(request: Request, exc: Exception) -> Response:
    logger.warning("Redis unavailable while serving %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "unavailable", _redis_cause(exc), {"Retry-After": "1"})


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RedisError, _redis_error)
