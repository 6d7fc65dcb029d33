"""What a job keeps on disk, in its run directory: `serve.json` (the `JobRecord`) written, and `run.json` and
`report.json` read.

Responsible for: reading and writing those files, an unreadable one being "none" rather than an error (a run the
CLI is writing, or a folder left half made). Not for: deciding what goes into a record (`serve.jobs`).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from aishorts.ipc.files import ArtifactError, read_struct, write_struct
from aishorts.runner.report import RunReport
from aishorts.runner.rundir import RunManifest

RECORD_NAME = "serve.json"


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
    videos: int = 1
    """How many videos the task makes, each its own run with its own seed (MoneyPrinterTurbo's `video_count`): the
    first in the task's run directory, the others in `videos/2`, `videos/3`... inside it."""


def write_record(run_dir: Path, record: JobRecord) -> None:
    write_struct(run_dir / RECORD_NAME, record)


def updated_record(run_dir: Path, record: JobRecord, **changes) -> JobRecord:
    """The record with `changes`, written."""
    record = msgspec.structs.replace(record, **changes)
    write_record(run_dir, record)
    return record


def read_record(run_dir: Path) -> JobRecord | None:
    try:
        return read_struct(run_dir / RECORD_NAME, JobRecord)
    except (ArtifactError, OSError):
        return None


def read_report(run_dir: Path) -> RunReport | None:
    try:
        return read_struct(run_dir / "report.json", RunReport)
    except (ArtifactError, OSError):
        return None


def read_manifest(run_dir: Path) -> RunManifest | None:
    try:
        return read_struct(run_dir / "run.json", RunManifest)
    except (ArtifactError, OSError):
        return None
