"""The assembly of `aishorts-runner serve`: the FastAPI app with its guard, token check, error handlers, lifespan,
routers, MCP endpoint and the page.

Responsible for: putting the server's pieces together (the `JobManager`, settings and event hub on `app.state`,
where the routes' dependencies, `serve.deps`, find them), the order of the checks before any route (Host and
Origin, CORS, the token), and the one place where a refusal becomes its HTTP answer in MoneyPrinterTurbo's envelope
(`status`, `message`, `data`) naming the field and the reason. The routes are the `serve.routes_*` modules', one
`APIRouter` per concern (MoneyPrinterTurbo's `/api/v1` shape and our additions); jobs are `serve.jobs`' business;
what a task looks like is `serve.views`'.
"""
from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from aishorts.serve.guard import RequestGuard, allowed_hosts
from aishorts.serve.jobs import JobManager, TaskNotFound, TaskRefused
from aishorts.serve.live import EventHub
from aishorts.serve.mcp_tools import build_mcp, mount_mcp
from aishorts.serve.requests import FieldError, ServerSettings
from aishorts.serve import routes_files, routes_info, routes_mpt, routes_tasks, routes_uploads

STATIC = Path(__file__).resolve().parent / "static"
ROUTERS = (routes_tasks.router, routes_mpt.router, routes_info.router, routes_uploads.router, routes_files.router)
"""In the order they are matched: a task's events before its files (`/api/v1/tasks/{id}/{name}`)."""


def create_app(settings: ServerSettings, token: str | None = None, hosts: frozenset[str] = allowed_hosts("127.0.0.1"),
               cors: tuple[str, ...] = (), trust_proxy: bool = False) -> FastAPI:
    hub = EventHub()
    manager = JobManager(settings, routes_tasks.publisher(hub, lambda: manager.limits.warn_fraction))
    mcp_server = build_mcp(manager, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(manager.start)
        async with mcp_sessions:
            yield
        await asyncio.to_thread(manager.stop)

    app = FastAPI(title="aishorts-runner", description="Topic in, vertical short out: every heavy stage under a"
                  " memory ceiling. MoneyPrinterTurbo-compatible where it costs little.", lifespan=lifespan)
    app.state.manager, app.state.settings, app.state.hub = manager, settings, hub
    app.state.voices, app.state.trust_proxy = routes_info.VoiceCatalogue(), trust_proxy
    _add_token_check(app, token)
    if cors:  # pages on these origins may read the answers (their requests pass the guard below)
        app.add_middleware(CORSMiddleware, allow_origins=list(cors), allow_methods=["*"], allow_headers=["*"])
    app.add_middleware(RequestGuard, hosts=hosts, cors=cors)  # outermost: before the token and every route
    _add_error_handlers(app)
    mcp_sessions = mount_mcp(app, mcp_server)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in ROUTERS:
        app.include_router(router)
    return app


def _refusal(status: int, field: str | None, reason: str) -> JSONResponse:
    return JSONResponse({"status": status, "message": reason, "data": None, "field": field,
                         "detail": [{"field": field, "reason": reason}]}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    """The one place where what the server refuses becomes an HTTP answer."""

    @app.exception_handler(FieldError)
    async def field_error(request: Request, exc: FieldError) -> JSONResponse:
        return _refusal(exc.status, exc.field, exc.reason)

    @app.exception_handler(TaskNotFound)
    async def task_not_found(request: Request, exc: TaskNotFound) -> JSONResponse:
        return _refusal(404, "task_id", str(exc))

    @app.exception_handler(TaskRefused)
    async def task_refused(request: Request, exc: TaskRefused) -> JSONResponse:
        return _refusal(409, None, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        field = str(first.get("loc", ["", "?"])[-1])
        return _refusal(422, field, f"{field}: {first.get('msg', 'invalid')}")


def _add_token_check(app: FastAPI, token: str | None) -> None:
    """With a token, every API request needs it: `Authorization: Bearer T`, or `?token=T` (for <video>, EventSource).

    The page itself (`/` and `/static/`) is served without it: it holds no data, and reads the token from its own
    address (`/?token=T`) to ask for everything else.
    """
    if not token:
        return

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if request.url.path == "/" or request.url.path.startswith("/static/"):
            return await call_next(request)  # the page's own code holds no data; it asks with the token
        given = request.query_params.get("token", "")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:].strip()
        if not secrets.compare_digest(given.encode(), token.encode()):
            return _refusal(401, "token", "this server needs its token: the header `Authorization: Bearer TOKEN`,"
                            " or ?token=TOKEN in the address")
        return await call_next(request)
