"""Client keys: who is calling, and what that key may do.

``REASONQ_API_KEYS`` lists keys as ``name:secret`` (or ``name:sha256:<hex>``, so the secret itself need not be in
the environment). Only SHA-256 digests are kept in memory; a presented key is hashed and looked up by its
digest, so the time a check takes says nothing about how much of a real key a guess shares (the guess cannot
steer its digest), and no secret is ever compared character by character.
With no keys configured the deployment is open: every caller is the one ``anonymous`` principal.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request

from reasonq.api.errors import ApiError
from reasonq.shared.errors import ConfigurationError
from reasonq.shared.settings import Settings
from reasonq.shared.store import ANONYMOUS

logger = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HEX_RE = re.compile(r"^[0-9a-f]{64}$")
_LIMIT_FIELDS = {"rpm", "concurrent", "max_tokens", "models"}


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """What one key may do; 0 (or ``None`` for models) means no limit."""

    rpm: int = 0
    concurrent: int = 0
    max_tokens: int = 0
    models: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: the key's name (what generations are owned by) and its limits."""

    name: str
    limits: KeyLimits = field(default_factory=KeyLimits)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _models(value: Any, where: str) -> frozenset[str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = [m.strip() for m in value.split(",") if m.strip()]
    if not isinstance(value, list) or not all(isinstance(m, str) and m for m in value):
        raise ConfigurationError(f"{where}: models must be a list of model names")
    return frozenset(value)


def _limits(raw: dict[str, Any], base: KeyLimits, where: str) -> KeyLimits:
    unknown = set(raw) - _LIMIT_FIELDS
    if unknown:
        raise ConfigurationError(f"{where}: unknown limit(s) {sorted(unknown)}; known: {sorted(_LIMIT_FIELDS)}")
    values: dict[str, Any] = {}
    for name in ("rpm", "concurrent", "max_tokens"):
        value = raw.get(name, getattr(base, name))
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigurationError(f"{where}: {name} must be a non-negative integer")
        values[name] = value
    models = _models(raw["models"], where) if "models" in raw else base.models
    return KeyLimits(models=models, **values)


class KeyRing:
    """The configured keys, by digest.

    Args:
        entries: (name, sha256 hex digest, limits) per key.
    """

    def __init__(self, entries: list[tuple[str, str, KeyLimits]], default_limits: KeyLimits) -> None:
        self._by_digest = {digest: Principal(name, limits) for name, digest, limits in entries}
        self.anonymous = Principal(ANONYMOUS, default_limits)

    @property
    def open(self) -> bool:
        """No keys configured: everyone is ``anonymous``."""
        return not self._by_digest

    @property
    def names(self) -> list[str]:
        """The configured key names."""
        return sorted(p.name for p in self._by_digest.values())

    def lookup(self, presented: str) -> Principal | None:
        """The principal of a presented key, ``None`` if it is not one of ours."""
        return self._by_digest.get(_digest(presented))

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """Parse ``REASONQ_API_KEYS``, ``REASONQ_KEY_LIMITS`` and the ``REASONQ_LIMIT_*`` defaults.

        Raises:
            ConfigurationError: naming the entry (by position, never by its secret) that is wrong.
        """
        default = KeyLimits(
            rpm=settings.limit_rpm,
            concurrent=settings.limit_concurrent,
            max_tokens=settings.limit_max_tokens,
            models=_models(settings.limit_models, "REASONQ_LIMIT_MODELS"),
        )
        try:
            overrides = orjson.loads(settings.key_limits) if settings.key_limits.strip() else {}
        except orjson.JSONDecodeError as e:
            raise ConfigurationError(f"REASONQ_KEY_LIMITS: not valid JSON ({e})") from e
        if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
            raise ConfigurationError('REASONQ_KEY_LIMITS: a JSON object of objects, e.g. {"alice": {"rpm": 60}}')

        entries: list[tuple[str, str, KeyLimits]] = []
        raw_keys = [e.strip() for e in re.split(r"[,\n]", settings.api_keys.get_secret_value()) if e.strip()]
        for position, entry in enumerate(raw_keys, start=1):
            where = f"REASONQ_API_KEYS entry {position}"
            name, sep, secret = entry.partition(":")
            if not sep:  # a bare secret: named after its digest
                name, secret = f"key-{_digest(entry)[:8]}", entry
            if not _NAME_RE.match(name) or name == ANONYMOUS:
                raise ConfigurationError(f"{where}: the name must be 1-64 of A-Z a-z 0-9 _ . - (not {ANONYMOUS!r})")
            if secret.startswith("sha256:"):
                digest = secret.removeprefix("sha256:").lower()
                if not _HEX_RE.match(digest):
                    raise ConfigurationError(f"{where}: sha256: must be followed by 64 hex digits")
            elif len(secret) < 16:
                raise ConfigurationError(f"{where}: the secret must be at least 16 characters")
            else:
                digest = _digest(secret)
            if any(n == name or d == digest for n, d, _ in entries):
                raise ConfigurationError(f"{where}: a key with this name or secret is already listed")
            limits = _limits(overrides.get(name, {}), default, f"REASONQ_KEY_LIMITS[{name!r}]")
            entries.append((name, digest, limits))
        unknown = set(overrides) - {n for n, _, _ in entries} - ({ANONYMOUS} if not entries else set())
        if unknown:
            raise ConfigurationError(f"REASONQ_KEY_LIMITS: no key named {sorted(unknown)}")
        if not entries and ANONYMOUS in overrides:
            default = _limits(overrides[ANONYMOUS], default, f"REASONQ_KEY_LIMITS[{ANONYMOUS!r}]")
        return cls(entries, default)


def announce_access(ring: KeyRing) -> None:
    """Say at start who may call: the key names, or loudly that anyone can."""
    if ring.open:
        logger.warning(
            "OPEN MODE: no REASONQ_API_KEYS configured; ANYONE who can reach this API can submit generations "
            "and read all of them. Bind it to 127.0.0.1 (the default) or configure keys."
        )
    else:
        logger.info("API keys required; %d key(s): %s", len(ring.names), ", ".join(ring.names))


def get_keyring(request: Request) -> KeyRing:
    """The process's key ring (built in the app's lifespan)."""
    ring: KeyRing = request.app.state.keyring
    return ring


def bearer_token(request: Request) -> str | None:
    """The credential of an ``Authorization: Bearer`` header, if any."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, credential = header.partition(" ")
    return credential.strip() if scheme.lower() == "bearer" and credential.strip() else None


def unauthorized() -> ApiError:
    """The 401 for a missing or wrong key (a new instance each time: re-raising one shared instance would grow
    its traceback with every request)."""
    return ApiError(
        401,
        "unauthorized",
        "a valid API key is required: send the header Authorization: Bearer <key>",
        {"WWW-Authenticate": 'Bearer realm="reasonq"'},
    )


def authenticate(request: Request) -> Principal | None:
    """The caller by its key (``anonymous`` in open mode), ``None`` when no valid key was sent."""
    ring = get_keyring(request)
    if ring.open:
        return ring.anonymous
    presented = bearer_token(request)
    return ring.lookup(presented) if presented is not None else None


def get_principal(request: Request) -> Principal:
    """The caller; a 401 without a valid key (never says whether a key exists)."""
    principal = authenticate(request)
    if principal is None:
        raise unauthorized()
    return principal


async def _principal(request: Request) -> Principal:
    return get_principal(request)  # async: a plain def dependency runs in the thread pool (api/deps.py)


PrincipalDep = Annotated[Principal, Depends(_principal)]
