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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

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
    """This process's signing key."""

    def __init__(self, seed: bytes | None = None) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(seed) if seed else Ed25519PrivateKey.generate()
        x = _b64url(self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
        # RFC 7638 thumbprint: the required members in lexicographic order, no whitespace (stable per key).
        thumbprint = hashlib.sha256(orjson.dumps({"crv": "Ed25519", "kty": "OKP", "x": x})).digest()
        self.kid = "ds_" + _b64url(thumbprint)
        self.jwk: dict[str, str] = {
            "kty": "OKP",
            "crv": "Ed25519",
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
            "x": x,
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSigner:
        configured = settings.ds_webhook_signing_key.get_secret_value()
        return cls(parse_seed(configured) if configured.strip() else None)

    def sign(self, body: bytes, now_s: int | None = None) -> str:
        """The ``Webhook-Signature`` header for ``body``."""
        t = int(time.time()) if now_s is None else now_s
        signature = self._key.sign(str(t).encode() + b"." + body)
        return f"t={t},kid={self.kid},ed25519={_b64url(signature)}"

    async def announce(self, subscriptions: Subscriptions) -> None:
        """Publish the public key (again): it stays in the JWKS while announced within ``KEY_RETENTION_S``."""
        await subscriptions.announce_key(self.kid, orjson.dumps({"jwk": self.jwk, "seen": int(time.time())}))


async def published_jwks(subscriptions: Subscriptions, own: WebhookSigner) -> dict[str, Any]:
    """The JWK Set: every key announced recently (this process's first); older ones are retired."""
    keys_: list[dict[str, Any]] = [own.jwk]
    stale = []
    cutoff = time.time() - KEY_RETENTION_S
    for kid, raw in (await subscriptions.signing_keys()).items():
        entry = orjson.loads(raw)
        if entry.get("seen", 0) < cutoff:
            stale.append(kid)
        elif kid != own.kid:
            keys_.append(entry["jwk"])
    await subscriptions.retire_keys(stale)
    return {"keys": keys_}
