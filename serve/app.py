"""The HTTP side of `aishorts-runner serve`: routes, the token check, errors as JSON, Server-Sent Events.

Responsible for: MoneyPrinterTurbo's `/api/v1` shape (`POST /videos`, `GET
/tasks`, `GET|DELETE /tasks/{id}`, its `/tasks/{id}/` file mount with HEAD and
Range, absolute URLs from the request's own address, or from `X-Forwarded-*`
with `serve --trust-proxy`) with our own additions (resume, events, files,
server memory), the page at `/`, and turning every refusal into a 4xx JSON body
in MoneyPrinterTurbo's envelope (`status`, `message`, `data`) naming the field
and the reason. Jobs themselves are
`serve.jobs`' business; what a task looks like is `serve.views`'.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import psutil
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from ipc.files import ArtifactError, resolve_in_run
from ipc.params import CATEGORIES, ScriptParams, choices
from ipc.pipeline import STAGE_NAMES
from ipc.request import json_schema
from serve import uploads
from serve.guard import RequestGuard, allowed_hosts
from serve.jobs import EventHub, Job, JobManager, TaskRefused, valid_task_id
from serve.mcp_tools import build_mcp, mount_mcp
from serve.requests import (
    FieldError, ResumeRequest, ServerSettings, ShortVideoRequest, TermsRequest, VideoRequest, decode, plan_video,
    video_from_short_video_maker,
)
from serve.views import FILES, file_path, live_progress, mpt_file, narration_srt, script_of, srt_to_vtt, task_view

STATIC = Path(__file__).resolve().parent / "static"
KEEPALIVE_S = 15.0
SYNC_WAIT_S = 1800.0
"""How long `POST /api/v1/scripts` and `/terms` (answered when their stages end) wait at most."""
VOICES_TTL_S = 60.0
EVENT_QUEUE = 5000


def create_app(settings: ServerSettings, token: str | None = None, hosts: frozenset[str] = allowed_hosts("127.0.0.1"),
               cors: tuple[str, ...] = (), trust_proxy: bool = False) -> FastAPI:
    hub = EventHub()

    def on_change(job: Job, kind: str, data: dict) -> None:
        if not hub.wanted(job.id):
            return
        if kind == "task":
            payload = msgspec.json.encode(task_view(job, manager.limits.warn_fraction))
        elif kind == "deleted":
            payload = msgspec.json.encode({"task_id": job.id})
        else:
            payload = msgspec.json.encode({"task_id": job.id, "progress": live_progress(job), **data})
        hub.publish(kind, job.id, payload)

    manager = JobManager(settings, on_change)
    voice_catalogue = VoiceCatalogue()

    mcp_sessions: list = []  # the MCP endpoint's session context, once its route is added below

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(manager.start)
        async with contextlib.AsyncExitStack() as stack:
            for sessions in mcp_sessions:
                await stack.enter_async_context(sessions)
            yield
        await asyncio.to_thread(manager.stop)

    app = FastAPI(title="aishorts-runner", description="Topic in, vertical short out: every heavy stage under a"
                  " memory ceiling. MoneyPrinterTurbo-compatible where it costs little.", lifespan=lifespan)
    app.state.manager = manager
    _add_token_check(app, token)
    if cors:  # pages on these origins may read the answers (their requests pass the guard below)
        app.add_middleware(CORSMiddleware, allow_origins=list(cors), allow_methods=["*"], allow_headers=["*"])
    app.add_middleware(RequestGuard, hosts=hosts, cors=cors)  # outermost: before the token and every route
    _add_error_handlers(app)

    def find(task_id: str) -> Job:
        if not valid_task_id(task_id):
            raise FieldError("task_id", f"{task_id!r} is not a task id (a run directory's name)", 404)
        job = manager.jobs.get(task_id)
        if job is None:
            manager.rescan()
            job = manager.jobs.get(task_id)
        if job is None:
            raise FieldError("task_id", f"no task {task_id} in {settings.runs_dir}", 404)
        return job

    def warn() -> float:
        return manager.limits.warn_fraction

    mcp_sessions.append(mount_mcp(app, build_mcp(manager, settings, find)))

    def view(job: Job, request: Request, with_timeline: bool = False):
        return task_view(job, warn(), with_timeline, base_url(request, trust_proxy))

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.post("/api/v1/videos", openapi_extra=_body_doc(VideoRequest), summary="Make a short (MoneyPrinterTurbo's shape)")
    async def create_video(request: Request) -> Response:
        return await create_task(request, None)

    async def plan_mpt(request: Request, until: str | None, kind: type = VideoRequest, needs_script: bool = False):
        """A MoneyPrinterTurbo body planned as a run stopping after `until`: the request, the plan, unknown names."""
        unknown: list[str] = []
        try:  # MoneyPrinterTurbo answers 400 to a body it cannot use, whatever is wrong with it
            video = decode(await request.body(), kind, required=True, unknown=unknown)
            if needs_script and not (video.video_script or video.script):
                raise FieldError("video_script", "video_script is required: the narration to speak", 400)
            planned = await run_in_threadpool(plan_video, video, settings, until)
        except FieldError as exc:
            exc.status = 400
            raise
        return video, planned, unknown

    async def create_task(request: Request, until: str | None) -> Response:
        _, planned, unknown = await plan_mpt(request, until, needs_script=until is not None)
        job = await run_in_threadpool(manager.submit, planned)
        shown = await run_in_threadpool(view, job, request)
        return ok({"task_id": job.id, "task": shown, "ignored_fields": planned.ignored + unknown})

    @app.post("/api/v1/audio", openapi_extra=_body_doc(VideoRequest), summary="MoneyPrinterTurbo's: the narration"
              " of `video_script` only (a task that stops after tts; its audio_file is a WAV)")
    async def create_audio(request: Request) -> Response:
        return await create_task(request, "tts")

    @app.post("/api/v1/subtitle", openapi_extra=_body_doc(VideoRequest), summary="MoneyPrinterTurbo's: narration and"
              " subtitles of `video_script` (a task that stops after tts; subtitle_path one cue per sentence)")
    async def create_subtitle(request: Request) -> Response:
        return await create_task(request, "tts")

    async def finished_script(request: Request, kind: type):
        """Run the theme and script stages for a MoneyPrinterTurbo body, wait, and give back the script written."""
        video, planned, _ = await plan_mpt(request, "script", kind)
        job = await run_in_threadpool(manager.submit, planned)
        waited = 0.0
        while job.phase != "idle" and waited < SYNC_WAIT_S:
            if await request.is_disconnected():
                await run_in_threadpool(manager.cancel, job)
                break
            await asyncio.sleep(0.2)
            waited += 0.2
        if job.phase != "idle":
            await run_in_threadpool(manager.cancel, job)
            raise FieldError(None, f"the script took over {SYNC_WAIT_S:.0f} s; task {job.id} was cancelled", 504)
        script = await run_in_threadpool(script_of, job)
        if script is None:
            message = job.report.message if job.report is not None else "it stopped"
            raise FieldError(None, f"no script was written (task {job.id} is kept to look at): {message}", 500)
        await run_in_threadpool(manager.remove, job)
        return video, script

    @app.post("/api/v1/scripts", openapi_extra=_body_doc(VideoRequest), summary="MoneyPrinterTurbo's: write the"
              " narration for `video_subject` (theme and script stages only), answered when it is written")
    async def write_script(request: Request) -> Response:
        _, script = await finished_script(request, VideoRequest)
        return ok({"video_script": " ".join(script.sentences), "video_terms": list(script.broll_queries)})

    @app.post("/api/v1/terms", openapi_extra=_body_doc(TermsRequest), summary="MoneyPrinterTurbo's: b-roll search"
              " terms for `video_subject`/`video_script` (theme and script stages only), at most `amount`")
    async def find_terms(request: Request) -> Response:
        video, script = await finished_script(request, TermsRequest)
        if not 1 <= video.amount <= 50:
            raise FieldError("amount", "amount: give 1 to 50 terms", 400)
        return ok({"video_terms": list(script.broll_queries)[: video.amount]})

    @app.get("/api/v1/voices", summary="Each language the narrator speaks with its voices installed here, its"
             " default first (what the page's voice list offers)")
    async def voices() -> Response:
        return ok(await run_in_threadpool(voice_catalogue.get))

    @app.get("/api/v1/musics", summary="MoneyPrinterTurbo's: the background music the runner picks from (bundled"
             " mood tracks)")
    def musics() -> Response:
        return ok({"files": _music_files()})

    @app.post("/api/v1/uploads", summary="The user's own file (a music track, a clip or a picture) as the raw body;"
              " answers its path, for music_file, and its folder, for broll_dir")
    async def upload(request: Request, name: str, folder: str | None = None) -> Response:
        safe = uploads.safe_name(name)
        folder_id, where = await run_in_threadpool(uploads.upload_folder, settings.runs_dir, folder)
        size = await uploads.store(request.stream(), where / safe)
        return ok({"file": str(where / safe), "folder": str(where), "folder_id": folder_id, "name": safe,
                   "size": size, "kind": uploads.kind_of(safe)})

    @app.get("/api/v1/tasks", summary="All tasks, newest first")
    def list_tasks(request: Request, page: int = 1, page_size: int = 50) -> Response:
        if page < 1 or not 1 <= page_size <= 1000:
            raise FieldError("page" if page < 1 else "page_size", "page is 1 or more; page_size 1 to 1000", 422)
        manager.rescan()
        jobs = sorted(manager.jobs.values(), key=_newest_first)
        chosen = jobs[(page - 1) * page_size: page * page_size]
        views = [view(job, request) for job in chosen]
        return ok({"tasks": views, "total": len(jobs), "page": page, "page_size": page_size})

    @app.get("/api/v1/tasks/{task_id}", summary="One task, with its stages live and its memory timeline")
    def get_task(task_id: str, request: Request) -> Response:
        return ok(view(find(task_id), request, with_timeline=True))

    @app.delete("/api/v1/tasks/{task_id}", summary="Cancel a queued or running task (its stage trees are killed);"
                " remove a finished one and its files")
    def delete_task(task_id: str, request: Request) -> Response:
        job = find(task_id)
        shown = view(job, request)
        if job.phase in ("queued", "running"):
            manager.cancel(job)
            return ok(view(job, request))
        manager.remove(job)
        return ok(shown)

    @app.post("/api/v1/tasks/{task_id}/resume", summary="Resume from the last finished stage, optionally with more memory",
              openapi_extra=_body_doc(ResumeRequest, required=False))
    async def resume_task(task_id: str, request: Request) -> Response:
        job = find(task_id)
        resume = decode(await request.body(), ResumeRequest)
        limits = {stage: str(size) for stage, size in resume.limits.items()}
        max_ram = None if resume.max_ram is None else str(resume.max_ram)
        await run_in_threadpool(manager.resume, job, limits, max_ram)
        return ok(await run_in_threadpool(view, job, request))

    @app.get("/api/v1/tasks/{task_id}/events", summary="Server-Sent Events of one task: task, progress, sample")
    async def task_events(task_id: str, request: Request) -> StreamingResponse:
        job = find(task_id)
        return _event_stream(hub, request, [job], task_id, warn())

    @app.get("/api/v1/events", summary="Server-Sent Events of every task")
    async def all_events(request: Request) -> StreamingResponse:
        return _event_stream(hub, request, [], None, warn())

    @app.api_route("/tasks/{task_id}/{name}", methods=["GET", "HEAD"], summary="MoneyPrinterTurbo's file mount:"
                   " final-1.mp4, combined-1.mp4, audio.wav, subtitle.srt, and our own file names (HEAD, Range)")
    def mpt_task_file(task_id: str, name: str) -> Response:
        job = find(task_id)
        found = mpt_file(job, name)
        if found is None:
            raise FieldError("name", f"{name!r}: the files are final-1.mp4, combined-1.mp4, audio.wav, subtitle.srt"
                             f" and {', '.join(n for n in FILES if n != 'captions.vtt')}", 404)
        path, media_type = found
        try:
            path = resolve_in_run(job.run_dir, str(path.relative_to(job.run_dir)))
        except (ArtifactError, ValueError) as exc:
            raise FieldError("name", str(exc), 404) from None
        if not path.is_file():
            srt = narration_srt(job) if name == "subtitle.srt" else None
            if srt is None:
                raise FieldError("name", f"task {task_id} has no {name} (yet)", 404)
            return Response(srt, media_type=media_type, headers={"Cache-Control": "no-cache"})
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})

    @app.api_route("/api/v1/tasks/{task_id}/{name}", methods=["GET", "HEAD"], summary="A file of the run: final.mp4"
                   " (Range), captions, thumbnail, memory.svg, report.json")
    def task_file(task_id: str, name: str, download: bool = False) -> Response:
        job = find(task_id)
        if name not in FILES:
            raise FieldError("name", f"{name!r}: the files are {', '.join(FILES)}", 404)
        try:
            path = resolve_in_run(job.run_dir, file_path(job, name).name)
        except ArtifactError as exc:
            raise FieldError("name", str(exc), 404) from None
        if not path.is_file():
            raise FieldError("name", f"task {task_id} has no {name} (yet)", 404)
        if name == "captions.vtt":
            return Response(srt_to_vtt(path.read_text(encoding="utf-8", errors="replace")), media_type=FILES[name])
        return FileResponse(path, media_type=FILES[name], filename=f"{task_id}-{name}" if download else None,
                            headers={"Cache-Control": "no-cache"})

    @app.post("/api/short-video", summary="short-video-maker's way to make a short: its scenes' text is the script",
              openapi_extra=_body_doc(ShortVideoRequest))
    async def short_video(request: Request) -> Response:
        video = video_from_short_video_maker(decode(await request.body(), ShortVideoRequest, required=True))
        planned = await run_in_threadpool(plan_video, video, settings)
        job = await run_in_threadpool(manager.submit, planned)
        return Response(msgspec.json.encode({"videoId": job.id}), media_type="application/json")

    @app.get("/api/short-video/{task_id}/status", summary="short-video-maker's status: processing, ready or failed")
    def short_video_status(task_id: str) -> Response:
        shown = task_view(find(task_id), warn())
        status = {1: "ready", -1: "failed"}.get(shown.state, "processing")
        return Response(msgspec.json.encode({"status": status}), media_type="application/json")

    @app.get("/api/short-video/{task_id}", summary="short-video-maker's download of the finished short")
    def short_video_file(task_id: str) -> Response:
        return task_file(task_id, "final.mp4")

    @app.get("/api/v1/options", summary="The choices the form offers: categories, platforms, stages, pipelines")
    def options() -> Response:
        return ok({"categories": list(CATEGORIES), "platforms": list(choices(ScriptParams, "platform")),
                   "stages": list(STAGE_NAMES), "pipelines": sorted(settings.pipelines)})

    @app.get("/api/v1/schema", summary="The request schema (JSON Schema): every option of a short, its choices,"
             " limits and help; the page builds its form from it")
    def request_schema() -> Response:
        return ok(json_schema())

    @app.get("/api/v1/server", summary="The server's own memory and its queue")
    def server_state() -> Response:
        jobs = list(manager.jobs.values())
        own = psutil.Process().memory_info().rss
        return ok({
            "rss_bytes": own,
            "total_rss_bytes": own + manager.stages_rss(),
            "max_ram_bytes": settings.max_ram,
            "jobs": settings.jobs,
            "running": sum(job.phase == "running" for job in jobs),
            "queued": sum(job.phase == "queued" for job in jobs),
            "warn_fraction": warn(),
            "pipelines": sorted(settings.pipelines),
        })

    return app


class VoiceCatalogue:
    """`python -m stages.voices list --json` run in its own process (the stage code stays out of the server),
    remembered for `VOICES_TTL_S` (voices change only when someone fetches more)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: list | None = None
        self._at = 0.0

    def get(self) -> list:
        with self._lock:
            if self._value is None or time.monotonic() - self._at > VOICES_TTL_S:
                self._value, self._at = self._read(), time.monotonic()
            return self._value

    @staticmethod
    def _read() -> list:
        try:
            done = subprocess.run([sys.executable, "-m", "stages.voices", "list", "--json"], capture_output=True,
                                  text=True, timeout=120, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FieldError(None, f"could not list the voices: {exc}", 500) from None
        if done.returncode != 0:
            raise FieldError(None, f"could not list the voices: {done.stderr.strip()[-500:]}", 500)
        return msgspec.json.decode(done.stdout)


def _music_files() -> list[dict]:
    """The bundled mood tracks (immich-memories-music, a data package: nothing heavy is imported)."""
    try:
        from immich_memories_music import tracks_dir
    except ImportError:
        return []
    root = Path(tracks_dir())
    return [{"name": path.name, "size": path.stat().st_size, "file": str(path), "mood": path.parent.name}
            for path in sorted(root.glob("*/*")) if path.is_file() and not path.name.startswith(".")]


def _body_doc(kind: type, required: bool = True) -> dict:
    """The OpenAPI request body of a msgspec Struct, its nested definitions inlined (so /docs can show it)."""
    schema = msgspec.json.schema(kind)
    definitions = schema.pop("$defs", {})

    def inline(node):
        if isinstance(node, dict):
            if set(node) == {"$ref"}:
                return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return {"requestBody": {"required": required, "content": {"application/json": {"schema": inline(schema)}}}}


def base_url(request: Request, trust_proxy: bool) -> str:
    """The address clients reached the server at, for absolute URLs: scheme, host and any path prefix.

    Behind a reverse proxy (`serve --trust-proxy`) it is the proxy's, from `X-Forwarded-Proto`, `-Host` and
    `-Prefix`; otherwise those headers are never believed (any client could set them) and the request's own
    Host (already checked against the names the server answers to) is used.
    """
    own = str(request.base_url).rstrip("/")
    if not trust_proxy:
        return own
    headers = request.headers
    scheme = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    host = headers.get("x-forwarded-host", "").split(",")[0].strip()
    prefix = headers.get("x-forwarded-prefix", "").split(",")[0].strip().rstrip("/")
    if scheme not in ("http", "https"):
        scheme = request.url.scheme
    if not host or any(c in host for c in "/\\ @?#"):
        host = request.headers.get("host", request.url.netloc)
    if not re.fullmatch(r"(/[\w.~-]+)*", prefix):
        prefix = ""
    return f"{scheme}://{host}{prefix}"


def ok(data: object) -> Response:
    return Response(msgspec.json.encode({"status": 200, "message": "success", "data": data}),
                    media_type="application/json")


def _newest_first(job: Job) -> tuple:
    submitted = job.record.submitted_at if job.record is not None else 0.0
    return (-(submitted or _mtime(job.run_dir)), job.id)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _refusal(status: int, field: str | None, reason: str) -> JSONResponse:
    return JSONResponse({"status": status, "message": reason, "data": None, "field": field,
                         "detail": [{"field": field, "reason": reason}]}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    """The one place where what the server refuses becomes an HTTP answer."""

    @app.exception_handler(FieldError)
    async def field_error(request: Request, exc: FieldError) -> JSONResponse:
        return _refusal(exc.status, exc.field, exc.reason)

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


def _event_stream(hub: EventHub, request: Request, jobs: list[Job], task_id: str | None,
                  warn_fraction: float) -> StreamingResponse:
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=EVENT_QUEUE)

    def offer(item: tuple[str, bytes]) -> None:
        """A client that stopped reading loses samples and progress, not the server; a task's change of state
        or removal still gets in, in the place of the oldest event waiting."""
        if events.full() and item[0] in ("task", "deleted"):
            events.get_nowait()
        with contextlib.suppress(asyncio.QueueFull):
            events.put_nowait(item)

    def deliver(kind: str, _task: str, data: bytes) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: the server is stopping
            loop.call_soon_threadsafe(offer, (kind, data))

    unsubscribe = hub.subscribe(deliver, task_id)

    async def stream():
        try:
            for job in jobs:
                yield _sse("task", msgspec.json.encode(task_view(job, warn_fraction)))
            while not await request.is_disconnected():
                try:
                    kind, data = await asyncio.wait_for(events.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                yield _sse(kind, data)
        finally:
            unsubscribe()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _sse(kind: str, data: bytes) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

