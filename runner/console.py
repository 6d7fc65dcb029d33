"""The terminal side of a run: Ctrl-C and SIGTERM, the live display, and the closing summary.

Signals become a cancel event that every watchdog honours; the display is an
`Observer` chosen for where output goes (a live table on a terminal, plain
lines otherwise); the summary is printed once, at the end. Nothing here
decides what runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from aishorts.runner.report import RunReport, report_json, summary_table


@contextlib.contextmanager
def interrupt_handling() -> Iterator[threading.Event]:
    """Turn Ctrl-C, SIGTERM and SIGHUP into a cancel event that every watchdog and queue honours.

    The first signal starts a clean shutdown: stage trees are killed, reports written. Any
    later one only says it is under way; it never raises, so a second Ctrl-C a few
    milliseconds after the first cannot cut the shutdown short with a traceback.
    """
    cancel = threading.Event()

    def handler(signum, frame):
        if cancel.is_set():
            with contextlib.suppress(OSError, ValueError):
                os.write(sys.stderr.fileno(), b"aishorts-runner: stopping; the stage trees are being killed\n")
            return
        cancel.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield cancel
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def display_for(args: argparse.Namespace, warn_fraction: float):
    from aishorts.runner.display import LiveDisplay, PlainDisplay

    if sys.stdout.isatty() and not args.json:
        with LiveDisplay(warn_fraction=warn_fraction) as live:
            yield live
    else:
        yield PlainDisplay(sys.stderr if args.json else sys.stdout)


def print_outcome(args: argparse.Namespace, report: RunReport) -> None:
    from rich.console import Console

    stream = sys.stderr if args.json else sys.stdout
    Console(file=stream, highlight=False).print(summary_table(report))
    for stage in report.stages:
        for note in stage.notes:
            print(f"{stage.name}: {note}", file=stream)
    if report.status == "done":
        video = Path(report.run_dir) / "final.mp4"
        print(f"done: {video if video.exists() else report.run_dir}", file=stream)
    else:
        print(f"{report.status}: {report.message}", file=stream)
        if report.rerun_command:
            same = report.suggestion is not None and not report.suggestion.more_memory  # the OS killed it
            how = "to resume it once memory is free" if same else "to rerun it with more memory"
            print(f"{how}:\n  {report.rerun_command}", file=stream)
        print(f"report: {Path(report.run_dir) / 'report.json'}", file=stream)
    stream.flush()
    if args.json:
        sys.stdout.buffer.write(report_json(report))
        sys.stdout.flush()
