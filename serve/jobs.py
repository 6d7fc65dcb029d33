"""The server's jobs: one per run directory, run by the same supervisor and budget as `--topics-file --jobs`.

Responsible for: the task list (rebuilt from the run directories on start,
so nothing is lost when the server dies: a queued job is queued again, a job
that was running shows as interrupted and resumable), what may be done to a
job in its state (submit, cancel, remove with its run directory, resume;
`TaskRefused` otherwise), running a queued job (`runner.run.run_pipeline`
under one shared `MemoryBudget`, cancelled through the job's own cancel event,
which every watchdog honours by killing its stage tree), and keeping each
job's report as fresh as its run directory. `JobManager` composes the pieces:
the queue and its threads (`serve.workers`), the job's files
(`serve.records`), and the observer that turns a run's events into live state
and changes for the event hub (`serve.live`). Checking requests is
`serve.requests`' job; shaping what clients see is `serve.views`'. A task of several videos (MoneyPrinterTurbo's
`video_count`) runs them one after another in its worker, each from its own run directory inside the task's.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from aishorts.ipc.files import write_struct
from aishorts.ipc.pipeline import STAGE_NAMES
from aishorts.runner.budget import MemoryBudget
from aishorts.runner.errors import UsageError
from aishorts.runner.limits import load_limits
from aishorts.runner.report import RunReport, write_report
from aishorts.runner.rundir import claimed, default_run_dir, held_elsewhere
from aishorts.runner.run import run_pipeline
from aishorts.serve.job import Job, StageView, latest_report, valid_task_id, video_count, video_dir
from aishorts.serve.live import ChangeFeed, LiveObserver
from aishorts.serve.records import JobRecord, read_manifest, read_record, read_report, updated_record, write_record
from aishorts.serve.requests import FieldError, Planned, ServerSettings, plan_resume
from aishorts.serve.workers import WorkerPool

__all__ = ["Job", "JobManager", "JobRecord", "StageView", "TaskNotFound", "TaskRefused",
           "latest_report", "read_manifest", "read_report", "valid_task_id"]


class TaskRefused(Exception):
    """What was asked of a task cannot be done in its state (cancel a finished one, remove or resume a running one,
    touch one another process runs); the server answers 409 Conflict (`serve.app`'s error handlers)."""


class TaskNotFound(Exception):
    """No task by that id (or the id could not name a run directory); the server answers 404 (`serve.app`)."""


def _refuse_unless_stopped(job: Job, here: str, elsewhere: str) -> None:
    """TaskRefused, saying what to do (`here` or `elsewhere`), unless the job runs neither here nor in another
    process (its run directory's lock says so)."""
    if job.phase != "idle":
        raise TaskRefused(f"task {job.id} is {job.phase}; {here}")
    if held_elsewhere(job.run_dir):
        raise TaskRefused(f"task {job.id} is being run by another process (its run directory is locked); {elsewhere}")


class JobManager:
    """Owns the jobs and what may be done to them; composes the queue (`WorkerPool`), the records on disk
    (`serve.records`) and the runs' observer (`observe`, a `LiveObserver`) feeding `on_change`."""

    def __init__(self, settings: ServerSettings, on_change: Callable[[Job, str, dict], None]) -> None:
        self.settings = settings
        self.limits = load_limits(None)
        self.budget = MemoryBudget(self.limits.stage_room(settings.max_ram))
        self.jobs: dict[str, Job] = {}
        self._lock = threading.RLock()
        self._workers = WorkerPool(self._take)
        self._feed = ChangeFeed(on_change)
        self.observe = LiveObserver(self.jobs, self._feed)
        """The observer of every run this server starts (`runner.events.Observer`)."""

    # life of the server

    def start(self) -> None:
        self.settings.runs_dir.mkdir(parents=True, exist_ok=True)
        self.rescan(requeue=True)
        self._workers.start(self.settings.jobs)

    def stop(self, timeout: float = 60.0) -> None:
        """Cancel what runs (its stage trees are killed, its report written); queued jobs stay queued on disk."""
        self._workers.close()
        with self._lock:
            for job in self.jobs.values():
                if job.phase == "running":
                    job.cancel.set()
        self._workers.join(timeout)

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
        self.refresh(job)
        return job

    def all_jobs(self) -> list[Job]:
        """Every job, those the runs folder has gained since the last look included, each report refreshed."""
        self.rescan()
        jobs = list(self.jobs.values())
        for job in jobs:
            self.refresh(job)
        return jobs

    def refresh(self, job: Job) -> None:
        """Keep the report of a job not running here as its run directory has it now (another process may be
        writing it: the CLI, or a server that died and left it "running")."""
        with self._lock:
            if job.phase == "idle":
                job.report = latest_report(job, held_elsewhere(job.run_dir))

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
                           llm="openai" if opts.params.script.llm.backend == "openai" else None, until=planned.until,
                           videos=1 + len(planned.more_videos))
        with claimed(default_run_dir(subject, parent=self.settings.runs_dir), fresh=True) as run_dir:
            write_struct(run_dir / "run.json", opts.manifest)
            for number, more in enumerate(planned.more_videos, 2):  # each run.json holds that video's own seed
                video_dir(run_dir, number).mkdir(parents=True)
                write_struct(video_dir(run_dir, number) / "run.json", more.manifest)
            write_record(run_dir, record)
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
            _refuse_unless_stopped(job, here="cancel it first", elsewhere="stop it there first")
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
            _refuse_unless_stopped(job, here="it can be resumed once it has stopped", elsewhere="wait for it to end")
            record = job.record or self._record_for_foreign(job)
            merged = {**record.limits, **limits}
            opts = plan_resume(job.run_dir, merged, max_ram if max_ram is not None else record.max_ram,
                               record.pipeline, self.settings, record.llm, record.until)
            record.limits = merged
            record.max_ram = max_ram if max_ram is not None else record.max_ram
            record.cancelled = False
            job.record = record
            write_record(job.run_dir, record)
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
        job.video = 1
        job.stages = {name: StageView(name=name) for name in (job.record.stages if job.record else [])}
        self._workers.put(job.id)
        self._changed(job, "task")

    def _take(self, job_id: str) -> None:
        """A worker's turn: run the job if it is still queued (it may have been cancelled meanwhile)."""
        job = self.jobs.get(job_id)
        with self._lock:
            if job is None or job.phase != "queued" or self._workers.closed:
                return
            job.phase = "running"
            job.revision = self._feed.next_revision()
            job.started = time.monotonic()
            job.timeline = []
        self._run(job)

    def _run(self, job: Job) -> None:
        try:
            self._save_record(job, started_at=time.time())
            opts = job.opts or plan_resume(job.run_dir, job.record.limits, job.record.max_ram, job.record.pipeline,
                                           self.settings, job.record.llm, job.record.until)
            opts.label = job.id
            job.video = 1
            job.report = run_pipeline(opts, self.observe, job.cancel, self.budget)
            self._run_more_videos(job, job.report)
        except (UsageError, FieldError, OSError) as exc:
            job.report = RunReport(run_dir=str(job.run_dir), status="failed", exit_code=2, message=str(exc))
            with contextlib.suppress(OSError):
                write_report(job.run_dir, job.report)
        finally:
            with self._lock:
                job.phase = "idle"
                job.opts = None
            self._changed(job, "task")

    def _run_more_videos(self, job: Job, first: RunReport) -> None:
        """The task's videos after the first, one after another in this worker and under the same budget, each
        resumed from its own run directory (a video already made is skipped stage by stage); the first that does not
        finish stops the rest. The views read each video's report.json."""
        report = first
        for number in range(2, video_count(job) + 1):
            if report.status != "done" or job.cancel.is_set():
                return
            record, run_dir = job.record, video_dir(job.run_dir, number)
            try:
                opts = plan_resume(run_dir, record.limits, record.max_ram, record.pipeline, self.settings, record.llm,
                                   record.until)
            except (UsageError, FieldError) as exc:  # said in that video's own report: the first video's stays done
                with contextlib.suppress(OSError):
                    write_report(run_dir, RunReport(run_dir=str(run_dir), status="failed", exit_code=2,
                                                    message=str(exc)))
                return
            opts.label = job.id
            with self._lock:
                job.video = number
                job.stages = {name: StageView(name=name) for name in record.stages}
            self._changed(job, "task")
            report = run_pipeline(opts, self.observe, job.cancel, self.budget)

    def _save_record(self, job: Job, **changes) -> None:
        if job.record is not None:
            job.record = updated_record(job.run_dir, job.record, **changes)

    def _changed(self, job: Job, kind: str, data: dict | None = None) -> None:
        self._feed.changed(job, kind, data)
