"""The endpoints other tools' clients expect, beside the task API: MoneyPrinterTurbo's audio, subtitle, script and
terms, and short-video-maker's way to make, follow and fetch a short.

Responsible for: those routes, each a task like any other (the page shows it) stopping after the stage that gives
what was asked; the script and terms are answered once written. Not for: MoneyPrinterTurbo's `POST /videos` and
task list (`serve.routes_tasks`) or its file mount (`serve.routes_files`).
"""

from __future__ import annotations

import asyncio

import msgspec
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from aishorts.ipc.artifacts import Script
from aishorts.serve.jobs import JobManager
from aishorts.serve.requests import (
    FieldError, ServerSettings, ShortVideoRequest, TermsRequest, VideoRequest, decode, plan_video,
    video_from_short_video_maker,
)
from aishorts.serve.deps import BaseUrl, Manager, Settings, body_doc, ok
from aishorts.serve.routes_files import run_file
from aishorts.serve.routes_tasks import create_task, plan_mpt
from aishorts.serve.views import script_of, task_view

SYNC_WAIT_S = 1800.0
"""How long `POST /api/v1/scripts` and `/terms` (answered when their stages end) wait at most."""

router = APIRouter()


@router.post("/api/v1/audio", openapi_extra=body_doc(VideoRequest), summary="MoneyPrinterTurbo's: the narration"
             " of `video_script` only (a task that stops after tts; its audio_file is a WAV)")
async def create_audio(request: Request, manager: Manager, settings: Settings, address: BaseUrl) -> Response:
    return await create_task(request, manager, settings, address, "tts")


@router.post("/api/v1/subtitle", openapi_extra=body_doc(VideoRequest), summary="MoneyPrinterTurbo's: narration and"
             " subtitles of `video_script` (a task that stops after tts; subtitle_path one cue per sentence)")
async def create_subtitle(request: Request, manager: Manager, settings: Settings, address: BaseUrl) -> Response:
    return await create_task(request, manager, settings, address, "tts")


@router.post("/api/v1/scripts", openapi_extra=body_doc(VideoRequest), summary="MoneyPrinterTurbo's: write the"
             " narration for `video_subject` (theme and script stages only), answered when it is written")
async def write_script(request: Request, manager: Manager, settings: Settings) -> Response:
    _, script = await finished_script(request, manager, settings, VideoRequest)
    return ok({"video_script": " ".join(script.sentences), "video_terms": list(script.broll_queries)})


@router.post("/api/v1/terms", openapi_extra=body_doc(TermsRequest), summary="MoneyPrinterTurbo's: b-roll search"
             " terms for `video_subject`/`video_script` (theme and script stages only), at most `amount`")
async def find_terms(request: Request, manager: Manager, settings: Settings) -> Response:
    video, script = await finished_script(request, manager, settings, TermsRequest)
    if not 1 <= video.amount <= 50:
        raise FieldError("amount", "amount: give 1 to 50 terms", 400)
    return ok({"video_terms": list(script.broll_queries)[: video.amount]})


async def finished_script(request: Request, manager: JobManager, settings: ServerSettings,
                          kind: type) -> tuple[VideoRequest, Script]:
    """Run the theme and script stages for a MoneyPrinterTurbo body, wait, and give back the script written."""
    video, planned, _ = await plan_mpt(request, settings, "script", kind)
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


@router.post("/api/short-video", summary="short-video-maker's way to make a short: its scenes' text is the script",
             openapi_extra=body_doc(ShortVideoRequest))
async def short_video(request: Request, manager: Manager, settings: Settings) -> Response:
    video = video_from_short_video_maker(decode(await request.body(), ShortVideoRequest, required=True))
    planned = await run_in_threadpool(plan_video, video, settings)
    job = await run_in_threadpool(manager.submit, planned)
    return Response(msgspec.json.encode({"videoId": job.id}), media_type="application/json")


@router.get("/api/short-video/{task_id}/status", summary="short-video-maker's status: processing, ready or failed")
def short_video_status(task_id: str, manager: Manager) -> Response:
    shown = task_view(manager.find(task_id), manager.limits.warn_fraction)
    status = {1: "ready", -1: "failed"}.get(shown.state, "processing")
    return Response(msgspec.json.encode({"status": status}), media_type="application/json")


@router.get("/api/short-video/{task_id}", summary="short-video-maker's download of the finished short")
def short_video_file(task_id: str, manager: Manager) -> Response:
    return run_file(manager.find(task_id), "final.mp4")
