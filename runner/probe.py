"""`aishorts-runner probe`: find, by bisection, the smallest ceiling at which each stage still finishes.

Each attempt reruns one stage on the saved inputs of an existing run, under a
`--limit`, as an ordinary supervised run, so no attempt can take the machine
down. Attempts run in a scratch copy of the run directory (upstream stage
folders hard-linked, read only), so the user's run is never touched. The
answer is the `--limit` that reproduces an out-of-memory failure and the one
that avoids it; `--write-limits FILE` turns the findings into a limits file.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from aishorts.ipc.pipeline import DEFAULT_PIPELINE, StageSpec, artifact_path
from aishorts.ipc.sizes import SizeError, format_size, parse_size
from aishorts.runner.errors import RunnerError, UsageError
from aishorts.runner.events import ignore
from aishorts.runner.limits import MiB, Limits, StageLimit, load_limits, save_limits
from aishorts.runner.pipeline_file import load_pipeline
from aishorts.runner.rundir import RunManifest
from aishorts.runner.run import RunOptions, run_pipeline



@dataclass
class Finding:
    stage: str
    passing: int
    failing: int | None
    peak: int
    configured: int
    attempts: int


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aishorts-runner probe",
        description="Rerun stages of an existing run under shrinking --limit values and find the smallest that passes.",
    )
    parser.add_argument("--run-dir", type=Path, required=True, metavar="DIR", help="a run whose stages have finished")
    parser.add_argument("--stage", action="append", metavar="STAGE", help="probe this stage (repeatable; default: all)")
    parser.add_argument("--step", default="25M", metavar="SIZE", help="precision of the answer (default 25M)")
    parser.add_argument("--limits", type=Path, metavar="FILE", help="limits file to compare with (default limits.toml)")
    parser.add_argument("--write-limits", type=Path, metavar="FILE", help="write the findings as a limits file")
    parser.add_argument("--margin", type=float, default=0.25, help="headroom added to each finding in --write-limits (default 0.25)")
    parser.add_argument("--pipeline", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        findings, limits = probe(args)
    except RunnerError as exc:
        print(f"aishorts-runner probe: error: {exc}", file=sys.stderr)
        return exc.exit_code
    _print_table(findings)
    if args.write_limits is not None:
        write_limits(args.write_limits, findings, limits, args.margin)
        print(f"limits written to {args.write_limits}")
    return 0


def probe(args: argparse.Namespace) -> tuple[list[Finding], Limits]:
    try:
        step = parse_size(args.step)
    except SizeError as exc:
        raise UsageError(f"--step: {exc}") from None
    if not 0 <= args.margin <= 5:
        raise UsageError(f"--margin {args.margin}: use a fraction between 0 and 5")
    limits = load_limits(args.limits)
    pipeline = DEFAULT_PIPELINE
    manifest = _manifest(args.run_dir)
    pipeline_file = args.pipeline or (Path(manifest.pipeline_file) if manifest.pipeline_file else None)
    if pipeline_file is not None:
        pipeline, limits = load_pipeline(pipeline_file, limits, limits_file_wins=args.limits is not None)
    names = [spec.name for spec in pipeline]
    for name in args.stage or []:
        if name not in names:
            raise UsageError(f"--stage {name}: unknown stage; stages are {', '.join(names)}")
    chosen = [spec for spec in pipeline if not args.stage or spec.name in args.stage]
    findings = []
    for spec in chosen:
        if not (args.run_dir / artifact_path(spec.name)).exists():
            print(f"[{spec.name}] no finished artifact in {args.run_dir}: skipped", flush=True)
            continue
        findings.append(probe_stage(args.run_dir, spec, pipeline, manifest, limits, step))
    if not findings:
        raise UsageError(f"{args.run_dir}: no finished stage to probe; run the pipeline first")
    return findings, limits


def _manifest(run_dir: Path) -> RunManifest:
    from aishorts.ipc.files import ArtifactError, read_struct

    try:
        return read_struct(run_dir / "run.json", RunManifest)
    except ArtifactError as exc:
        raise UsageError(f"--run-dir {run_dir} is not a run made by aishorts-runner: {exc}") from None


def probe_stage(run_dir: Path, spec: StageSpec, pipeline, manifest: RunManifest, limits: Limits, step: int) -> Finding:
    configured = limits.for_stage(spec.name).ceiling
    with tempfile.TemporaryDirectory(prefix=f"probe-{spec.name}-") as scratch:
        scratch_dir = Path(scratch) / "run"
        _link_inputs(run_dir, scratch_dir, spec, tuple(pipeline))
        attempts = 0

        def attempt(ceiling: int) -> tuple[bool, int]:
            nonlocal attempts
            attempts += 1
            opts = RunOptions(run_dir=scratch_dir, pipeline=pipeline, params=manifest.params,
                              limits=limits.with_override(spec.name, ceiling), only=spec.name)
            report = run_pipeline(opts, ignore, threading.Event())
            stage = report.stages[-1]
            if stage.status not in ("done", "oom"):
                raise RunnerError(f"probing {spec.name} at {format_size(ceiling)}: {stage.message}")
            print(f"[{spec.name}] {format_size(ceiling)}: {stage.status} (peak {format_size(stage.peak_rss_bytes)})", flush=True)
            return stage.status == "done", stage.peak_rss_bytes

        hi = max(configured, step)
        ok, peak = attempt(hi)
        while not ok:
            if hi >= 64 * 1024 * MiB:
                raise RunnerError(f"{spec.name} did not finish even with {format_size(hi)}")
            hi *= 2
            ok, peak = attempt(hi)
        lo = 0
        passing_peak = peak
        # The answer lies near the measured peak: bracket it there, then bisect.
        bracket = [_round_up(peak * 11 // 10, step), _round_up(peak, step) - step]
        while (candidate := _next_candidate(lo, hi, step, bracket)) is not None:
            ok, attempt_peak = attempt(candidate)
            if ok:
                hi, passing_peak = candidate, attempt_peak
            else:
                lo = candidate
    return Finding(spec.name, hi, lo or None, passing_peak, configured, attempts)


def _next_candidate(lo: int, hi: int, step: int, bracket: list[int]) -> int | None:
    """The next ceiling to try between a failing `lo` and a passing `hi`, or None when they are a step apart."""
    while bracket:
        candidate = bracket.pop(0)
        if lo < candidate < hi:
            return candidate
    mid = _round_up((lo + hi) // 2, step)
    return mid if hi - lo > step and lo < mid < hi else None


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _link_inputs(run_dir: Path, scratch_dir: Path, spec: StageSpec, pipeline: tuple[StageSpec, ...]) -> None:
    """Every stage folder before `spec`, hard-linked where the filesystem allows (read only), else copied.

    Not only its direct inputs: an input artifact can name payloads of earlier stages (the timeline names
    the narration and the b-roll files the render stage reads).
    """
    scratch_dir.mkdir(parents=True)
    for name in _upstream(spec, pipeline):
        source = run_dir / name
        if not source.is_dir():
            continue
        try:
            shutil.copytree(source, scratch_dir / name, copy_function=os.link)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(scratch_dir / name)
            shutil.copytree(source, scratch_dir / name)


def _upstream(spec: StageSpec, pipeline: tuple[StageSpec, ...]) -> list[str]:
    names = [s.name for s in pipeline]
    return names[: names.index(spec.name)] if spec.name in names else list(spec.inputs)


def _print_table(findings: list[Finding]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="smallest ceiling each stage finishes with")
    for column in ("stage", "passes at", "fails at", "peak", "limits file", "attempts"):
        table.add_column(column)
    for f in findings:
        table.add_row(f.stage, format_size(f.passing), format_size(f.failing), format_size(f.peak),
                      format_size(f.configured), str(f.attempts))
    Console(highlight=False).print(table)
    for f in findings:
        if f.failing:
            print(f"{f.stage}: reproduce its OOM with --limit {f.stage}={f.failing // MiB}M;"
                  f" it finishes with --limit {f.stage}={f.passing // MiB}M")


def write_limits(path: Path, findings: list[Finding], limits: Limits, margin: float) -> None:
    for finding in findings:
        # A peak shorter than a watchdog poll can pass under a lower ceiling; the margin goes on
        # whichever is larger, so the written ceiling also covers what the stage really touched.
        need = max(finding.passing, finding.peak)
        ceiling = _round_up(int(need * (1 + margin)), MiB)
        limits = limits.with_stage(finding.stage, StageLimit(ceiling=ceiling, minimum=finding.passing,
                                                             thresholds=limits.for_stage(finding.stage).thresholds))
    save_limits(path, limits, "Written by `aishorts-runner probe`: the smallest passing ceiling of each stage, plus a margin.")
