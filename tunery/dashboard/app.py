"""The dashboard's ASGI app: the API, the pages, plotly.js, access control and error mapping.

Built by :func:`create_app`; served by ``tunery dashboard`` (:mod:`tunery.cli.dashboard`)
with uvicorn, and by the tests with httpx. Errors of the packages map to HTTP here, once:
unknown experiment/trial 404, bad column/parameter 400, a log outside the logs folder 403,
a refused submission 409, the database unavailable 503.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from controller.local_backend import DEFAULT_WORKDIR, LocalBackend
from tunery.dashboard import api, pages
from tunery.dashboard.assets import IMMUTABLE, PLOTLY_ALIAS, STATIC_DIR, plotly_js, plotly_url
from tunery.dashboard.cache import DEFAULT_MAX_AGE_S, SnapshotCache
from tunery.dashboard.security import (
    TOKEN_COOKIE,
    TOKEN_QUERY,
    LogOutsideFolderError,
    check_binding,
    host_is_loopback,
    token_matches,
)
from tunery.dashboard.worker import ForestWorker
from tunery.store.base import Store
from tunery.store.errors import NotFoundError, StoreError, StoreUnavailableError
from tunery.visualization.data import DataError

HEALTH_PATH = "/healthz"
"""Answers ``ok`` to anyone (the kubelet's probes); reads nothing."""


@dataclass(frozen=True)
class DashboardSettings:
    """How the dashboard serves: where it binds, the store's URL (given to the drivers an
    action starts; None: as ``tunery`` resolves it), its token, whether actions are allowed, the
    work directory whose ``logs`` folder holds trial output, how stale a running
    experiment's data may be, whether to prepare the latest experiments' plots at start."""

    host: str = "127.0.0.1"
    db_url: str | None = None
    token: str | None = None
    allow_actions: bool = False
    workdir: Path = DEFAULT_WORKDIR
    max_age_s: float = DEFAULT_MAX_AGE_S
    warm_up: bool = True


def create_app(store: Store, settings: DashboardSettings | None = None) -> FastAPI:
    """The dashboard over ``store`` (which the caller opens and closes).

    Raises:
        DashboardSecurityError: a non-loopback host without a token, or a short token.
    """
    settings = settings or DashboardSettings()
    check_binding(settings.host, settings.token)
    app = FastAPI(
        title="tunery dashboard",
        version="1",
        description="Read-only JSON API over a tunery store (actions with --allow-actions).",
        openapi_url="/api/openapi.json",
        docs_url=None,  # Swagger UI would load its assets from a CDN
        redoc_url=None,
    )
    backend = LocalBackend(db=settings.db_url, store=store, workdir=settings.workdir)
    context = api.Context(
        cache=SnapshotCache(store, settings.max_age_s),
        backend=backend,
        allow_actions=settings.allow_actions,
    )
    # a server (one thread so far): scikit-learn is imported and the forest fitted in a forked
    # worker, not in the interpreter the first requests need
    if settings.warm_up and threading.active_count() == 1:
        context = dataclasses.replace(context, fit=ForestWorker().fit)
    app.state.context = context
    if settings.warm_up:
        threading.Thread(
            target=api.warm_up, args=(app.state.context,), name="dashboard-warm-up", daemon=True
        ).start()
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get(HEALTH_PATH, include_in_schema=False)
    def health() -> Response:
        return Response("ok", media_type="text/plain")

    @app.get(plotly_url(), include_in_schema=False)
    def vendor_plotly() -> Response:  # the URL changes with the content: cached for good
        return FileResponse(
            plotly_js(), media_type="text/javascript", headers={"Cache-Control": IMMUTABLE}
        )

    @app.get(PLOTLY_ALIAS, include_in_schema=False)
    def vendor_plotly_alias() -> Response:  # a stable name for links from outside the pages
        return FileResponse(
            plotly_js(), media_type="text/javascript", headers={"Cache-Control": "no-cache"}
        )

    _add_access_control(app, settings)
    _add_error_mapping(app)
    return app


def _add_access_control(app: FastAPI, settings: DashboardSettings) -> None:
    token = settings.token

    @app.middleware("http")
    async def access(request: Request, call_next: Any) -> Response:
        if request.url.path == HEALTH_PATH:  # the kubelet's probe: no data, no token
            return await call_next(request)  # type: ignore[no-any-return]
        if token is None:
            if not host_is_loopback(request.headers.get("host")):
                return JSONResponse(
                    {"detail": "this dashboard answers only requests to a loopback host"}, 403
                )
            return await call_next(request)  # type: ignore[no-any-return]
        given = request.query_params.get(TOKEN_QUERY)
        if given is not None and token_matches(given, token):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != TOKEN_QUERY]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            response = RedirectResponse(target, 303)
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return response
        bearer = request.headers.get("authorization", "")
        offered = bearer[7:] if bearer.lower().startswith("bearer ") else None
        if token_matches(offered, token) or token_matches(
            request.cookies.get(TOKEN_COOKIE), token
        ):
            return await call_next(request)  # type: ignore[no-any-return]
        return JSONResponse(
            {
                "detail": "an access token is required: open the dashboard's URL with "
                "?token=<token> once, or send Authorization: Bearer <token>"
            },
            401,
        )


def _add_error_mapping(app: FastAPI) -> None:
    from controller.local import SubmitError
    from tunery.experiment import ExperimentError

    def handler(status: int) -> Any:
        async def respond(request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status)

        return respond

    app.add_exception_handler(NotFoundError, handler(404))
    app.add_exception_handler(DataError, handler(400))
    app.add_exception_handler(ExperimentError, handler(400))
    app.add_exception_handler(LogOutsideFolderError, handler(403))
    app.add_exception_handler(SubmitError, handler(409))
    app.add_exception_handler(StoreUnavailableError, handler(503))
    app.add_exception_handler(StoreError, handler(503))
