"""Tasks and their events: make one (MoneyPrinterTurbo's `POST /api/v1/videos`), list, show, cancel or remove,
resume, and follow them as Server-Sent Events.

Responsible for: those routes, planning a MoneyPrinterTurbo body as a task (shared with `serve.routes_mpt`), and
the event streams fed by the job manager's changes through the `EventHub`. Not for: the files of a task
(`serve.routes_files`), or what a job does (`serve.jobs`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import msgspec
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from aishorts.serve.jobs import Job, JobManager
from aishorts.serve.live import EventHub
from aishorts.serve.requests import FieldError, Planned, ResumeRequest, ServerSettings, VideoRequest, decode, plan_video
from aishorts.serve.deps import BaseUrl, Hub, Manager, Settings, body_doc, ok
from aishorts.serve.views import live_progress, task_view

KEEPALIVE_S = 15.0
EVENT_QUEUE = 5000

router = APIRouter()


@router.post("/api/v1/videos", openapi_extra=body_doc(VideoRequest), summary="Make a short (MoneyPrinterTurbo's shape)")
async def create_video(request: Request, manager: Manager, settings: Settings, address: BaseUrl) -> Response:
    return await create_task(request, manager, settings, address, None)


async def plan_mpt(request: Request, settings: ServerSettings, until: str | None, kind: type = VideoRequest,
                   needs_script: bool = False) -> tuple[VideoRequest, Planned, list[str]]:
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


async def create_task(request: Request, manager: JobManager, settings: ServerSettings, address: str,
                      until: str | None) -> Response:
    """Plan the body, queue it, and answer the new task with the body's names that were ignored."""
    _, planned, unknown = await plan_mpt(request, settings, until, needs_script=until is not None)
    job = await run_in_threadpool(manager.submit, planned)
    shown = await run_in_threadpool(task_view, job, manager.limits.warn_fraction, False, address)
    return ok({"task_id": job.id, "task": shown, "ignored_fields": planned.ignored + unknown})


@router.get("/api/v1/tasks", summary="All tasks, newest first")
def list_tasks(manager: Manager, address: BaseUrl, page: int = 1, page_size: int = 50) -> Response:
    if page < 1 or not 1 <= page_size <= 1000:
        raise FieldError("page" if page < 1 else "page_size", "page is 1 or more; page_size 1 to 1000", 422)
    jobs = sorted(manager.all_jobs(), key=_newest_first)
    chosen = jobs[(page - 1) * page_size: page * page_size]
    views = [task_view(job, manager.limits.warn_fraction, False, address) for job in chosen]
    return ok({"tasks": views, "total": len(jobs), "page": page, "page_size": page_size})


@router.get("/api/v1/tasks/{task_id}", summary="One task, with its stages live and its memory timeline")
def get_task(task_id: str, manager: Manager, address: BaseUrl) -> Response:
    return ok(task_view(manager.find(task_id), manager.limits.warn_fraction, True, address))


@router.delete("/api/v1/tasks/{task_id}", summary="Cancel a queued or running task (its stage trees are killed);"
               " remove a finished one and its files")
def delete_task(task_id: str, manager: Manager, address: BaseUrl) -> Response:
    job = manager.find(task_id)
    shown = task_view(job, manager.limits.warn_fraction, False, address)
    if job.phase in ("queued", "running"):
        manager.cancel(job)
        return ok(task_view(job, manager.limits.warn_fraction, False, address))
    manager.remove(job)
    return ok(shown)


@router.post("/api/v1/tasks/{task_id}/resume", summary="Resume from the last finished stage, optionally with more"
             " memory", openapi_extra=body_doc(ResumeRequest, required=False))
async def resume_task(task_id: str, request: Request, manager: Manager, address: BaseUrl) -> Response:
    job = manager.find(task_id)
    resume = decode(await request.body(), ResumeRequest)
    limits = {stage: str(size) for stage, size in resume.limits.items()}
    max_ram = None if resume.max_ram is None else str(resume.max_ram)
    await run_in_threadpool(manager.resume, job, limits, max_ram)
    return ok(await run_in_threadpool(task_view, job, manager.limits.warn_fraction, False, address))


@router.get("/api/v1/tasks/{task_id}/events", summary="Server-Sent Events of one task: task, progress, sample")
async def task_events(task_id: str, request: Request, manager: Manager, hub: Hub) -> StreamingResponse:
    job = manager.find(task_id)
    return _event_stream(hub, request, [job], task_id, manager.limits.warn_fraction)


@router.get("/api/v1/events", summary="Server-Sent Events of every task")
async def all_events(request: Request, manager: Manager, hub: Hub) -> StreamingResponse:
    return _event_stream(hub, request, [], None, manager.limits.warn_fraction)


def publisher(hub: EventHub, warn_fraction: Callable[[], float]) -> Callable[[Job, str, dict], None]:
    """The job manager's `on_change`: each change of a job encoded once for the streams that listen for it."""

    def on_change(job: Job, kind: str, data: dict) -> None:
        if not hub.wanted(job.id):
            return
        if kind == "task":
            payload = msgspec.json.encode(task_view(job, warn_fraction()))
        elif kind == "deleted":
            payload = msgspec.json.encode({"task_id": job.id})
        else:
            payload = msgspec.json.encode({"task_id": job.id, "progress": live_progress(job), **data})
        hub.publish(kind, job.id, payload)

    return on_change


def _newest_first(job: Job) -> tuple:
    submitted = job.record.submitted_at if job.record is not None else 0.0
    return (-(submitted or _mtime(job.run_dir)), job.id)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


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
