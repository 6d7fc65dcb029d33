"""The server's jobs: one per run directory, run by the same supervisor and budget as `--topics-file --jobs`.

Responsible for: the task list (rebuilt from the run directories on start,
so nothing is lost when the server dies: a queued job is queued again, a job
that was running shows as interrupted and resumable), the queue and its
worker threads (each runs `runner.run.run_pipeline` under one shared
`MemoryBudget`), cancelling (the job's own cancel event, which every watchdog
honours by killing its stage tree), removing a finished job with its run
directory, and live state fed by the runs' events (`observe`) to the
event hub. Checking requests is `serve.requests`' job; shaping what clients
see is `serve.views`'.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from ipc.files import ArtifactError, read_struct, write_struct
from ipc.messages import ProgressEvent
from ipc.pipeline import STAGE_NAMES
from runner.budget import MemoryBudget
from runner.errors import UsageError
from runner.events import (
    RunEvent, StageFinished, StageProgress, StageSample, StageStarted, StageWaiting, StageWarning,
)
from runner.limits import load_limits
from runner.report import RunReport, StageReport, write_report
from runner.rundir import RunManifest, claimed, default_run_dir, held_elsewhere
from runner.run import RunOptions, run_pipeline
from serve.requests import FieldError, Planned, ServerSettings, plan_resume

RECORD_NAME = "serve.json"
TASK_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class TaskRefused(Exception):
    """What was asked of a task cannot be done in its state (cancel a finished one, remove or resume a running one,
    touch one another process runs); the server answers 409 Conflict (`serve.app`'s error handlers)."""


class TaskNotFound(Exception):
    """No task by that id (or the id could not name a run directory); the server answers 404 (`serve.app`)."""


class JobRecord(msgspec.Struct, kw_only=True):
    """`RUN/serve.json`: what the server needs besides run.json to run the job again after a restart."""

    version: int = 1
    submitted_at: float
    started_at: float | None = None
    stages: list[str]
    limits: dict[str, str] = {}
    max_ram: str | None = None
    pipeline: str | None = None
    cancelled: bool = False
    llm: str | None = None
    """"openai" when the request asked for the online backend: a resume asks for it again (run.json alone never does)."""
    until: str | None = None
    """The last stage to run (MoneyPrinterTurbo's script, terms, audio and subtitle endpoints stop early)."""


class StageView(msgspec.Struct, kw_only=True):
    """A stage as clients see it: live while it runs (before report.json has it), then as reported."""

    name: str
    status: str = "pending"
    rss_bytes: int = 0
    """Live: the stage tree's RSS in the latest sample (0 when it is not running)."""
    peak_rss_bytes: int = 0
    ceiling_bytes: int = 0
    waited_for_budget_s: float = 0.0
    killed_by_os: bool = False
    fraction: float | None = None
    detail: str = ""
    message: str = ""
    wall_s: float = 0.0
    started_at_s: float | None = None
    """When its process started, in seconds from the run's start (one clock for all its stages: overlaps show)."""
    ended_at_s: float | None = None


@dataclass
class Job:
    id: str
    run_dir: Path
    record: JobRecord | None
    phase: str = "idle"
    """queued, running, or idle (finished, or never run by this server: its report.json says how it ended)."""
    cancel: threading.Event = field(default_factory=threading.Event)
    stages: dict[str, StageView] = field(default_factory=dict)
    report: RunReport | None = None
    opts: RunOptions | None = None
    timeline: list[tuple[float, int]] = field(default_factory=list)
    started: float = 0.0
    revision: int = 0
    """Raised at every change of the task's state: a client keeps the view with the highest one, whatever order
    views reach it in (an action's answer computed before the change it raced with, an event fanned out late)."""


def valid_task_id(task_id: str) -> bool:
    return 0 < len(task_id) <= 200 and set(task_id) <= TASK_ID_CHARS and not task_id.startswith(".")


def read_report(run_dir: Path) -> RunReport | None:
    try:
        return read_struct(run_dir / "report.json", RunReport)
    except (ArtifactError, OSError):
        return None


def read_record(run_dir: Path) -> JobRecord | None:
    try:
        return read_struct(run_dir / RECORD_NAME, JobRecord)
    except (ArtifactError, OSError):
        return None


def read_manifest(run_dir: Path) -> RunManifest | None:
    try:
        return read_struct(run_dir / "run.json", RunManifest)
    except (ArtifactError, OSError):
        return None


class EventHub:
    """Fans events out to subscribers (one per open SSE stream), from any thread."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[Callable[[str, str, bytes], None], str | None]] = []
        self._lock = threading.Lock()

    def subscribe(self, deliver: Callable[[str, str, bytes], None], task_id: str | None) -> Callable[[], None]:
        entry = (deliver, task_id)
        with self._lock:
            self._subscribers.append(entry)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._subscribers.remove(entry)

        return unsubscribe

    def wanted(self, task_id: str) -> bool:
        """Whether any stream listens for this task (else nothing needs to be encoded for it)."""
        with self._lock:
            return any(wanted in (None, task_id) for _, wanted in self._subscribers)

    def publish(self, kind: str, task_id: str, data: bytes) -> None:
        with self._lock:
            targets = [deliver for deliver, wanted in self._subscribers if wanted in (None, task_id)]
        for deliver in targets:
            deliver(kind, task_id, data)


class JobManager:
    """Owns the jobs, their queue and the worker threads; observes every run it starts."""

    def __init__(self, settings: ServerSettings, on_change: Callable[[Job, str, dict], None]) -> None:
        self.settings = settings
        self.limits = load_limits(None)
        self.budget = MemoryBudget(self.limits.stage_room(settings.max_ram))
        self.jobs: dict[str, Job] = {}
        self._queue: queue.Queue[str] = queue.Queue()
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []
        self._on_change = on_change
        self._revision = 0
        self._revision_lock = threading.Lock()

    # life of the server

    def start(self) -> None:
        self.settings.runs_dir.mkdir(parents=True, exist_ok=True)
        self.rescan(requeue=True)
        for index in range(self.settings.jobs):
            thread = threading.Thread(target=self._work, name=f"serve-worker-{index}", daemon=True)
            thread.start()
            self._workers.append(thread)

    def stop(self, timeout: float = 60.0) -> None:
        """Cancel what runs (its stage trees are killed, its report written); queued jobs stay queued on disk."""
        self._stopping.set()
        with self._lock:
            for job in self.jobs.values():
                if job.phase == "running":
                    job.cancel.set()
        deadline = time.monotonic() + timeout
        for thread in self._workers:
            thread.join(max(0.0, deadline - time.monotonic()))

    def rescan(self, requeue: bool = False) -> None:
        """Add run directories not known yet (made before the start, or by the CLI meanwhile)."""
        root = self.settings.runs_dir
        try:
            entries = sorted(root.iterdir())
        except OSError:
            return
        for path in entries:
            if path.name in self.jobs or not valid_task_id(path.name) or path.is_symlink() or not path.is_dir():
                continue
            if not (path / "run.json").exists() and not (path / "report.json").exists():
                continue
            job = Job(id=path.name, run_dir=path, record=read_record(path), report=read_report(path))
            with self._lock:
                if self.jobs.setdefault(job.id, job) is not job:
                    continue  # submitted meanwhile: the submission's own job stands
            never_started = job.record is not None and job.record.started_at is None and not job.record.cancelled
            if requeue and never_started and job.report is None:
                self._enqueue(job)

    def find(self, task_id: str) -> Job:
        """The job of that id, looking again in the runs folder if it is not known yet (the CLI may have made it)."""
        if not valid_task_id(task_id):
            raise TaskNotFound(f"{task_id!r} is not a task id (a run directory's name)")
        job = self.jobs.get(task_id)
        if job is None:
            self.rescan()
            job = self.jobs.get(task_id)
        if job is None:
            raise TaskNotFound(f"no task {task_id} in {self.settings.runs_dir}")
        return job

    def all_jobs(self) -> list[Job]:
        """Every job, those the runs folder has gained since the last look included."""
        self.rescan()
        return list(self.jobs.values())

    def stages_rss(self) -> int:
        """The latest RSS of every stage tree running now, all jobs together."""
        with self._lock:
            running = [job for job in self.jobs.values() if job.phase == "running"]
        return sum(live.rss_bytes for job in running for live in list(job.stages.values()) if live.status == "running")

    # what the API asks for

    def submit(self, planned: Planned) -> Job:
        opts = planned.opts
        subject = opts.params.theme.topic or opts.params.theme.category or "short"
        record = JobRecord(submitted_at=time.time(), stages=[spec.name for spec in opts.pipeline],
                           limits=planned.limits, max_ram=planned.max_ram, pipeline=planned.pipeline,
                           llm="openai" if opts.params.script.llm.backend == "openai" else None, until=planned.until)
        with claimed(default_run_dir(subject, parent=self.settings.runs_dir), fresh=True) as run_dir:
            write_struct(run_dir / "run.json", opts.manifest)
            write_struct(run_dir / RECORD_NAME, record)
        opts.run_dir = run_dir
        job = Job(id=run_dir.name, run_dir=run_dir, record=record, opts=opts)
        with self._lock:
            self.jobs[job.id] = job
            self._enqueue(job)
        return job

    def cancel(self, job: Job) -> None:
        with self._lock:
            if job.phase == "queued":
                job.phase = "idle"
                job.cancel.set()
                self._save_record(job, cancelled=True)
                job.report = RunReport(run_dir=str(job.run_dir), status="interrupted", exit_code=130,
                                       message="cancelled before it started")
                write_report(job.run_dir, job.report)
            elif job.phase == "running":
                job.cancel.set()
                self._save_record(job, cancelled=True)
            elif held_elsewhere(job.run_dir):
                raise TaskRefused(f"task {job.id} is being run by another process, not by this server;"
                                  " stop it there (Ctrl-C)")
            else:
                raise TaskRefused(f"task {job.id} is not queued or running; nothing to cancel")
        self._changed(job, "task")

    def remove(self, job: Job) -> None:
        """A finished job and its run directory, gone (MoneyPrinterTurbo's DELETE); never one that runs anywhere."""
        with self._lock:
            if job.phase != "idle":
                raise TaskRefused(f"task {job.id} is {job.phase}; cancel it first")
            if held_elsewhere(job.run_dir):
                raise TaskRefused(f"task {job.id} is being run by another process (its run directory is"
                                  " locked); stop it there first")
            root = self.settings.runs_dir.resolve()
            if job.run_dir.is_symlink() or job.run_dir.resolve().parent != root:
                raise TaskRefused(f"task {job.id} is not a folder of {root}; it is left alone")
            try:
                shutil.rmtree(job.run_dir)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise TaskRefused(f"task {job.id}: could not remove {job.run_dir} ({exc.strerror})") from None
            self.jobs.pop(job.id, None)
        self._changed(job, "deleted")

    def resume(self, job: Job, limits: dict[str, str], max_ram: str | None) -> None:
        with self._lock:
            if job.phase != "idle":
                raise TaskRefused(f"task {job.id} is {job.phase}; it can be resumed once it has stopped")
            if held_elsewhere(job.run_dir):
                raise TaskRefused(f"task {job.id} is being run by another process (its run directory is"
                                  " locked); wait for it to end")
            record = job.record or self._record_for_foreign(job)
            merged = {**record.limits, **limits}
            opts = plan_resume(job.run_dir, merged, max_ram if max_ram is not None else record.max_ram,
                               record.pipeline, self.settings, record.llm, record.until)
            record.limits = merged
            record.max_ram = max_ram if max_ram is not None else record.max_ram
            record.cancelled = False
            job.record = record
            write_struct(job.run_dir / RECORD_NAME, record)
            job.opts = opts
            job.cancel = threading.Event()
            self._enqueue(job)
        self._changed(job, "task")

    def _record_for_foreign(self, job: Job) -> JobRecord:
        """A run directory the CLI made: resumable here if it used the product pipeline or one the server knows."""
        manifest = read_manifest(job.run_dir)
        if manifest is None:
            raise TaskRefused(f"task {job.id} has no readable run.json, so it cannot be resumed")
        pipeline = None
        if manifest.pipeline_file is not None:
            wanted = Path(manifest.pipeline_file).resolve()
            pipeline = next((name for name, path in self.settings.pipelines.items() if path.resolve() == wanted), None)
            if pipeline is None:
                raise TaskRefused(f"task {job.id} was made with the pipeline file {manifest.pipeline_file},"
                                  " which this server was not started with (serve --pipeline FILE)")
        names = list(STAGE_NAMES) if pipeline is None else []
        return JobRecord(submitted_at=time.time(), stages=names, pipeline=pipeline)

    # the workers

    def _enqueue(self, job: Job) -> None:
        job.phase = "queued"
        job.stages = {name: StageView(name=name) for name in (job.record.stages if job.record else [])}
        self._queue.put(job.id)
        self._changed(job, "task")

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                job_id = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            job = self.jobs.get(job_id)
            with self._lock:
                if job is None or job.phase != "queued" or self._stopping.is_set():
                    continue
                job.phase = "running"
                job.revision = self._next_revision()
                job.started = time.monotonic()
                job.timeline = []
            self._run(job)

    def _run(self, job: Job) -> None:
        try:
            self._save_record(job, started_at=time.time())
            opts = job.opts or plan_resume(job.run_dir, job.record.limits, job.record.max_ram, job.record.pipeline,
                                           self.settings, job.record.llm, job.record.until)
            opts.label = job.id
            job.report = run_pipeline(opts, self.observe, job.cancel, self.budget)
        except (UsageError, FieldError, OSError) as exc:
            job.report = RunReport(run_dir=str(job.run_dir), status="failed", exit_code=2, message=str(exc))
            with contextlib.suppress(OSError):
                write_report(job.run_dir, job.report)
        finally:
            with self._lock:
                job.phase = "idle"
                job.opts = None
            self._changed(job, "task")

    def _save_record(self, job: Job, **changes) -> None:
        if job.record is None:
            return
        job.record = msgspec.structs.replace(job.record, **changes)
        write_struct(job.run_dir / RECORD_NAME, job.record)

    # the runs' observer: called from the watchdog threads of each run

    def observe(self, event: RunEvent) -> None:
        match event:
            case StageWaiting(label=label, stage=stage, ceiling=ceiling):
                self._on_waiting(label, stage, ceiling)
            case StageStarted(label=label, stage=stage, ceiling=ceiling):
                self._on_started(label, stage, ceiling)
            case StageSample(label=label, stage=stage, rss=rss):
                self._on_sample(label, stage, rss)
            case StageProgress(label=label, stage=stage, event=progress):
                self._on_event(label, stage, progress)
            case StageWarning(label=label, stage=stage, message=message):
                self._on_warning(label, stage, message)
            case StageFinished(label=label, report=report):
                self._on_finished(label, report)

    def _stage(self, label: str, stage: str) -> tuple[Job, StageView] | None:
        job = self.jobs.get(label)
        if job is None:
            return None
        live = job.stages.get(stage)
        if live is None:
            live = job.stages[stage] = StageView(name=stage)
        return job, live

    def _on_waiting(self, label: str, stage: str, ceiling: int) -> None:
        if found := self._stage(label, stage):
            job, live = found
            live.status, live.ceiling_bytes = "waiting", ceiling
            live.detail = "waiting for memory budget"
            self._changed(job, "task")

    def _on_started(self, label: str, stage: str, ceiling: int) -> None:
        if found := self._stage(label, stage):
            job, live = found
            live.status, live.ceiling_bytes = "running", ceiling
            live.started_at_s, live.ended_at_s = round(time.monotonic() - job.started, 3), None
            live.rss_bytes = live.peak_rss_bytes = 0
            live.fraction, live.detail, live.message = None, "", ""
            self._changed(job, "task")

    def _on_sample(self, label: str, stage: str, rss: int) -> None:
        if found := self._stage(label, stage):
            job, live = found
            live.rss_bytes = rss
            live.peak_rss_bytes = max(live.peak_rss_bytes, rss)
            t = round(time.monotonic() - job.started, 3)
            job.timeline.append((t, rss))
            self._changed(job, "sample", {"stage": stage, "t": t, "rss_bytes": rss,
                                          "peak_rss_bytes": live.peak_rss_bytes, "ceiling_bytes": live.ceiling_bytes})

    def _on_event(self, label: str, stage: str, event: ProgressEvent) -> None:
        if event.kind != "progress":
            return
        if found := self._stage(label, stage):
            job, live = found
            if event.fraction is not None:
                live.fraction = max(0.0, min(1.0, event.fraction))
            live.detail = event.message
            self._changed(job, "progress", {"stage": stage, "fraction": live.fraction, "detail": live.detail,
                                            "at": event.t})

    def _on_warning(self, label: str, stage: str, message: str) -> None:
        if found := self._stage(label, stage):
            job, live = found
            live.detail = message
            self._changed(job, "progress", {"stage": stage, "fraction": live.fraction, "detail": message})

    def _on_finished(self, label: str, report: StageReport) -> None:
        if found := self._stage(label, report.name):
            job, live = found
            live.status = report.status
            live.rss_bytes = 0
            live.peak_rss_bytes = report.peak_rss_bytes
            live.ceiling_bytes = report.ceiling_bytes
            live.waited_for_budget_s = report.waited_for_budget_s
            live.killed_by_os = report.killed_by_os
            live.message = report.message
            live.wall_s = report.wall_s
            if report.started_at_s is not None and live.started_at_s is not None:
                live.ended_at_s = round(live.started_at_s + report.wall_s, 3)
            live.fraction = 1.0 if report.status in ("done", "skipped") else live.fraction
            self._changed(job, "task")

    def _changed(self, job: Job, kind: str, data: dict | None = None) -> None:
        if kind == "task":
            job.revision = self._next_revision()
        self._on_change(job, kind, data or {})

    def _next_revision(self) -> int:
        """Microseconds since the epoch, strictly increasing: later than any revision a page kept from a server
        that ran before this one (a page that outlives a restart still takes the new views)."""
        with self._revision_lock:
            self._revision = max(self._revision + 1, time.time_ns() // 1000)
            return self._revision
