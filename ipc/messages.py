"""Messages between the supervisor and a stage process: the call file, progress events, the failure.

A stage is started as `python -m aishorts.stages.<name> CALL_FILE`. The call file is a
`StageCall`; the stage sends `StageMessage`s back, one JSON object per line,
on the pipe whose descriptor the call names: `ProgressEvent`s while it works,
and one `StageFailure` just before it exits non-zero, saying why. Nothing
else crosses; a stage that dies without saying (killed, crashed in native
code) leaves the supervisor its log to read.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Device = Literal["auto", "cpu", "cuda"]


class StageCall(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    stage: str
    module: str
    run_dir: str
    out_dir: str
    inputs: dict[str, str]
    """Upstream stage name -> artifact path relative to the run directory."""
    input_kinds: dict[str, str]
    """Upstream stage name -> artifact kind expected there."""
    output_kind: str
    params: msgspec.Raw = msgspec.Raw(b"{}")
    device: Device = "auto"
    threads: int = 0
    """CPU threads the stage may use (0: as many as it likes); set when pipelines share the cores."""
    ceiling_bytes: int = 0
    thresholds: dict[str, int] = {}
    """The stage's memory thresholds from the limits file (`thresholds` of `[stages.NAME]`), in bytes, by name."""
    progress_fd: int | None = None


class ProgressEvent(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="type", tag="event"):
    t: float
    kind: Literal["progress", "phase", "log", "note"] = "progress"
    """note: a fact the user must see in the report (e.g. "grounded in 2 sources"), logged as well."""
    message: str = ""
    fraction: float | None = None
    phase_s: float | None = None
    """For `phase` events: how long the named phase took (e.g. model load)."""


class StageFailure(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="type", tag="failure"):
    """Why the stage cannot finish, in its own words, sent just before it exits non-zero."""

    reason: str
    """What the user reads: a StageError's message, or the exception's type and message for a crash."""
    where: str = ""
    """For a crash (an exception no stage code expected): `file:line in function` where it was raised."""


StageMessage = ProgressEvent | StageFailure

progress_encoder = msgspec.json.Encoder()
progress_decoder = msgspec.json.Decoder(StageMessage)
