"""Webhook signatures of Durable Streams subscriptions (PROTOCOL.md 6.5, 7.1): Ed25519 over ``<t>.<raw body>``,
header ``Webhook-Signature: t=<unix s>,kid=<key id>,ed25519=<base64url>``, public keys as a JWK Set.

The key is ``REASONQ_DS_WEBHOOK_SIGNING_KEY`` (a 32-byte Ed25519 seed, base64), the same in every API process;
without it each process makes its own at start. Either way the private key never leaves its process: each process
announces its public JWK in Redis, and ``GET /v1/stream/__ds/jwks.json`` (from any process) lists every key
announced within ``KEY_RETENTION_S``, longer than a receiver's replay window, so a restart's new key and the
deliveries signed before it both verify (the protocol's key rotation rule).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from typing import Any

import orjson

from reasonq.shared.errors import ConfigurationError
from reasonq.shared.settings import Settings
from reasonq.shared.store.subscriptions import Subscriptions

KEY_RETENTION_S = 3_600  # a key nobody announced for this long leaves the JWKS (receivers allow 5 min of skew)
ANNOUNCE_EVERY_S = 60.0


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def parse_seed(text: str) -> bytes:
    """A configured key: 32 bytes in base64 or base64url, padded or not."""
    cleaned = text.strip()
    try:
        raw = base64.urlsafe_b64decode(cleaned.replace("+", "-").replace("/", "_") + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ConfigurationError(
            "REASONQ_DS_WEBHOOK_SIGNING_KEY: needs an Ed25519 seed of 32 bytes in base64 "
            '(python -c "import os, base64; print(base64.b64encode(os.urandom(32)).decode())")'
        )
    return raw


class WebhookSigner:
    """This process's signing key, made (and ``cryptography`` imported, 6 MB) on first use: an API process that
    never serves a subscription never pays for it."""

    def __init__(self, seed: bytes | None = None) -> None:
        self._seed = seed
        self._key: Any = None
        self._jwk: dict[str, str] = {}
        self._announced_at = float("-inf")

    def _load(self) -> Any:
        if self._key is None:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
            from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

            key = Ed25519PrivateKey.from_private_bytes(self._seed) if self._seed else Ed25519PrivateKey.generate()
            x = _b64url(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
            # RFC 7638 thumbprint: the required members in lexicographic order, no whitespace (stable per key).
            thumbprint = hashlib.sha256(orjson.dumps({"crv": "Ed25519", "kty": "OKP", "x": x})).digest()
            kid = "ds_" + _b64url(thumbprint)
            self._jwk = {"kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig", "alg": "EdDSA", "x": x}
            self._key = key
        return self._key

    @property
    def loaded(self) -> bool:
        return self._key is not None

    @property
    def kid(self) -> str:
        self._load()
        return self._jwk["kid"]

    @property
    def jwk(self) -> dict[str, str]:
        self._load()
        return self._jwk

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSigner:
        configured = settings.ds_webhook_signing_key.get_secret_value()
        return cls(parse_seed(configured) if configured.strip() else None)

    def sign(self, body: bytes, now_s: int | None = None) -> str:
        """The ``Webhook-Signature`` header for ``body``."""
        t = int(time.time()) if now_s is None else now_s
        signature = self._load().sign(str(t).encode() + b"." + body)
        return f"t={t},kid={self.kid},ed25519={_b64url(signature)}"

    async def announce(self, subscriptions: Subscriptions, *, every_s: float = ANNOUNCE_EVERY_S) -> None:
        """Publish the public key (again, at most every ``every_s``): it stays in the JWKS while announced within
        ``KEY_RETENTION_S``. Called before the first signature, so any process's JWKS verifies it."""
        if time.monotonic() - self._announced_at < every_s:
            return
        await subscriptions.announce_key(self.kid, orjson.dumps({"jwk": self.jwk, "seen": int(time.time())}))
        self._announced_at = time.monotonic()


async def published_jwks(subscriptions: Subscriptions, own: WebhookSigner) -> dict[str, Any]:
    """The JWK Set: every key announced recently (this process's first, once it has one); older ones are
    retired."""
    own_kid = own.kid if own.loaded else None  # (reading the kid of a key not loaded would load it)
    keys_: list[dict[str, Any]] = [own.jwk] if own_kid else []
    stale = []
    cutoff = time.time() - KEY_RETENTION_S
    for kid, raw in (await subscriptions.signing_keys()).items():
        entry = orjson.loads(raw)
        if entry.get("seen", 0) < cutoff:
            stale.append(kid)
        elif kid != own_kid:
            keys_.append(entry["jwk"])
    await subscriptions.retire_keys(stale)
    return {"keys": keys_}
