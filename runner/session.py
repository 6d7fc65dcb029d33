"""From parsed arguments to finished runs: one pipeline, or a batch of them.

Checks everything the user gave before anything starts (`runner.options`),
then runs one pipeline with its display and signal handling
(`runner.console`), or hands a `--topics-file` to `runner.batch`. Returns
the exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field

from aishorts.runner.batch import ClusterRunner, run_batch
from aishorts.runner.console import display_for, interrupt_handling, print_outcome
from aishorts.runner.errors import UsageError
from aishorts.runner.options import executor_for, limits_and_pipeline, max_ram_from, run_options
from aishorts.runner.run import StageExecutor, run_pipeline


@dataclass(frozen=True)
class Extensions:
    """What a front end above the supervisor may hand it: the supervisor imports none of them itself."""

    executors: dict[str, StageExecutor] = field(default_factory=dict)
    """Executors by `--isolation` name besides `process` (a child per stage): `none`, the single-process baseline."""
    run_on_cluster: ClusterRunner | None = None
    """Runs a planned batch across machines (`--cluster`)."""
    commands: dict[str, Callable[[list[str]], int]] = field(default_factory=dict)
    """Subcommands besides `probe` (`serve`): the first word of the command line, and the rest handed to it."""


def run_from_args(args: argparse.Namespace, extensions: Extensions = Extensions()) -> int:
    """Run what `args` asks for: `args.request` is the short (`ipc.request.ShortRequest`), the rest run-level."""
    limits, pipeline = limits_and_pipeline(args)
    max_ram = max_ram_from(args.max_ram)
    executor = executor_for(args.isolation, extensions.executors)
    if args.topics_file is not None:
        return run_batch(args, limits, pipeline, max_ram, executor, extensions.run_on_cluster)
    if args.jobs != 1:
        raise UsageError("--jobs needs --topics-file (one topic a line)")
    if args.cluster is not None or args.cluster_unit is not None:
        raise UsageError("--cluster needs --topics-file: it runs a batch of shorts across machines")
    opts = run_options(args, args.request, limits, pipeline, max_ram, run_dir=args.run_dir, executor=executor)
    with interrupt_handling() as cancel:
        with display_for(args, limits.warn_fraction) as observer:
            report = run_pipeline(opts, observer, cancel)
        print_outcome(args, report)
    return report.exit_code or 0
