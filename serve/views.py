"""What clients see of a job: the task object of the API and the page, MoneyPrinterTurbo's fields included.

Responsible for: one `TaskView` per job, from the live state while it runs
and from its report.json otherwise (a report left "running" by a server that
died reads as interrupted), its state code (MoneyPrinterTurbo's: -1 failed,
1 complete, 4 processing, a queued task being 4 at progress 0; our own
`status` beside it) and progress 0-100, the failing stage and the resume that
gives it more memory, and what MoneyPrinterTurbo's finished task carries
(absolute `videos` URLs under its `/tasks/{id}/` mount, `script`, `terms`,
the narration and subtitle files). A task of several videos (its `video_count`) reads as its videos together: done
once all are, else as the first that did not finish (its stages, message and resume), its progress across them;
the script and the files under `/api/v1/tasks/{id}/` are the first video's. It changes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from aishorts.ipc.artifacts import Narration, Script, SourceRef
from aishorts.ipc.files import ArtifactError, read_struct, resolve_in_run
from aishorts.ipc.pipeline import artifact_path
from aishorts.runner.report import RunReport, Sample, StageReport, downsample
from aishorts.runner.rundir import held_elsewhere
from aishorts.serve.audio import AudioError, narration_at_level
from aishorts.serve.job import video_count, video_dir
from aishorts.serve.jobs import Job, StageView, latest_report, read_manifest, read_report
from aishorts.serve.requests import FieldError

STATE_FAILED, STATE_COMPLETE, STATE_PROCESSING = -1, 1, 4
FILES = {
    "final.mp4": "video/mp4",
    "captions.srt": "application/x-subrip",
    "captions.vtt": "text/vtt",
    "captions.ass": "text/x-ssa",
    "thumbnail.jpg": "image/jpeg",
    "memory.svg": "image/svg+xml",
    "report.json": "application/json",
    "sources.txt": "text/plain; charset=utf-8",
}
"""The files of a run a client may fetch, by name; captions.vtt is made from captions.srt on the fly."""
MPT_FILES = {"subtitle.srt": "captions.srt"}
"""MoneyPrinterTurbo's names for our files under its `/tasks/{id}/` mount (its videos: `_MPT_VIDEO`)."""
_MPT_VIDEO = re.compile(r"^(?:final|combined)-([1-9][0-9]?)\.mp4$")
"""MoneyPrinterTurbo's names of a task's videos: final-N.mp4 and combined-N.mp4, N from 1 to its video_count (ours
are one video each: the two names give the same file)."""
AUDIO_NAME = "audio.wav"
"""The narration under `/tasks/{id}/` (MoneyPrinterTurbo's is audio.mp3; ours is the tts stage's WAV at the run's
voice_volume, `serve.audio`)."""


class TaskSource(SourceRef, kw_only=True):
    """A source as the script artifact names it (`ipc.artifacts.SourceRef`), with the addresses a page links to."""

    url: str | None = None
    """The origin when it is an http(s) address (a wiki article, a page), else None (a file)."""
    licence_url: str | None = None
    """The licence's address when its text names one (Wikipedia's CC BY-SA 4.0)."""


class TaskView(msgspec.Struct, kw_only=True):
    task_id: str
    title: str
    state: int
    """MoneyPrinterTurbo's: -1 failed, 1 complete, 4 processing (queued too, at progress 0)."""
    status: str
    """Ours: queued, running, done, oom, failed, interrupted."""
    progress: int
    message: str = ""
    failed_stage: str | None = None
    resumable: bool = False
    rerun_command: str = ""
    suggested_limits: dict[str, str] = {}
    """For an OOM: the ceilings a resume should give (the stage's raised), as the supervisor suggests."""
    suggested_max_ram: str | None = None
    stages: list[StageView] = []
    warn_fraction: float = 0.8
    peak_rss_bytes: int = 0
    max_ram_bytes: int | None = None
    wall_s: float = 0.0
    videos: list[str] = []
    """MoneyPrinterTurbo's: the finished shorts, absolute URLs (`/tasks/{id}/final-1.mp4` ... `final-N.mp4` for its
    `video_count`) a client fetches as given."""
    combined_videos: list[str] = []
    script: str | None = None
    """Once the script exists: the narration text, as MoneyPrinterTurbo's finished task carries it."""
    terms: list[str] | None = None
    """The b-roll search terms the script came with (MoneyPrinterTurbo's `video_terms`)."""
    audio_file: str | None = None
    audio_duration: float | None = None
    subtitle_path: str | None = None
    files: dict[str, str] = {}
    """Name -> URL of each file of the run that exists now."""
    revision: int = 0
    """Orders views of one task: a view with a lower revision than one already seen is older, whatever it says."""
    timeline: list[Sample] | None = None
    """Only in the single-task answer: the run's memory over time (live while it runs)."""
    grounding: str | None = None
    """Once the script is written: "grounded in N sources", or "not grounded: facts unchecked" and why; None for
    the user's own narration."""
    sources: list[TaskSource] = []
    """What the script retells (sources.txt says the same): title, URL or file, licence, credit."""


def task_view(job: Job, warn_fraction: float, with_timeline: bool = False, base_url: str = "") -> TaskView:
    """The task as clients see it; `base_url` (scheme, host, prefix) makes MoneyPrinterTurbo's URLs absolute."""
    revision = job.revision  # read before the state: a change landing meanwhile makes this view older, never newer
    elsewhere = job.phase == "idle" and held_elsewhere(job.run_dir)
    report = latest_report(job, elsewhere) if job.phase == "idle" else None
    count = video_count(job)
    report, number = _deciding_report(job, report) if job.phase == "idle" and count > 1 else (report, 1)
    status, message = _status(job, report, elsewhere)
    if number > 1:
        if report is None:
            status, message = "interrupted", "never started; resume the task to make it"
        message = f"video {number} of {count}: {message}"
    names = _stage_names(job, report)
    stages = _live_stages(job, names) if job.phase in ("queued", "running") else _reported_stages(report, names)
    if status == "interrupted" and (report is None or report.status == "running"):
        _mark_cut_short(stages)
    failed = next((s.name for s in stages if s.status in ("oom", "failed", "interrupted")), None)
    base = f"/api/v1/tasks/{job.id}/"
    files = {name: base + name for name in FILES if (job.run_dir / _source(name)).is_file()}
    mount = f"{base_url}/tasks/{job.id}/"
    made = [n for n in range(1, count + 1) if (video_dir(job.run_dir, n) / "final.mp4").is_file()]
    videos = [mount + f"final-{n}.mp4" for n in made] if status == "done" else []
    combined = [mount + f"combined-{n}.mp4" for n in made] if videos else []
    suggested, suggested_ram = _suggestion(report) if status == "oom" else ({}, None)
    view = TaskView(
        task_id=job.id, title=_title(job), state=_state(status), status=status,
        progress=100 if status == "done" else _videos_progress(job, stages, count), message=message,
        failed_stage=failed if status in ("oom", "failed", "interrupted") else None,
        resumable=status in ("oom", "failed", "interrupted") and job.phase == "idle" and not elsewhere,
        rerun_command=report.rerun_command if report is not None and status != "done" else "",
        suggested_limits=suggested, suggested_max_ram=suggested_ram, stages=stages, warn_fraction=warn_fraction,
        peak_rss_bytes=report.peak_rss_bytes if report else max((s.peak_rss_bytes for s in stages), default=0),
        max_ram_bytes=report.max_ram_bytes if report else None, wall_s=report.wall_s if report else 0.0,
        videos=videos, combined_videos=combined, files=files, revision=revision,
    )
    _add_mpt_results(view, job, mount)
    if with_timeline:
        live = job.phase == "running"
        view.timeline = downsample(list(job.timeline)) if live else (report.timeline if report else [])
    return view


def _deciding_report(job: Job, first: RunReport | None) -> tuple[RunReport | None, int]:
    """For a task of several videos that is not running: the report that says how it ended (the first video's that
    did not finish, else the first's) and that video's number."""
    if first is None or first.status != "done":
        return first, 1
    for number in range(2, video_count(job) + 1):
        report = read_report(video_dir(job.run_dir, number))
        if report is None or report.status != "done":
            return report, number
    return first, 1


def _videos_progress(job: Job, stages: list[StageView], count: int) -> int:
    """Progress 0-99 across the task's videos: those made, and the stages of the one running now."""
    if count == 1 or job.phase != "running":
        return _progress(stages)
    return min(99, ((job.video - 1) * 100 + _progress(stages)) // count)


def _add_mpt_results(view: TaskView, job: Job, mount: str) -> None:
    """What MoneyPrinterTurbo's task carries besides its videos, from the run's artifacts as far as they exist."""
    script = _artifact(job.run_dir, "script", Script)
    if script is not None:
        view.script, view.terms = " ".join(script.sentences), list(script.broll_queries)
        _add_sources(view, script)
    narration = _artifact(job.run_dir, "tts", Narration)
    if narration is not None and narration_path(job) is not None:
        view.audio_file, view.audio_duration = mount + AUDIO_NAME, round(narration.duration_s, 3)
    if "captions.srt" in view.files or view.audio_file is not None:
        view.subtitle_path = mount + "subtitle.srt"


def _add_sources(view: TaskView, script: Script) -> None:
    """The script's grounding and the sources it retells, as its sources.txt names them."""
    view.grounding = script.grounding or None
    view.sources = [
        TaskSource(**msgspec.structs.asdict(ref), url=ref.origin if _WEB.match(ref.origin) else None,
                   licence_url=_first_url(ref.licence))
        for ref in script.sources
    ]


_WEB = re.compile(r"^https?://", re.IGNORECASE)


def _first_url(text: str) -> str | None:
    found = re.search(r"https?://[^\s()<>]+", text)
    return found.group().rstrip(".,;") if found else None


def script_of(job: Job) -> Script | None:
    """The script the run's script stage wrote, if it did."""
    return _artifact(job.run_dir, "script", Script)


def _artifact(run_dir: Path, stage: str, kind: type):
    try:
        return read_struct(run_dir / artifact_path(stage), kind)
    except (ArtifactError, OSError, msgspec.ValidationError):
        return None


def narration_path(job: Job) -> Path | None:
    """The tts stage's WAV, if its artifact names one inside the run that exists."""
    narration = _artifact(job.run_dir, "tts", Narration)
    if narration is None:
        return None
    try:
        path = resolve_in_run(job.run_dir, str(narration.wav))
    except ArtifactError:
        return None
    return path if path.is_file() else None


def mpt_file(job: Job, name: str) -> tuple[Path, str] | None:
    """A file under MoneyPrinterTurbo's `/tasks/{id}/` mount (its names, or ours): its path and media type."""
    if name == AUDIO_NAME:
        path = narration_path(job)
        if path is None:
            return None
        manifest = read_manifest(job.run_dir)
        level = manifest.params.timeline.voice_volume if manifest is not None else 1.0
        try:  # the level the request asked for: the render applies it to the video, this file has it too
            return narration_at_level(job.run_dir, path, level), "audio/wav"
        except AudioError as exc:
            raise FieldError("name", str(exc), 500) from None
    numbered = _MPT_VIDEO.match(name)
    if numbered is not None:
        number = int(numbered.group(1))
        if not 1 <= number <= video_count(job):
            return None
        return video_dir(job.run_dir, number) / "final.mp4", FILES["final.mp4"]
    ours = MPT_FILES.get(name, name)
    if ours not in FILES or ours == "captions.vtt":
        return None
    return file_path(job, ours), FILES[ours]


def live_progress(job: Job) -> int:
    """Progress 0-100 of a running job from its live stages (cheap: for every progress event)."""
    return _videos_progress(job, _live_stages(job, _stage_names(job, None)), video_count(job))


def _source(name: str) -> str:
    return "captions.srt" if name == "captions.vtt" else name


def _status(job: Job, report: RunReport | None, elsewhere: bool) -> tuple[str, str]:
    if job.phase == "queued":
        return "queued", "waiting for a free worker"
    if job.phase == "running":
        return "running", ""
    if elsewhere:
        return "running", "being run by another aishorts-runner process (its run directory is locked)"
    if report is None or report.status == "running":
        if report is None and job.record is not None and job.record.started_at is None:
            return "interrupted", "never started: the server stopped while it was queued; resume it"
        return "interrupted", ("interrupted: the supervisor running it stopped before it finished;"
                               " resume it to go on from the last finished stage")
    if report.status == "interrupted" and job.record is not None and job.record.cancelled:
        return "interrupted", "cancelled" + (" before it started" if job.record.started_at is None else
                                             "; resume it to go on from the last finished stage")
    return report.status, report.message


def _state(status: str) -> int:
    return {"queued": STATE_PROCESSING, "running": STATE_PROCESSING, "done": STATE_COMPLETE}.get(status, STATE_FAILED)


def _stage_names(job: Job, report: RunReport | None) -> list[str]:
    names = list(job.record.stages) if job.record is not None else []
    for stage in report.stages if report else []:
        if stage.name not in names:
            names.append(stage.name)
    return names


def _live_stages(job: Job, names: list[str]) -> list[StageView]:
    views = []
    for name in names + [n for n in job.stages if n not in names]:
        live = job.stages.get(name) or StageView(name=name)
        views.append(msgspec.structs.replace(live, wall_s=round(live.wall_s, 3)))  # a copy: the live one moves on
    return views


def _reported_stages(report: RunReport | None, names: list[str]) -> list[StageView]:
    reported: dict[str, StageReport] = {s.name: s for s in report.stages} if report else {}
    views = []
    for name in names:
        stage = reported.get(name)
        if stage is None:
            views.append(StageView(name=name, status="pending"))
            continue
        view = StageView(name=name, started_at_s=stage.started_at_s, ended_at_s=stage.ended_at_s)
        view.take_report(stage)
        views.append(view)
    return views


def _mark_cut_short(stages: list[StageView]) -> None:
    """The stage that was running when its supervisor died: the first one that had not finished."""
    for stage in stages:
        if stage.status not in ("done", "skipped"):
            stage.status = "interrupted"
            stage.message = "its supervisor stopped while it ran"
            return


def _progress(stages: list[StageView]) -> int:
    if not stages:
        return 0
    done = sum(1.0 if s.status in ("done", "skipped") else (s.fraction or 0.0) if s.status == "running" else 0.0
               for s in stages)
    return min(99, int(100 * done / len(stages)))


def _suggestion(report: RunReport | None) -> tuple[dict[str, str], str | None]:
    """The ceilings and budget the supervisor suggests (its rerun command's), so the page's button resumes with them."""
    if report is None or report.suggestion is None:
        return {}, None
    return report.suggestion.limit_sizes(), report.suggestion.max_ram_size()


def _title(job: Job) -> str:
    manifest = read_manifest(job.run_dir)
    if manifest is not None:
        theme = manifest.params.theme
        return theme.topic or f"a {theme.category} topic" if (theme.topic or theme.category) else job.id
    return job.id


def file_path(job: Job, name: str) -> Path:
    return job.run_dir / _source(name)


def narration_srt(job: Job) -> str | None:
    """Subtitles of a run stopped after tts (MoneyPrinterTurbo's /subtitle): one cue per spoken sentence."""
    narration = _artifact(job.run_dir, "tts", Narration)
    if narration is None:
        return None
    cues = [f"{n}\n{_srt_time(s.start)} --> {_srt_time(s.end)}\n{s.text.strip()}\n"
            for n, s in enumerate(narration.sentences, 1)]
    return "\n".join(cues)


def _srt_time(seconds: float) -> str:
    millis = max(0, round(seconds * 1000))
    return f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d},{millis % 1000:03d}"


def srt_to_vtt(text: str) -> str:
    """WebVTT for the page's <track>: the SRT cues with '.' before the milliseconds."""
    body = re.sub(r"(\d{2}:\d{2}:\d{2}),(\d{3})", r"\1.\2", text.replace("\r\n", "\n"))
    return "WEBVTT\n\n" + body
