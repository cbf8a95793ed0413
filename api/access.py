"""Who may touch a generation: its owner's key, or (read-only) a share link made for it.

A generation belongs to the key that created it; any other key gets the same 404 as an id that never existed,
so ids cannot be probed. A share link is ``<expires_at>.<signature>``: an HMAC-SHA256 over the generation id,
the expiry and the generation's share epoch. Raising the epoch (``DELETE .../share``) revokes every link issued
before. It is passed as ``?token=``, because the browser's ``EventSource`` cannot send headers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from typing import Annotated, Literal

from fastapi import Depends, Path, Query, Request

from reasonq.api.auth import authenticate, get_keyring, unauthorized
from reasonq.api.coalesce import Coalescer
from reasonq.api.errors import ApiError, data_lost, not_found
from reasonq.api.submission import checked_id
from reasonq.shared.settings import Settings
from reasonq.shared.store import Access, GenerationStore

GenerationId = Annotated[str, Path(description="The id returned by POST /v1/generations.")]
ShareToken = Annotated[
    str | None,
    Query(max_length=200, description="A share link's token: read-only access to this one generation."),
]


class ShareSigner:
    """Signs and checks share links. The secret is ``REASONQ_SHARE_SECRET``, or else a random one that the first
    API process stores in Redis for all the others (read once, then kept in memory)."""

    def __init__(self, store: GenerationStore, settings: Settings) -> None:
        self._store = store
        configured = settings.share_secret.get_secret_value()
        self._secret: bytes | None = configured.encode() if configured else None
        self._lock = asyncio.Lock()

    async def _key(self) -> bytes:
        if self._secret is None:
            async with self._lock:
                if self._secret is None:
                    self._secret = await self._store.presence.share_secret()
        return self._secret

    def _mac(self, key: bytes, generation_id: str, expires_at: int, epoch: int) -> str:
        digest = hmac.new(key, f"share\n{generation_id}\n{expires_at}\n{epoch}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    async def sign(self, generation_id: str, expires_at: int, epoch: int) -> str:
        """A token for ``generation_id`` valid until ``expires_at`` (unix seconds) while the epoch stays."""
        return f"{expires_at}.{self._mac(await self._key(), generation_id, expires_at, epoch)}"

    async def check(self, token: str, generation_id: str, epoch: int) -> Literal["ok", "expired", "invalid"]:
        """Whether ``token`` opens ``generation_id`` now."""
        expires, _, mac = token.partition(".")
        if not (expires.isascii() and expires.isdigit()) or len(expires) > 12 or not mac:
            return "invalid"
        if expires != str(int(expires)):  # one string per grant: "0<expiry>" was a second valid token (issue 12)
            return "invalid"
        expected = self._mac(await self._key(), generation_id, int(expires), epoch)
        if not hmac.compare_digest(expected.encode(), mac.encode()):
            return "invalid"
        return "ok" if int(expires) > time.time() else "expired"


async def get_signer(request: Request) -> ShareSigner:
    """The process's share-link signer."""
    signer: ShareSigner = request.app.state.signer
    return signer


SignerDep = Annotated[ShareSigner, Depends(get_signer)]

# Access reads shared by the callers of one generation at once (api/coalesce.py: a join storm, issue 14).
AccessReader = Coalescer[str, Access | None]


async def get_access_reader(request: Request) -> AccessReader:
    """The process's access reader (built in the app's lifespan over ``store.records.access_of``)."""
    reader: AccessReader = request.app.state.access
    return reader


AccessDep = Annotated[AccessReader, Depends(get_access_reader)]


async def readable_generation(
    request: Request, generation_id: GenerationId, access_reader: AccessDep, signer: SignerDep, token: ShareToken = None
) -> str:
    """The id of a generation the caller may read: with its owner's key, or with a share link for it; a
    generation whose data Redis evicted in part is a 410 on every read."""
    generation_id = checked_id(generation_id)
    ring = get_keyring(request)
    if token is not None and not ring.open:
        access = await access_reader.get(generation_id)
        verdict = await signer.check(token, generation_id, access.share_epoch) if access is not None else "invalid"
        if verdict == "ok" and access is not None:
            return _whole(generation_id, access)
        principal = authenticate(request)
        if principal is not None and access is not None and access.owner == principal.name:
            return _whole(generation_id, access)  # the owner's valid key wins over a bad link (issue 12)
        if verdict == "expired":  # only a genuine link gets this far: saying so reveals nothing new
            raise ApiError(401, "share_link_expired", "this share link has expired; ask its owner for a new one")
        raise not_found()
    return _whole(generation_id, await _access_of_caller(request, access_reader, generation_id))


async def owned_generation(request: Request, generation_id: GenerationId, access_reader: AccessDep) -> str:
    """The id of a generation the caller's key owns (to cancel it or share it); share links do not count."""
    generation_id = checked_id(generation_id)
    await _access_of_caller(request, access_reader, generation_id)
    return generation_id


def _whole(generation_id: str, access: Access) -> str:
    if not access.intact:
        raise data_lost()
    return generation_id


async def _access_of_caller(request: Request, access_reader: AccessReader, generation_id: str) -> Access:
    principal = authenticate(request)
    if principal is None:
        raise unauthorized()
    access = await access_reader.get(generation_id)
    if access is None or access.owner != principal.name:
        raise not_found()
    return access


ReadableId = Annotated[str, Depends(readable_generation)]
OwnedId = Annotated[str, Depends(owned_generation)]

ResponseId = Annotated[str, Path(description="The id returned by POST /v1/responses (the generation's id).")]


async def readable_response(
    request: Request, response_id: ResponseId, access_reader: AccessDep, signer: SignerDep, token: ShareToken = None
) -> str:
    """``readable_generation`` for a path that names a response."""
    return await readable_generation(request, response_id, access_reader, signer, token)


async def owned_response(request: Request, response_id: ResponseId, access_reader: AccessDep) -> str:
    """``owned_generation`` for a path that names a response."""
    return await owned_generation(request, response_id, access_reader)


ReadableResponseId = Annotated[str, Depends(readable_response)]
OwnedResponseId = Annotated[str, Depends(owned_response)]
