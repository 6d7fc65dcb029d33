"""What a stage or a run ended as, and the exit code each ending maps to.

One vocabulary for the watchdog's outcome, `report.json`, batch items and the
process exit code. msgspec validates these values when a report is decoded, so
a report with an unknown status is refused rather than misread.
"""

from __future__ import annotations

from typing import Literal, get_args

Ending = Literal["done", "oom", "failed", "interrupted"]
"""How a stage process ended (the watchdog's verdict) and how a whole run ended."""

StageStatus = Literal["pending", "running", "skipped", "done", "oom", "failed", "interrupted"]
"""A stage in `report.json`: an `Ending`, or not started, running, or skipped as up to date."""

RunStatus = Literal["running", "done", "oom", "failed", "interrupted"]

ENDINGS: tuple[str, ...] = get_args(Ending)

EXIT_CODES: dict[str, int] = {"done": 0, "failed": 1, "oom": 3, "interrupted": 130}
"""Exit code of the command for each way a run (or the worst run of a batch) ended; 2 is bad usage."""

WORST_FIRST: tuple[str, ...] = ("interrupted", "oom", "failed", "done")
"""Which ending a batch reports when its runs ended differently."""


def finished(status: str) -> bool:
    """A stage that let the run go on: it ran to completion or was up to date."""
    return status in ("done", "skipped")
