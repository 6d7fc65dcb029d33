"""What a run tells its observers while it goes: one tagged union of typed events, and the `Observer` type.

Every event names its run (`label`, empty for a single run) and its stage. They are
msgspec Structs tagged by `kind`, so a front end sends them on as they are (the
cluster streams them from its nodes to the driver's display: `msgspec` encodes one,
the driver decodes a `RunEvent` and hands it to its own observer). An observer is
any callable taking one event; it is called from watchdog threads and must never
change the run. This module only defines the events: `runner.run` sends them,
the displays and front ends show them. Below them, what an executor tells the run
loop while its stage runs (`StageNews`, to a `Listener`): a sample, one of the
stage's own progress events, or a warning, which the loop records and passes on as
a labelled `RunEvent`.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from aishorts.ipc.messages import ProgressEvent
from aishorts.runner.report import StageReport


class StageEvent(msgspec.Struct, kw_only=True, frozen=True, tag_field="kind"):
    label: str
    """The run's label (a batch's short, a server's task id); empty for a single run."""
    stage: str


class StageWaiting(StageEvent, frozen=True, tag="waiting"):
    """The stage is ready but its ceiling does not fit in the memory budget yet."""

    ceiling: int


class StageStarted(StageEvent, frozen=True, tag="started"):
    ceiling: int


class StageSample(StageEvent, frozen=True, tag="sample"):
    """The RSS of the stage's process tree, sampled by its watchdog."""

    rss: int


class StageProgress(StageEvent, frozen=True, tag="progress"):
    """What the stage itself said: progress, a timed phase, a log line or a note."""

    event: ProgressEvent


class StageWarning(StageEvent, frozen=True, tag="warning"):
    message: str


class StageFinished(StageEvent, frozen=True, tag="finished"):
    """The stage ended (or was skipped); `stage` is `report.name`."""

    report: StageReport


RunEvent = StageWaiting | StageStarted | StageSample | StageProgress | StageWarning | StageFinished
Observer = Callable[[RunEvent], None]


def ignore(event: RunEvent) -> None:
    """The observer that shows nothing (a probe's attempts)."""


class Sampled(msgspec.Struct, frozen=True, tag_field="type", tag="sample"):
    """The RSS of the stage's process tree, as its watchdog sampled it."""

    rss: int


class Warned(msgspec.Struct, frozen=True, tag_field="type", tag="warning"):
    """The watchdog's warning (the tree nears its ceiling)."""

    message: str


StageNews = Sampled | Warned | ProgressEvent
"""What an executor learns while its stage runs; tagged by `type` as `ProgressEvent` is, so a list of them is
encoded and decoded as it is (the cluster returns a Ray task's news to the driver)."""
Listener = Callable[[StageNews], None]
