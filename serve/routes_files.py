"""The files of a task: ours under `/api/v1/tasks/{id}/{name}`, and MoneyPrinterTurbo's `/tasks/{id}/` mount.

Responsible for: answering a file of a run (HEAD and Range through `FileResponse`), only ever one inside its run
directory, captions as WebVTT for the page, and MoneyPrinterTurbo's file names. Which files a run has and where
they lie is `serve.views`'.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse

from aishorts.ipc.files import ArtifactError, resolve_in_run
from aishorts.serve.jobs import Job
from aishorts.serve.requests import FieldError
from aishorts.serve.deps import Manager
from aishorts.serve.views import FILES, file_path, mpt_file, narration_srt, srt_to_vtt

router = APIRouter()


@router.api_route("/tasks/{task_id}/{name}", methods=["GET", "HEAD"], summary="MoneyPrinterTurbo's file mount:"
                  " final-N.mp4 and combined-N.mp4 (N: 1 to its video_count), audio.wav, subtitle.srt, and our own"
                  " file names (HEAD, Range)")
def mpt_task_file(task_id: str, name: str, manager: Manager) -> Response:
    job = manager.find(task_id)
    found = mpt_file(job, name)
    if found is None:
        raise FieldError("name", f"{name!r}: the files are final-N.mp4 and combined-N.mp4 (N: 1 to the task's"
                         f" video_count), audio.wav, subtitle.srt"
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


@router.api_route("/api/v1/tasks/{task_id}/{name}", methods=["GET", "HEAD"], summary="A file of the run: final.mp4"
                  " (Range), captions, thumbnail, memory.svg, report.json")
def task_file(task_id: str, name: str, manager: Manager, download: bool = False) -> Response:
    return run_file(manager.find(task_id), name, download)


def run_file(job: Job, name: str, download: bool = False) -> Response:
    """One of `FILES` of the job's run, or a 404 naming what is missing."""
    if name not in FILES:
        raise FieldError("name", f"{name!r}: the files are {', '.join(FILES)}", 404)
    try:
        path = resolve_in_run(job.run_dir, file_path(job, name).name)
    except ArtifactError as exc:
        raise FieldError("name", str(exc), 404) from None
    if not path.is_file():
        raise FieldError("name", f"task {job.id} has no {name} (yet)", 404)
    if name == "captions.vtt":
        return Response(srt_to_vtt(path.read_text(encoding="utf-8", errors="replace")), media_type=FILES[name])
    return FileResponse(path, media_type=FILES[name], filename=f"{job.id}-{name}" if download else None,
                        headers={"Cache-Control": "no-cache"})
