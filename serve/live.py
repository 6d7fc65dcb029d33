"""A job's live state, fed by its run's events: each `RunEvent` turned into the job's `StageView`s and memory
timeline, and every change announced with its revision to the streams that listen.

Responsible for: the observer handed to `runner.run.run_pipeline` (called from the watchdog threads of each run),
the change feed (`ChangeFeed`) that numbers each change of a task's state and passes it on, and the event hub
(`EventHub`) that fans the encoded changes out to the open event streams. Not for: the queue (`serve.jobs`), what
clients see (`serve.views`) or how a change is encoded for a stream (`serve.routes_tasks`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping

from aishorts.ipc.messages import ProgressEvent
from aishorts.runner.events import (
    RunEvent, StageFinished, StageProgress, StageSample, StageStarted, StageWaiting, StageWarning,
)
from aishorts.runner.report import StageReport
from aishorts.serve.job import Job, StageView


class ChangeFeed:
    """Passes each change of a job on to `on_change(job, kind, data)`, a change of its state ("task") with a new
    revision first."""

    def __init__(self, on_change: Callable[[Job, str, dict], None]) -> None:
        self._on_change = on_change
        self._revision = 0
        self._lock = threading.Lock()

    def changed(self, job: Job, kind: str, data: dict | None = None) -> None:
        if kind == "task":
            job.revision = self.next_revision()
        self._on_change(job, kind, data or {})

    def next_revision(self) -> int:
        """Microseconds since the epoch, strictly increasing: later than any revision a page kept from a server
        that ran before this one (a page that outlives a restart still takes the new views)."""
        with self._lock:
            self._revision = max(self._revision + 1, time.time_ns() // 1000)
            return self._revision


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


class LiveObserver:
    """The runs' observer: each event of a run (labelled with its job's id) applied to that job's live stages."""

    def __init__(self, jobs: Mapping[str, Job], feed: ChangeFeed) -> None:
        self._jobs = jobs
        self._feed = feed

    def __call__(self, event: RunEvent) -> None:
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
        job = self._jobs.get(label)
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
            self._feed.changed(job, "task")

    def _on_started(self, label: str, stage: str, ceiling: int) -> None:
        if found := self._stage(label, stage):
            job, live = found
            live.status, live.ceiling_bytes = "running", ceiling
            live.started_at_s, live.ended_at_s = round(time.monotonic() - job.started, 3), None
            live.rss_bytes = live.peak_rss_bytes = 0
            live.fraction, live.detail, live.message = None, "", ""
            self._feed.changed(job, "task")

    def _on_sample(self, label: str, stage: str, rss: int) -> None:
        if found := self._stage(label, stage):
            job, live = found
            live.rss_bytes = rss
            live.peak_rss_bytes = max(live.peak_rss_bytes, rss)
            t = round(time.monotonic() - job.started, 3)
            job.timeline.append((t, rss))
            self._feed.changed(job, "sample", {"stage": stage, "t": t, "rss_bytes": rss,
                                               "peak_rss_bytes": live.peak_rss_bytes,
                                               "ceiling_bytes": live.ceiling_bytes})

    def _on_event(self, label: str, stage: str, event: ProgressEvent) -> None:
        if event.kind != "progress":
            return
        if found := self._stage(label, stage):
            job, live = found
            if event.fraction is not None:
                live.fraction = max(0.0, min(1.0, event.fraction))
            live.detail = event.message
            self._feed.changed(job, "progress", {"stage": stage, "fraction": live.fraction, "detail": live.detail,
                                                 "at": event.t})

    def _on_warning(self, label: str, stage: str, message: str) -> None:
        if found := self._stage(label, stage):
            job, live = found
            live.detail = message
            self._feed.changed(job, "progress", {"stage": stage, "fraction": live.fraction, "detail": message})

    def _on_finished(self, label: str, report: StageReport) -> None:
        if found := self._stage(label, report.name):
            job, live = found
            live.take_report(report)
            live.rss_bytes = 0
            if report.started_at_s is not None and live.started_at_s is not None:  # on the job's clock, not the run's
                live.ended_at_s = round(live.started_at_s + report.wall_s, 3)
            self._feed.changed(job, "task")
