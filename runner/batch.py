"""Several shorts from one batch file: `--topics-file FILE --jobs N`, or across machines with `--cluster`.

Each row of the batch file (`runner.batchfile`: plain topics, JSON Lines or CSV, each row with its own
options) is checked by the request schema and planned into its own run directory inside the batch
directory, all before anything starts. Locally, N worker threads each run one pipeline at a time;
every stage of every pipeline takes its ceiling from one shared `MemoryBudget`, so a stage waits
rather than overcommits. With `--cluster` the planned shorts go to the cluster runner the front end
handed in (`cluster.driver`'s; the supervisor never loads it). One short's failure does not stop the
others. The batch ends with `batch.json` and a table.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from aishorts.ipc.files import write_struct
from aishorts.ipc.pipeline import StageSpec
from aishorts.ipc.request import RequestError
from aishorts.ipc.text import slug
from aishorts.runner.batchfile import BatchLine, at_line, read_batch_file, row_request, row_words
from aishorts.runner.budget import MemoryBudget
from aishorts.runner.console import display_for, interrupt_handling
from aishorts.runner.errors import UsageError
from aishorts.runner.limits import Limits
from aishorts.runner.meter import MemoryMeter
from aishorts.runner.options import limits_and_pipeline, run_options
from aishorts.runner.report import RunReport, Sample, downsample
from aishorts.runner.run import RunOptions, StageExecutor, execute_in_child, run_pipeline
from aishorts.runner.rundir import claimed, default_run_dir
from aishorts.runner.status import EXIT_CODES, WORST_FIRST, Ending, finished


class BatchItem(msgspec.Struct, kw_only=True):
    topic: str
    """The row's topic, or what stands for it (its script file's name, its category)."""
    run_dir: str
    status: Ending
    line: int = 0
    """The row's line in the batch file."""
    node: str = ""
    """With --cluster: the node the short ran on (address/node id); with --cluster-unit stage, `stage@node` each."""
    failed_stage: str | None = None
    message: str = ""
    peak_rss_bytes: int = 0
    """Its supervisor plus stage trees; with --cluster-unit stage, its largest stage tree's."""
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
    """Parent plus every stage tree of every run, sampled together (with --cluster: the largest short's)."""
    wall_s: float
    waited_for_budget_s: float
    items: list[BatchItem]
    timeline: list[Sample] = []
    cluster: str | None = None
    """The --cluster address the batch ran on; None for a local batch."""


@dataclass
class PlannedShort:
    """One row of the batch file, checked and planned: what to run and where its run directory is."""

    line: int
    subject: str
    opts: RunOptions


ClusterRunner = Callable[..., int]
"""`run_on_cluster(args, limits, shorts, batch_dir, fresh, max_ram) -> exit code`: `cluster.driver`'s, handed in
by the front end (it imports Ray); the supervisor never loads it."""


def run_batch(args: argparse.Namespace, limits: Limits, pipeline: tuple[StageSpec, ...], max_ram: int | None,
              executor: StageExecutor = execute_in_child, run_on_cluster: ClusterRunner | None = None) -> int:
    if args.topic is not None:
        raise UsageError("--topic and --topics-file are exclusive")
    fresh = args.run_dir is None
    batch_dir = args.run_dir or default_run_dir(f"batch-{args.topics_file.stem}")
    if getattr(args, "cluster_unit", None) is not None and getattr(args, "cluster", None) is None:
        raise UsageError("--cluster-unit needs --cluster ADDRESS")
    if getattr(args, "cluster", None) is not None and run_on_cluster is None:
        raise UsageError("--cluster: not available from this entry point; run aishorts-runner (python -m aishorts)")
    shorts = plan_shorts(args, limits, pipeline, max_ram, batch_dir, executor)
    if getattr(args, "cluster", None) is not None:
        return run_on_cluster(args, limits, shorts, batch_dir, fresh, max_ram)
    runs = [short.opts for short in shorts]
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
        budget = MemoryBudget(limits.stage_room(max_ram))
        results, meter, wall_s = run_pipelines(args, limits, runs, side_by_side, budget, cancel)
        items = [batch_item(short, results.get(index)) for index, short in enumerate(shorts)]
        waited = sum(s.waited_for_budget_s for r in results.values() if isinstance(r, RunReport) for s in r.stages)
        report = batch_report(batch_dir, items, jobs=args.jobs, max_ram=max_ram, peak=meter.peak, wall_s=wall_s,
                              waited=waited, timeline=downsample(list(meter.samples)))
        write_struct(batch_dir / "batch.json", report)
        print_batch(args, report)
    return report.exit_code


def plan_shorts(args: argparse.Namespace, limits: Limits, pipeline: tuple[StageSpec, ...], max_ram: int | None,
                batch_dir: Path, executor: StageExecutor = execute_in_child) -> list[PlannedShort]:
    """Every row of the batch file as a checked run; a bad row is a UsageError naming its line, before any starts."""
    rows = read_batch_file(args.topics_file)
    return [_plan_short(args, limits, pipeline, max_ram, batch_dir, index, entry, executor)
            for index, entry in enumerate(rows, start=1)]


def _plan_short(args, limits: Limits, pipeline: tuple[StageSpec, ...], max_ram: int | None, batch_dir: Path,
                index: int, entry: BatchLine, executor: StageExecutor) -> PlannedShort:
    with at_line(args.topics_file, entry.line):
        given = argparse.Namespace(**{**vars(args), "limit": [*args.limit, *entry.row.limits]})
        row_limits = limits_and_pipeline(given)[0] if entry.row.limits else limits
        subject = entry.row.subject()
        try:
            opts = run_options(given, row_request(args.request, entry.row), row_limits, pipeline, max_ram,
                               run_dir=batch_dir / f"{index:02d}-{slug(subject, 40)}", label=f"{index:02d}",
                               executor=executor)
        except RequestError as exc:
            raise UsageError(row_words(exc, entry.row)) from None
        _ = opts.ceilings  # planned once per run, here: a stage that cannot fit fails the batch before anything starts
    return PlannedShort(line=entry.line, subject=subject, opts=opts)


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



def run_pipelines(args, limits: Limits, runs: list, side_by_side: int, budget: MemoryBudget,
                  cancel: threading.Event):
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


NOT_STARTED = "not started"
TABLE_ROWS = 100
"""Rows of the closing table: rich takes about 1 ms a row, and a 10,000-row batch stopped by SIGTERM must exit now."""


def batch_item(short: PlannedShort, result: object, node: str = "") -> BatchItem:
    """One row of batch.json: how the short's run ended (None: it never started; an exception: it was refused)."""
    base = dict(topic=short.subject, run_dir=str(short.opts.run_dir), line=short.line, node=node)
    if result is None:
        return BatchItem(**base, status="interrupted", message=NOT_STARTED)
    if isinstance(result, Exception):
        return BatchItem(**base, status="failed", message=str(result))
    assert isinstance(result, RunReport)
    failed = next((s.name for s in result.stages if not finished(s.status)), None)
    return BatchItem(**base, status=result.status if result.status != "running" else "interrupted",
                     failed_stage=failed, message=result.message, peak_rss_bytes=result.peak_rss_bytes,
                     wall_s=result.wall_s, rerun_command=result.rerun_command)


def batch_report(batch_dir: Path, items: list[BatchItem], *, jobs: int, max_ram: int | None, peak: int, wall_s: float,
                 waited: float = 0.0, timeline: list[Sample] | None = None, cluster: str | None = None) -> BatchReport:
    statuses = {item.status for item in items}
    status = next((s for s in WORST_FIRST if s in statuses), "done")
    return BatchReport(
        batch_dir=str(batch_dir), status=status, exit_code=EXIT_CODES[status], jobs=jobs, max_ram_bytes=max_ram,
        peak_rss_bytes=peak, wall_s=round(wall_s, 3), waited_for_budget_s=round(waited, 3), items=items,
        timeline=timeline or [], cluster=cluster,
    )


def print_batch(args: argparse.Namespace, report: BatchReport) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from aishorts.ipc.files import encode_json
    from aishorts.ipc.sizes import format_size

    console = Console(stderr=args.json, highlight=False)
    table = Table(title=Text(f"batch {report.batch_dir}: {report.status}"))
    columns = ("topic", "status", "failed stage", "peak", "time", "run dir") + (("node",) if report.cluster else ())
    for column in columns:
        table.add_column(column)
    started = [item for item in report.items if item.message != NOT_STARTED]
    for item in started[:TABLE_ROWS]:
        cells = [Text(item.topic[:40]), item.status, Text(item.failed_stage or ""), format_size(item.peak_rss_bytes),
                 f"{item.wall_s:.1f}s", Text(item.run_dir)]
        table.add_row(*cells, *((Text(item.node),) if report.cluster else ()))
    console.print(table)
    stream = console.file
    if len(started) > TABLE_ROWS:
        print(f"... and {len(started) - TABLE_ROWS} more shorts (batch.json lists every one)", file=stream)
    if len(started) < len(report.items):
        print(f"{len(report.items) - len(started)} shorts were not started (batch.json lists them)", file=stream)
    print(f"whole batch: peak {format_size(report.peak_rss_bytes)} of --max-ram {format_size(report.max_ram_bytes)},"
          f" {report.wall_s:.1f}s; batch.json in {report.batch_dir}", file=stream)
    for item in started:
        if item.status != "done":
            print(f"{item.topic}: {item.message}", file=stream)
            if item.rerun_command:
                print(f"  to rerun it: {item.rerun_command}", file=stream)
    stream.flush()
    if args.json:
        sys.stdout.buffer.write(encode_json(report))
        sys.stdout.flush()
