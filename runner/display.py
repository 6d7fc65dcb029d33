"""Showing a run while it happens: a rich live table on a terminal, plain lines otherwise.

Both displays are observers (`runner.events.Observer`: called with each
`RunEvent`) fed from watchdog threads; they only show what they hear and never
change the run.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import TextIO

from aishorts.ipc.messages import ProgressEvent
from aishorts.ipc.sizes import format_size
from aishorts.runner.events import (
    RunEvent, StageFinished, StageProgress, StageSample, StageStarted, StageWaiting, StageWarning,
)
from aishorts.runner.report import StageReport


def _key(label: str, stage: str) -> str:
    return f"{label}:{stage}" if label else stage


class PlainDisplay:
    """One line per event worth a line; progress messages at most once a second per stage."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream
        self._lock = threading.Lock()
        self._last_progress: dict[str, float] = {}

    def _say(self, label: str, stage: str, text: str) -> None:
        with self._lock:
            print(f"[{_key(label, stage)}] {text}", file=self.stream, flush=True)

    def __call__(self, event: RunEvent) -> None:
        match event:
            case StageWaiting(label=label, stage=stage, ceiling=ceiling):
                self._say(label, stage, f"waiting for {format_size(ceiling)} of the memory budget")
            case StageStarted(label=label, stage=stage, ceiling=ceiling):
                self._say(label, stage, f"started (ceiling {format_size(ceiling)})")
            case StageProgress(label=label, stage=stage, event=progress):
                self._progress(label, stage, progress)
            case StageWarning(label=label, stage=stage, message=message):
                self._say(label, stage, f"warning: {message}")
            case StageFinished(label=label, report=report):
                self._finished(label, report)

    def _progress(self, label: str, stage: str, event: ProgressEvent) -> None:
        key = _key(label, stage)
        now = time.monotonic()
        if event.kind == "progress" and now - self._last_progress.get(key, 0.0) < 1.0 and (event.fraction or 0) < 1:
            return
        self._last_progress[key] = now
        if event.kind == "phase":
            self._say(label, stage, f"{event.message} took {event.phase_s or 0:.1f}s")
        else:
            pct = f" {event.fraction:.0%}" if event.fraction is not None else ""
            self._say(label, stage, f"{event.message}{pct}")

    def _finished(self, label: str, report: StageReport) -> None:
        if report.status == "skipped":
            self._say(label, report.name, "skipped (artifact up to date)")
        else:
            self._say(label, report.name, f"{report.status}: peak {format_size(report.peak_rss_bytes)}"
                      f" of {format_size(report.ceiling_bytes)} in {report.wall_s:.1f}s")


@dataclass
class _Row:
    label: str
    stage: str
    state: str
    ceiling: int
    started: float | None = None
    ended: float | None = None
    rss: int = 0
    peak: int = 0
    message: str = ""
    fraction: float | None = None


class LiveDisplay:
    """A live table: each stage's state, elapsed time, RSS against its ceiling, and its latest progress."""

    def __init__(self, console=None, warn_fraction: float = 1.0) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = console or Console()
        self.warn_fraction = warn_fraction
        """Bars turn red past this share of the ceiling, where the watchdog warns (limits.toml's warn_fraction)."""
        self._rows: dict[str, _Row] = {}
        self._lock = threading.Lock()
        self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveDisplay:
        self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._live.__exit__(*exc)

    def _row(self, label: str, stage: str, ceiling: int = 0) -> _Row:
        key = _key(label, stage)
        with self._lock:
            if key not in self._rows:
                self._rows[key] = _Row(label, stage, "pending", ceiling)
            return self._rows[key]

    def __call__(self, event: RunEvent) -> None:
        match event:
            case StageWaiting(label=label, stage=stage, ceiling=ceiling):
                self._row(label, stage, ceiling).state = "waiting for memory"
            case StageStarted(label=label, stage=stage, ceiling=ceiling):
                row = self._row(label, stage, ceiling)
                row.state, row.started, row.ceiling = "running", time.monotonic(), ceiling
            case StageSample(label=label, stage=stage, rss=rss):
                row = self._row(label, stage)
                row.rss, row.peak = rss, max(row.peak, rss)
            case StageProgress(label=label, stage=stage, event=progress):
                self._progress(self._row(label, stage), progress)
            case StageWarning(label=label, stage=stage, message=message):
                self._warn(label, stage, message)
            case StageFinished(label=label, report=report):
                row = self._row(label, report.name, report.ceiling_bytes)
                row.state, row.ended = report.status, time.monotonic()
                row.peak = max(row.peak, report.peak_rss_bytes)
                row.rss = 0

    @staticmethod
    def _progress(row: _Row, event: ProgressEvent) -> None:
        if event.kind == "phase":
            row.message = f"{event.message}: {event.phase_s or 0:.1f}s"
        else:
            row.message, row.fraction = event.message, event.fraction

    def _warn(self, label: str, stage: str, message: str) -> None:
        from rich.text import Text

        self.console.log(Text(f"{_key(label, stage)}: {message}", style="yellow"))

    def _render(self):
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        table = Table(expand=False, box=None, padding=(0, 1))
        for column in ("stage", "state", "from", "time", "memory", "", "progress"):
            table.add_column(column)
        colours = {"done": "green", "skipped": "dim", "oom": "red", "failed": "red", "interrupted": "yellow"}
        with self._lock:
            rows = list(self._rows.values())
        now = time.monotonic()
        first = {}
        for row in rows:  # each run's own clock starts when its first stage started
            if row.started is not None:
                first[row.label] = min(first.get(row.label, row.started), row.started)
        for row in rows:
            elapsed = ((row.ended or now) - row.started) if row.started else 0.0
            shown = row.rss if row.state == "running" else row.peak
            bar = ProgressBar(total=max(row.ceiling, 1), completed=min(shown, row.ceiling), width=20,
                              complete_style="red" if shown > self.warn_fraction * row.ceiling else "cyan")
            fraction = f" {row.fraction:.0%}" if row.fraction is not None and row.state == "running" else ""
            table.add_row(
                Text(_key(row.label, row.stage)), Text(row.state, style=colours.get(row.state, "cyan")),
                f"{row.started - first[row.label]:5.1f}s" if row.started is not None else "", f"{elapsed:5.1f}s", bar, f"{format_size(shown)}/{format_size(row.ceiling)}",
                Text(f"{row.message[:60]}{fraction}"),
            )
        return table
