"""What a stage's code may hold besides its inputs: the `StageContext` it is called with, and `StageError`.

Stage functions and their helpers import these from here, never from `stages.harness`, the process entry
that decodes a call and runs the stage. A `StageError` is a failure the user can act on, said in their
words; the context gives a stage its folders, ceiling, thresholds, device and progress channel. Nothing
here starts a process or touches the supervisor.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from aishorts.ipc.files import disk_full_message, relative_to_run, resolve_in_run
from aishorts.ipc.messages import ProgressEvent, StageCall

ProgressSink = Callable[[ProgressEvent], None]


class StageError(Exception):
    """A stage cannot do its job; the message says why in words a user can act on."""


class StageContext:
    """What a stage function may use besides its inputs: its folders, device, and a progress channel."""

    def __init__(self, call: StageCall, sink: ProgressSink | None = None) -> None:
        self.call = call
        self.run_dir = Path(call.run_dir)
        self.out_dir = Path(call.out_dir)
        self.ceiling_bytes = call.ceiling_bytes
        self.thresholds = call.thresholds  # by name, in bytes: limits.toml's `thresholds` of this stage
        self._sink = sink

    @property
    def device(self) -> str:
        return self.call.device

    def progress(self, message: str, fraction: float | None = None) -> None:
        self._emit(ProgressEvent(t=time.time(), kind="progress", message=message, fraction=fraction))

    def log(self, message: str) -> None:
        self._emit(ProgressEvent(t=time.time(), kind="log", message=message))

    def note(self, message: str) -> None:
        """Something the user must know about the result: kept in report.json's stage `notes` and shown at the end."""
        self._emit(ProgressEvent(t=time.time(), kind="note", message=message))

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a named phase (e.g. `load_model`, `synthesise`) and report it."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._emit(ProgressEvent(t=time.time(), kind="phase", message=name, phase_s=time.perf_counter() - start))

    def path(self, relative: str) -> Path:
        """A payload path from an artifact, checked to stay inside the run directory."""
        return resolve_in_run(self.run_dir, relative)

    def rel(self, path: Path) -> str:
        """The run-relative form of a payload this stage wrote."""
        return relative_to_run(self.run_dir, path)

    def _emit(self, event: ProgressEvent) -> None:
        if self._sink is not None:
            self._sink(event)


def disk_full(run_dir: Path | str, where: str | None = None) -> StageError:
    """A full disk, said plainly with the run directory, so the one-line failure tells the user what to free."""
    at = f", at {where}" if where else ""
    return StageError(disk_full_message(f"the run directory {run_dir}{at}"))
