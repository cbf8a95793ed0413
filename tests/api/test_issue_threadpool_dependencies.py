"""Regression (issue 14): FastAPI runs a dependency written as a plain ``def`` in its thread pool, one thread hop per
dependency per request. The routes' getters (store, hub, settings, signer, principal, ...) were plain functions:
during a 3,000-viewer join storm, py-spy put 16 % of the API process's time in ``run_in_threadpool``, plus the
GIL handed back and forth with the pool's threads. Every dependency and endpoint of every route is a coroutine.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from reasonq.api.main import app


def _routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI's included router
            yield from _routes(route.original_router.routes)
        elif isinstance(route, APIRoute) and route.include_in_schema:
            yield route


def _threaded(dependant: Dependant) -> Iterator[str]:
    for sub in dependant.dependencies:
        call = sub.call
        if call is not None and not (inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)):
            yield getattr(call, "__qualname__", repr(call))
        yield from _threaded(sub)


def test_no_route_runs_a_dependency_in_the_thread_pool() -> None:
    routes = list(_routes(app.routes))
    assert len(routes) > 30  # the walk found the routers' routes
    threaded = {f"{route.path}: {name}" for route in routes for name in _threaded(route.dependant)}
    threaded |= {f"{route.path}: endpoint" for route in routes if not inspect.iscoroutinefunction(route.endpoint)}
    assert not threaded, sorted(threaded)
