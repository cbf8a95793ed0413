"""FastAPI dependencies as typed aliases.

Every getter is ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per
dependency per request (16 % of the API's time in a 3,000-viewer join storm, issue 14).
"""

from __future__ import annotations

from typing import Annotated

from celery import Celery
from fastapi import Depends, Request

from reasonq.api.hub import Hub
from reasonq.api.submission import Submitter
from reasonq.shared.settings import Settings, get_settings
from reasonq.shared.store import GenerationStore


async def get_store(request: Request) -> GenerationStore:
    """The process's generation store (created in the app's lifespan)."""
    store: GenerationStore = request.app.state.store
    return store


async def get_hub(request: Request) -> Hub:
    """The process's event hub."""
    hub: Hub = request.app.state.hub
    return hub


async def get_celery(request: Request) -> Celery:
    """The Celery app used to send tasks (never to run them)."""
    celery: Celery = request.app.state.celery
    return celery


async def get_submitter(request: Request) -> Submitter:
    """The process's submitter (limits, idempotency, record, task)."""
    submitter: Submitter = request.app.state.submitter
    return submitter


async def get_settings_dep() -> Settings:
    """The process's settings (``get_settings``, cached)."""
    return get_settings()


StoreDep = Annotated[GenerationStore, Depends(get_store)]
HubDep = Annotated[Hub, Depends(get_hub)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SubmitterDep = Annotated[Submitter, Depends(get_submitter)]
