"""Several shorts side by side under one --max-ram: `--topics-file FILE --jobs N`.

Each topic gets its own run directory inside the batch directory; N worker
threads each run one pipeline at a time; every stage of every pipeline takes
its ceiling from one shared `MemoryBudget`, so a stage waits rather than
overcommits. One topic's failure does not stop the others. The batch ends
with `batch.json` and a table.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import sys
import threading
import time
from pathlib import Path

import msgspec

from ipc.files import write_struct
from ipc.pipeline import StageSpec
from runner.budget import MemoryBudget
from runner.console import display_for, interrupt_handling
from runner.errors import UsageError
from runner.limits import Limits
from runner.meter import MemoryMeter
from runner.options import run_options, validate_topic
from runner.report import Sample, downsample
from runner.run import run_pipeline
from runner.rundir import claimed, default_run_dir
from runner.status import EXIT_CODES, WORST_FIRST, Ending, finished
from runner.userfiles import read_text


class BatchItem(msgspec.Struct, kw_only=True):
    topic: str
    run_dir: str
    status: Ending
    failed_stage: str | None = None
    message: str = ""
    peak_rss_bytes: int = 0
    wall_s: float = 0.0
    rerun_command: str = ""


class BatchReport(msgspec.Struct, kw_only=True):
    version: int = 1
    batch_dir: str
    status: Ending
    exit_code: int
    jobs: int
    max_ram_bytes: int | None
    peak_rss_bytes: int
    """Parent plus every stage tree of every run, sampled together."""
    wall_s: float
    waited_for_budget_s: float
    items: list[BatchItem]
    timeline: list[Sample] = []


def read_topics(path: Path) -> list[str]:
    lines = read_text(path, "--topics-file").splitlines()
    topics = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not topics:
        raise UsageError(f"--topics-file {path}: no topics (one a line; # starts a comment)")
    return [validate_topic(topic) for topic in topics]


def run_batch(args: argparse.Namespace, limits: Limits, pipeline: tuple[StageSpec, ...], max_ram: int | None) -> int:
    topics = read_topics(args.topics_file)
    if args.topic is not None:
        raise UsageError("--topic and --topics-file are exclusive")
    fresh = args.run_dir is None
    batch_dir = args.run_dir or default_run_dir(f"batch-{args.topics_file.stem}")
    runs = [
        run_options(args, limits, pipeline, max_ram, run_dir=batch_dir / f"{index:02d}-{_slug(topic)}", topic=topic,
                    label=f"{index:02d}")
        for index, topic in enumerate(topics, start=1)
    ]
    for opts in runs:
        _ = opts.ceilings  # planned once per run, here: a stage that cannot fit fails the batch before anything starts
    side_by_side = pipelines_at_once(args.jobs, runs, limits, max_ram)
    if side_by_side < min(args.jobs, len(runs)):
        print(f"--jobs {args.jobs}: running {side_by_side} at a time, as many as the cores and the memory budget"
              " can run", file=sys.stderr)
    for opts in runs:
        if side_by_side > 1:  # pipelines share the cores instead of each stage fighting for all of them
            opts.threads = max(1, _cores() // side_by_side)
    with interrupt_handling() as cancel, claimed(batch_dir, fresh=fresh) as batch_dir:
        for opts in runs:
            opts.run_dir = batch_dir / opts.run_dir.name
        results, meter, wall_s = _run_all(args, limits, runs, side_by_side, MemoryBudget(limits.stage_room(max_ram)),
                                          cancel)
        report = _batch_report(batch_dir, topics, runs, results, args.jobs, max_ram, meter, wall_s)
        write_struct(batch_dir / "batch.json", report)
        _print_batch(args, report)
    return report.exit_code


def pipelines_at_once(jobs: int, runs: list, limits: Limits, max_ram: int | None) -> int:
    """As many pipelines as asked, but no more than there are topics, cores, or stages the budget can hold at once.

    More would only add threads that wait: for the budget, or for a core.
    """
    room = limits.stage_room(max_ram)
    smallest = min((c for opts in runs for c in opts.ceilings.values()), default=1)
    by_budget = len(runs) if room is None else max(1, room // max(smallest, 1))
    return max(1, min(jobs, len(runs), _cores(), by_budget))


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _slug(topic: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", topic.lower()).strip("-")[:40]


def _run_all(args, limits: Limits, runs: list, side_by_side: int, budget: MemoryBudget, cancel: threading.Event):
    """Run every pipeline, `side_by_side` at a time; results by index (a report, or the UsageError that refused it)."""
    work: queue.Queue = queue.Queue()
    for index, opts in enumerate(runs):
        work.put((index, opts))
    results: dict[int, object] = {}
    start = time.monotonic()
    with display_for(args, limits.warn_fraction) as observer, MemoryMeter(limits.poll_s) as meter:
        def worker() -> None:
            while not cancel.is_set():
                try:
                    index, opts = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    results[index] = run_pipeline(opts, observer, cancel, budget, meter)
                except UsageError as exc:  # e.g. a saved artifact missing for --only in this run
                    results[index] = exc

        threads = [threading.Thread(target=worker, name=f"pipeline-{i}") for i in range(side_by_side)]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)  # keep the main thread free to take Ctrl-C
    return results, meter, time.monotonic() - start


def _batch_report(batch_dir, topics, runs, results, jobs, max_ram, meter, wall_s) -> BatchReport:
    items = []
    waited = 0.0
    for index, (topic, opts) in enumerate(zip(topics, runs)):
        result = results.get(index)
        if result is None:
            items.append(BatchItem(topic=topic, run_dir=str(opts.run_dir), status="interrupted", message="not started"))
        elif isinstance(result, Exception):
            items.append(BatchItem(topic=topic, run_dir=str(opts.run_dir), status="failed", message=str(result)))
        else:
            failed = next((s.name for s in result.stages if not finished(s.status)), None)
            waited += sum(s.waited_for_budget_s for s in result.stages)
            items.append(BatchItem(
                topic=topic, run_dir=str(opts.run_dir), status=result.status, failed_stage=failed,
                message=result.message, peak_rss_bytes=result.peak_rss_bytes, wall_s=result.wall_s,
                rerun_command=result.rerun_command,
            ))
    statuses = {item.status for item in items}
    status = next((s for s in WORST_FIRST if s in statuses), "done")
    return BatchReport(
        batch_dir=str(batch_dir), status=status, exit_code=EXIT_CODES[status], jobs=jobs, max_ram_bytes=max_ram,
        peak_rss_bytes=meter.peak, wall_s=round(wall_s, 3), waited_for_budget_s=round(waited, 3), items=items,
        timeline=downsample(list(meter.samples)),
    )


def _print_batch(args: argparse.Namespace, report: BatchReport) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from ipc.files import encode_json
    from ipc.sizes import format_size

    console = Console(stderr=args.json, highlight=False)
    table = Table(title=Text(f"batch {report.batch_dir}: {report.status}"))
    for column in ("topic", "status", "failed stage", "peak", "time", "run dir"):
        table.add_column(column)
    for item in report.items:
        table.add_row(Text(item.topic[:40]), item.status, Text(item.failed_stage or ""), format_size(item.peak_rss_bytes),
                      f"{item.wall_s:.1f}s", Text(item.run_dir))
    console.print(table)
    stream = console.file
    print(f"whole batch: peak {format_size(report.peak_rss_bytes)} of --max-ram {format_size(report.max_ram_bytes)},"
          f" {report.wall_s:.1f}s; batch.json in {report.batch_dir}", file=stream)
    for item in report.items:
        if item.status != "done":
            print(f"{item.topic}: {item.message}", file=stream)
            if item.rerun_command:
                print(f"  to rerun it: {item.rerun_command}", file=stream)
    stream.flush()
    if args.json:
        sys.stdout.buffer.write(encode_json(report))
        sys.stdout.flush()
