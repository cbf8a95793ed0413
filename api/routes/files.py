"""``/v1/files``: upload a batch's input as OpenAI's SDK does (``files.create(purpose="batch")``), and read a
batch's output and error files (``files.content(batch.output_file_id)``), issue 15.

Uploaded files belong to the key that uploaded them and are kept for ``REASONQ_RETENTION_S``
(``shared/store/files.py``). A batch's output and error files are not stored: they are its results, read from its
generations when asked for, so they exist once the batch ended and as long as its generations are kept.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Path, Query, UploadFile
from fastapi.responses import Response

from reasonq.api.auth import Principal, PrincipalDep
from reasonq.api.deps import SettingsDep, StoreDep
from reasonq.api.errors import ApiError, error_responses
from reasonq.api.schemas import FileDeleted, FileList, FilePublic
from reasonq.shared.store import FileMeta, GenerationStore
from reasonq.shared.store.batches import ENDED

router = APIRouter(prefix="/v1/files", tags=["files"])
FileId = Annotated[str, Path(description="The id returned by POST /v1/files, or a batch's output_file_id.")]
_BATCH_FILE = re.compile(r"^file-(batch_[A-Za-z0-9_-]{1,64})-(output|errors)$")
_ERRORS = error_responses(401, 404, 422, 503)


def _no_file(file_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no file {file_id!r}")


async def _batch_file(store: GenerationStore, file_id: str, principal: Principal) -> tuple[FileMeta, bytes] | None:
    """A batch's output or error file, if ``file_id`` names one of an ended batch of the caller's key."""
    match = _BATCH_FILE.match(file_id)
    if match is None:
        return None
    batch_id, which = match.group(1), match.group(2)
    if await store.batches.owner(batch_id) != principal.name:
        return None
    state = await store.batches.get(batch_id)
    if state is None or state.status not in ENDED:
        return None
    content = b"".join(
        [line async for line in store.batches.results(batch_id, "output" if which == "output" else "errors")]
    )
    ended = int(state.completed_at or state.created_at)
    meta = FileMeta(file_id, f"{batch_id}_{which}.jsonl", "batch_output", len(content), ended, None)
    return meta, content


async def _file(store: GenerationStore, file_id: str, principal: Principal) -> tuple[FileMeta, bytes | None]:
    batch_file = await _batch_file(store, file_id, principal)
    if batch_file is not None:
        return batch_file
    meta = await store.files.get(file_id, principal.name)
    if meta is None:
        raise _no_file(file_id)
    return meta, None


@router.post("", response_model=FilePublic, responses=error_responses(400, 401, 413, 415, 422, 503))
async def upload_file(
    file: Annotated[UploadFile, File(description="The file: a batch's input, one request per line (JSONL).")],
    purpose: Annotated[Literal["batch"], Form(description="What the file is for: only `batch` is supported.")],
    store: StoreDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> FilePublic:
    """Upload a file (multipart, as the SDK's ``files.create`` sends it); kept for ``REASONQ_RETENTION_S``."""
    content = await file.read()  # an empty file is kept: a batch made from it is refused ("no lines")
    filename = (file.filename or "upload.jsonl")[:255]
    meta = await store.files.create(principal.name, filename, purpose, content, settings.retention_s)
    return FilePublic.model_validate(meta.to_dict())


@router.get("", response_model=FileList, responses=error_responses(401, 422, 503))
async def list_files(
    store: StoreDep,
    principal: PrincipalDep,
    purpose: Annotated[str | None, Query(max_length=64, description="Only files with this purpose.")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="How many, newest first.")] = 100,
    after: Annotated[str | None, Query(max_length=200, description="The last id of the previous page.")] = None,
    order: Annotated[Literal["desc"], Query(description="Newest first (the only order kept).")] = "desc",
) -> FileList:
    """The caller's uploaded files, newest first (a cursor page: ``has_more``, then ``after=<last_id>``)."""
    metas, more = await store.files.list(principal.name, purpose, limit, after)
    data = [FilePublic.model_validate(m.to_dict()) for m in metas]
    return FileList(
        data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None, has_more=more
    )


@router.get("/{file_id}", response_model=FilePublic, responses=_ERRORS)
async def get_file(file_id: FileId, store: StoreDep, principal: PrincipalDep) -> FilePublic:
    """The file's metadata."""
    meta, _ = await _file(store, file_id, principal)
    return FilePublic.model_validate(meta.to_dict())


@router.get(
    "/{file_id}/content",
    responses={200: {"content": {"application/jsonl": {}}, "description": "The file's bytes"}, **_ERRORS},
)
async def file_content(file_id: FileId, store: StoreDep, principal: PrincipalDep) -> Response:
    """The file's content: what was uploaded, or a batch's output or error lines (OpenAI's line format)."""
    _, content = await _file(store, file_id, principal)
    if content is None:
        content = await store.files.content(file_id, principal.name)
        if content is None:
            raise _no_file(file_id)
    return Response(content, media_type="application/jsonl")


@router.delete("/{file_id}", response_model=FileDeleted, responses=_ERRORS)
async def delete_file(file_id: FileId, store: StoreDep, principal: PrincipalDep) -> FileDeleted:
    """Delete an uploaded file (a batch made from it keeps its lines). A batch's output and error files are its
    results and go with it."""
    if await _batch_file(store, file_id, principal) is not None:
        raise ApiError(422, "invalid_request", f"{file_id!r} is a batch's results; they expire with the batch")
    if not await store.files.delete(file_id, principal.name):
        raise _no_file(file_id)
    return FileDeleted(id=file_id)
