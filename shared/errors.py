"""reasonq's exceptions: one base, fatal ones apart, and secret redaction for anything that leaves a process."""

from __future__ import annotations

from collections.abc import Iterable


class ReasonqError(Exception):
    """Base of every reasonq exception."""


class FatalError(ReasonqError):
    """A failure that will not pass by retrying (bad configuration, rejected request)."""


class ConfigurationError(FatalError):
    """Settings that cannot work, e.g. a worker with no model endpoint."""


class FencedError(ReasonqError):
    """A write was refused because another attempt owns the generation, or it has ended."""


class ModelError(ReasonqError):
    """The model provider failed: an HTTP error, a timeout, or a broken stream.

    Args:
        kind: short machine-readable kind (``provider_http_error``, ``provider_timeout``, ``provider_connection``,
            ``stall_timeout``, ``generation_timeout``...).
        message: human-readable text, already redacted.
        status_code: the provider's HTTP status when there was one.
        retryable: whether trying again may help (429, 5xx, connection errors, timeouts).
        retry_after_s: the provider's ``Retry-After``, when it sent one.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        status_code: int | None = None,
        *,
        retryable: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status_code = status_code
        self.retryable = retryable
        self.retry_after_s = retry_after_s

    def to_dict(self) -> dict[str, object]:
        """The error as it appears in a record and a ``done`` event."""
        out: dict[str, object] = {"type": self.kind, "message": self.message}
        if self.status_code is not None:
            out["status_code"] = self.status_code
        return out


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each non-trivial secret in ``text`` with ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
