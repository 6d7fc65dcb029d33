"""The errors the supervisor reports to users, each tied to its exit code.

Raised where the problem is understood; printed once, by `runner.cli`, as one
line without a traceback.
"""

from __future__ import annotations


class RunnerError(Exception):
    exit_code = 1


class UsageError(RunnerError):
    """Bad usage or bad input: unknown stage, malformed size or limits file, missing file."""

    exit_code = 2
