"""One job of the server in memory: its run directory, its phase, its live stages and memory timeline.

Responsible for: the shape of that state (`Job`, `StageView`), which names can be a task's id, and reading a
job's latest report without changing the job (`latest_report`). Not for:
changing it (`serve.jobs` runs the queue, `serve.live` follows a run's events), keeping it on disk
(`serve.records`), or what clients see of it (`serve.views`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from aishorts.runner.report import RunReport, StageReport
from aishorts.runner.run import RunOptions
from aishorts.serve.records import JobRecord, read_report

TASK_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


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

    def take_report(self, report: StageReport) -> None:
        """What the stage's report says of its end (`REPORTED`), and its whole progress once done or skipped."""
        for name in REPORTED:
            setattr(self, name, getattr(report, name))
        if report.status in ("done", "skipped"):
            self.fraction = 1.0


REPORTED = ("status", "peak_rss_bytes", "ceiling_bytes", "waited_for_budget_s", "killed_by_os", "message", "wall_s")
"""The fields a `StageView` takes, as they are, from the stage's `StageReport` once the stage has ended."""


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
    video: int = 1
    """Which of the task's videos runs now (MoneyPrinterTurbo's `video_count`: each in its own run directory)."""
    revision: int = 0
    """Raised at every change of the task's state: a client keeps the view with the highest one, whatever order
    views reach it in (an action's answer computed before the change it raced with, an event fanned out late)."""


def latest_report(job: Job, elsewhere: bool) -> RunReport | None:
    """The report of a job that is not running here, read again from its run directory while it may still change
    (none kept yet, the one kept says running, or another process runs it); the job itself is left as it is."""
    if job.report is None or job.report.status == "running" or elsewhere:
        return read_report(job.run_dir) or job.report
    return job.report


VIDEOS_DIR = "videos"
"""Inside a task's run directory: the run directories of its videos after the first (`videos/2`, `videos/3`...)."""


def video_dir(run_dir: Path, number: int) -> Path:
    """The run directory of the task's video `number` (1: the task's own)."""
    return run_dir if number == 1 else run_dir / VIDEOS_DIR / str(number)


def video_count(job: Job) -> int:
    """How many videos the task makes (MoneyPrinterTurbo's `video_count`; 1 unless asked)."""
    return job.record.videos if job.record is not None else 1


def valid_task_id(task_id: str) -> bool:
    return 0 < len(task_id) <= 200 and set(task_id) <= TASK_ID_CHARS and not task_id.startswith(".")
