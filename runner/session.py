"""From parsed arguments to finished runs: one pipeline, or a batch of them.

Checks everything the user gave before anything starts (`runner.options`),
then runs one pipeline with its display and signal handling
(`runner.console`), or hands a `--topics-file` to `runner.batch`. Returns
the exit code.
"""

from __future__ import annotations

import argparse

from runner.batch import run_batch
from runner.console import display_for, interrupt_handling, print_outcome
from runner.errors import UsageError
from runner.options import limits_and_pipeline, max_ram_from, run_options
from runner.run import run_pipeline


def run_from_args(args: argparse.Namespace) -> int:
    """Run what `args` asks for: `args.request` is the short (`ipc.request.ShortRequest`), the rest run-level."""
    limits, pipeline = limits_and_pipeline(args)
    max_ram = max_ram_from(args.max_ram)
    if args.topics_file is not None:
        return run_batch(args, limits, pipeline, max_ram)
    if args.jobs != 1:
        raise UsageError("--jobs needs --topics-file (one topic a line)")
    if args.cluster is not None or args.cluster_unit is not None:
        raise UsageError("--cluster needs --topics-file: it runs a batch of shorts across machines")
    opts = run_options(args, args.request, limits, pipeline, max_ram, run_dir=args.run_dir)
    with interrupt_handling() as cancel:
        with display_for(args, limits.warn_fraction) as observer:
            report = run_pipeline(opts, observer, cancel)
        print_outcome(args, report)
    return report.exit_code or 0
