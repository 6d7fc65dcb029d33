"""Running one pipeline in one run directory: plan, resume, supervise its stages, report.

The stages form a graph (`runner.graph`, from the inputs each declares): a stage
is considered once every input it reads from this run is stamped complete. It is
skipped when its artifact is complete and its inputs' hash is unchanged
(resume); otherwise it starts, in a thread of its own, through the run's
executor (its own process under the watchdog; `aishorts.inprocess` supplies the
single-process baseline of `--isolation none`) once the memory budget admits its
ceiling, as many at once as the run has cores; then its artifact is validated
and stamped complete. The report is rewritten after every stage. The first
stage that does not finish stops new starts; stages already running end on
their own, and everything written stays. Deciding what the user asked for is
`runner.cli`'s job; watching a process is `runner.watchdog`'s.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal, Protocol

import msgspec

from aishorts.ipc.artifacts import ARTIFACT_TYPES, payload_paths
from aishorts.ipc.files import (
    ArtifactError, read_regular, read_struct, resolve_in_run, sha256_bytes, sha256_file, write_struct,
)
from aishorts.ipc.messages import ProgressEvent, StageCall
from aishorts.ipc.params import PipelineParams
from aishorts.ipc.pipeline import StageSpec, artifact_path, module_name_before
from aishorts.ipc.sizes import MiB, format_size
from aishorts.runner.budget import MemoryBudget
from aishorts.runner.deliverables import restore_deliverables
from aishorts.runner.errors import UsageError
from aishorts.runner.events import (
    Listener, Observer, Sampled, StageFinished, StageNews, StageProgress, StageSample, StageStarted, StageWaiting,
    StageWarning, Warned,
)
from aishorts.runner.graph import StageGraph
from aishorts.runner.limits import Limits
from aishorts.runner.meter import MemoryMeter
from aishorts.runner.rundir import RunManifest, claimed
from aishorts.runner.report import RunReport, StageReport, Suggestion, downsample, write_report
from aishorts.runner.status import EXIT_CODES, finished
from aishorts.runner.watchdog import ProcessOutcome, WatchSettings, supervise

STDERR_TAIL_LINES = 15
Isolation = Literal["process", "none"]


class StageExecutor(Protocol):
    """Runs one stage call to its end and says how it ended; the run loop does the rest."""

    def __call__(self, call: StageCall, settings: WatchSettings, log_path: Path, cancel: threading.Event,
                 tell: Listener) -> ProcessOutcome: ...


def execute_in_child(call: StageCall, settings: WatchSettings, log_path: Path, cancel: threading.Event,
                     tell: Listener) -> ProcessOutcome:
    """The stage as a fresh interpreter under the watchdog: the product's way to run every stage."""
    read_fd, write_fd = os.pipe()
    call.progress_fd = write_fd
    call_path = log_path.parent / "call.json"
    write_struct(call_path, call)
    return supervise(
        [sys.executable, "-m", call.module, str(call_path)], settings, log_path, cancel,
        on_sample=lambda rss: tell(Sampled(rss)), on_event=tell, on_warning=lambda message: tell(Warned(message)),
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, progress_pipe=(read_fd, write_fd),
    )


class Stamp(msgspec.Struct):
    """Written by the supervisor after a stage's artifact validated: the proof it is complete.

    It covers the artifact and every payload file the artifact names, so a resume
    never trusts a stage whose WAV, video or stills were changed or removed since.
    """

    inputs_hash: str
    artifact_sha256: str
    payloads: dict[str, str] = {}
    """Payload path (relative to the run directory) -> its sha256."""


def payload_digests(run_dir: Path, artifact: msgspec.Struct) -> dict[str, str]:
    """sha256 of each payload the artifact names; ArtifactError for one that escapes the run, OSError if missing."""
    return {relative: sha256_file(resolve_in_run(run_dir, relative)) for relative in payload_paths(artifact)}


@dataclass
class RunOptions:
    run_dir: Path
    pipeline: tuple[StageSpec, ...]
    params: PipelineParams
    limits: Limits
    max_ram: int | None = None
    isolation: Isolation = "process"
    executor: StageExecutor = execute_in_child
    start_from: str | None = None
    only: str | None = None
    device: str = "auto"
    threads: int = 0
    """CPU threads each stage may use; 0 leaves it to the stage (a single run has the machine to itself)."""
    resume_args: list[str] = field(default_factory=list)
    """Options besides --run-dir, --max-ram and --limit that a rerun must repeat (e.g. --limits FILE)."""
    label: str = ""
    command: list[str] = field(default_factory=lambda: ["aishorts-runner"])
    """How the user started the runner, so a suggested command runs as typed (e.g. .venv/bin/aishorts-runner)."""
    manifest: RunManifest | None = None
    """Written to `run.json` once the run directory is claimed; None leaves it as it is."""
    fresh_dir: bool = False
    """The run directory is a default name: created anew (another name if taken), removed if the run is refused."""

    @cached_property
    def ceilings(self) -> dict[str, int]:
        """Every stage's effective ceiling; raises UsageError (before anything starts) if one cannot fit."""
        return {
            spec.name: self.limits.ceiling(spec.name, self.max_ram)
            for spec in self.pipeline
            if self.only is None or spec.name == self.only
        }


def stage_params(spec: StageSpec, params: PipelineParams) -> bytes:
    if spec.params is not None:
        return bytes(spec.params)
    own = params.for_stage(spec.name)
    return msgspec.json.encode(own) if own is not None else b"{}"


def inputs_hash(run_dir: Path, spec: StageSpec, params: bytes) -> str:
    """Hash of what a stage's output depends on: its code's name, its parameters, its input artifacts."""
    # the module as named before the packages moved under `aishorts`: a run stamped then resumes as it was
    parts = [spec.name.encode(), module_name_before(spec.module).encode(), params]
    for name in spec.inputs:
        path = run_dir / artifact_path(name)
        if not path.exists():
            raise UsageError(
                f"stage {spec.name} needs the artifact of stage {name} ({path}), which is missing;"
                f" run the pipeline up to {name} first"
            )
        try:
            parts.append(read_regular(path))
        except OSError as exc:
            raise UsageError(f"stage {spec.name} cannot start: its input {path}: {exc.strerror}") from None
    return sha256_bytes(*parts)


def check_inputs(run_dir: Path, spec: StageSpec, kinds: dict[str, str]) -> None:
    """Refuse to start a stage on an input artifact that is corrupt, truncated, of another version or unsafe."""
    for name in spec.inputs:
        try:
            read_struct(run_dir / artifact_path(name), ARTIFACT_TYPES[kinds[name]])
        except ArtifactError as exc:
            raise UsageError(f"stage {spec.name} cannot start: {exc}") from None


def is_complete(run_dir: Path, spec: StageSpec, expected_hash: str) -> bool:
    stamp_path = run_dir / spec.name / "stamp.json"
    artifact = run_dir / artifact_path(spec.name)
    try:
        stamp = read_struct(stamp_path, Stamp)
        if stamp.inputs_hash != expected_hash or stamp.artifact_sha256 != sha256_file(artifact):
            return False
        decoded = read_struct(artifact, ARTIFACT_TYPES[spec.output])
        return stamp.payloads == payload_digests(run_dir, decoded)
    except (ArtifactError, OSError):
        return False


def run_pipeline(
    opts: RunOptions,
    observer: Observer,
    cancel: threading.Event,
    budget: MemoryBudget | None = None,
    batch_meter: MemoryMeter | None = None,
) -> RunReport:
    ceilings = opts.ceilings
    with claimed(opts.run_dir, fresh=opts.fresh_dir) as run_dir:
        opts.run_dir = run_dir  # a fresh directory may have been given another name
        if opts.manifest is not None:
            write_struct(opts.run_dir / "run.json", opts.manifest)
        return _run_claimed(opts, ceilings, observer, cancel, budget or MemoryBudget(opts.limits.stage_room(opts.max_ram)),
                            batch_meter)


def _run_claimed(opts: RunOptions, ceilings: dict[str, int], observer: Observer, cancel: threading.Event,
                 budget: MemoryBudget, batch_meter: MemoryMeter | None) -> RunReport:
    """Start each stage once its inputs are stamped complete, as many at once as the cores and the budget allow."""
    run_dir = opts.run_dir
    report = RunReport(run_dir=str(run_dir), status="running", isolation=opts.isolation, max_ram_bytes=opts.max_ram)
    plan = [spec for spec in opts.pipeline if opts.only is None or spec.name == opts.only]
    forced = forced_stages(opts)
    graph = StageGraph(plan)
    ended: queue.Queue[StageReport] = queue.Queue()
    reports: dict[str, StageReport] = {}
    slots = stage_slots(opts)
    first_stop: StageReport | None = None
    refused: UsageError | None = None
    with MemoryMeter(opts.limits.poll_s, parent=batch_meter) as meter:
        while True:
            if first_stop is None and refused is None and not cancel.is_set():
                try:
                    _start_ready(opts, graph, slots, forced, ceilings, observer, cancel, budget, meter, ended)
                except UsageError as exc:  # an input unusable mid-graph: start nothing more, let the running end
                    refused = exc
            if not graph.running and (first_stop or refused or cancel.is_set() or not graph.ready()):
                break
            stage = _next_ended(ended, cancel)
            graph.end(stage.name, finished(stage.status))
            reports[stage.name] = stage
            observer(StageFinished(label=opts.label, stage=stage.name, report=stage))
            if not finished(stage.status) and first_stop is None:
                first_stop = stage
            report.stages = [reports[spec.name] for spec in plan if spec.name in reports]
            _update_totals(report, meter)
            _save_report(run_dir, report)
        if refused is not None:
            raise refused
        _conclude(opts, report, graph, first_stop, cancel)
    _update_totals(report, meter)
    report.exit_code = EXIT_CODES[report.status]
    if report.report_error:
        report.message = f"{report.message}; {report.report_error}".lstrip("; ")
    _save_report(run_dir, report)
    return report


def _next_ended(ended: queue.Queue, cancel: threading.Event) -> StageReport:
    """The next stage report, waited for in short steps: an exception raised into this thread from outside (Ray
    cancels a running task by raising KeyboardInterrupt in its thread) arrives only while it runs Python code, and
    turns into the run's cancel, so the running stages stop cleanly and report."""
    while True:
        try:
            return ended.get(timeout=0.1)
        except queue.Empty:
            continue
        except KeyboardInterrupt:
            cancel.set()


def forced_stages(opts: RunOptions) -> set[str]:
    """Stages that run even when up to date: --only's, and --from's with every stage after it in the pipeline."""
    names = [spec.name for spec in opts.pipeline]
    if opts.only is not None:
        return {opts.only}
    from_index = names.index(opts.start_from) if opts.start_from else len(names)
    return set(names[from_index:])


def stage_slots(opts: RunOptions) -> int:
    """How many of a run's stages may run at once: one per core of its CPU share (a batch's pipelines share the cores).

    One with `--isolation none`: the old design's baseline runs its stages one after another, in this process.
    """
    if opts.isolation == "none":
        return 1
    return max(1, opts.threads or len(os.sched_getaffinity(0)))


def _start_ready(opts: RunOptions, graph: StageGraph, slots: int, forced: set[str], ceilings: dict[str, int],
                 observer: Observer, cancel: threading.Event, budget: MemoryBudget, meter: MemoryMeter,
                 ended: queue.Queue) -> None:
    """Start every ready stage there is a slot for; an up-to-date one is skipped without a process."""
    for spec in graph.ready():
        if len(graph.running) >= slots:
            return
        graph.start(spec.name)
        ready_at = round(meter.elapsed(), 3)
        try:
            prepared = _prepare_stage(opts, spec, ceilings[spec.name], spec.name in forced)
        except UsageError:
            graph.end(spec.name, finished=False)
            raise
        if isinstance(prepared, StageReport):  # up to date: the main loop ends it, which may ready others
            prepared.ready_at_s = ready_at
            ended.put(prepared)
            continue
        args = (opts, spec, prepared, ready_at, observer, cancel, budget, meter, ended)
        if opts.isolation == "none":  # in this very thread, as the old design did (its stages share this process)
            _stage_thread(*args)
            continue
        name = f"stage-{opts.label}-{spec.name}" if opts.label else f"stage-{spec.name}"
        threading.Thread(target=_stage_thread, name=name, daemon=True, args=args).start()


def _stage_thread(opts: RunOptions, spec: StageSpec, prepared: _Prepared, ready_at: float, observer: Observer,
                  cancel: threading.Event, budget: MemoryBudget, meter: MemoryMeter, ended: queue.Queue) -> None:
    """One stage from its wait for memory to its stamp; always hands a report back, whatever happens."""
    try:
        stage = _run_stage(opts, spec, prepared, observer, cancel, budget, meter)
    except Exception as exc:  # a bug here must not leave the run waiting forever for this stage
        stage = StageReport(name=spec.name, status="failed", ceiling_bytes=prepared.call.ceiling_bytes,
                            message=f"stage {spec.name}: the supervisor failed to run it: {type(exc).__name__}: {exc}")
    stage.ready_at_s = ready_at
    if stage.ended_at_s is None:  # it never got its memory, or the supervisor failed around it
        stage.ended_at_s = round(meter.elapsed(), 3)
    ended.put(stage)


def _conclude(opts: RunOptions, report: RunReport, graph: StageGraph, first_stop: StageReport | None,
              cancel: threading.Event) -> None:
    """The run's status and message from how its stages ended, naming what ran beside a stage that stopped."""
    if first_stop is not None:
        report.status, report.message = first_stop.status, first_stop.message
        report.failed_stage = first_stop.name
        if first_stop.status == "oom":
            spec = next(spec for spec in opts.pipeline if spec.name == first_stop.name)
            report.suggestion = suggestion(opts, spec.name, first_stop)
            report.rerun_command = report.suggestion.command_line(str(opts.run_dir))
        beside = [stage for stage in report.stages if stage.name != first_stop.name and _overlapped(stage, first_stop)]
        if beside:
            said = ", ".join(f"{stage.name} {_ended_as(stage.status)}" for stage in beside)
            report.message = f"{report.message}; running beside it: {said}"
    elif graph.not_started() and cancel.is_set():
        report.status, report.message = "interrupted", "interrupted before the next stage started"
    else:
        report.status = "done"


def _overlapped(stage: StageReport, other: StageReport) -> bool:
    if None in (stage.started_at_s, stage.ended_at_s, other.started_at_s, other.ended_at_s):
        return False
    return stage.started_at_s < other.ended_at_s and other.started_at_s < stage.ended_at_s


def _ended_as(status: str) -> str:
    return {"done": "finished and is kept", "interrupted": "was stopped", "oom": "ran out of memory too",
            "failed": "failed too"}.get(status, status)


def _save_report(run_dir: Path, report: RunReport) -> None:
    """Write report.json and memory.svg; a full or read-only disk must not cost the run its own outcome."""
    try:
        write_report(run_dir, report)
        report.report_error = ""
    except OSError as exc:
        report.report_error = f"report.json could not be written ({exc.strerror}: {exc.filename or run_dir})"


def _update_totals(report: RunReport, meter: MemoryMeter) -> None:
    report.peak_rss_bytes = meter.peak
    report.parent_peak_rss_bytes = meter.parent_peak
    report.wall_s = round(meter.elapsed(), 3)
    report.timeline = downsample(list(meter.samples))


@dataclass
class _Prepared:
    """A stage checked and ready to start: its call, and the inputs' hash its stamp will carry."""

    call: StageCall
    expected_hash: str
    stage_dir: Path


def _prepare_stage(opts: RunOptions, spec: StageSpec, ceiling: int, forced: bool) -> _Prepared | StageReport:
    """Its call file's contents, or a `skipped` report when its artifact is complete for unchanged inputs."""
    run_dir = opts.run_dir
    params = stage_params(spec, opts.params)
    expected_hash = inputs_hash(run_dir, spec, params)
    if not forced and is_complete(run_dir, spec, expected_hash):
        restored = restore_deliverables(run_dir, spec.name)
        return StageReport(name=spec.name, status="skipped", ceiling_bytes=ceiling,
                           message="inputs unchanged since its artifact was written"
                           + (f"; {', '.join(restored)} restored from its output" if restored else ""))
    kinds = {s.name: s.output for s in opts.pipeline}
    check_inputs(run_dir, spec, kinds)
    stage_dir = run_dir / spec.name
    if stage_dir.is_symlink():
        raise UsageError(f"{stage_dir} is a symbolic link; a stage writes only inside its run directory: remove it")
    stage_dir.mkdir(parents=True, exist_ok=True)
    (stage_dir / "stamp.json").unlink(missing_ok=True)  # a half-rerun must never look complete
    call = StageCall(
        stage=spec.name, module=spec.module, run_dir=str(run_dir.resolve()), out_dir=str(stage_dir.resolve()),
        inputs={name: artifact_path(name) for name in spec.inputs},
        input_kinds={name: kinds[name] for name in spec.inputs},
        output_kind=spec.output, params=msgspec.Raw(params), device=opts.device, threads=opts.threads,
        ceiling_bytes=ceiling, thresholds=opts.limits.for_stage(spec.name).thresholds,
    )
    return _Prepared(call, expected_hash, stage_dir)


def _run_stage(
    opts: RunOptions, spec: StageSpec, prepared: _Prepared, observer: Observer,
    cancel: threading.Event, budget: MemoryBudget, meter: MemoryMeter,
) -> StageReport:
    run_dir, call, stage_dir = opts.run_dir, prepared.call, prepared.stage_dir
    ceiling = call.ceiling_bytes
    report = StageReport(name=spec.name, status="running", ceiling_bytes=ceiling, log=f"{spec.name}/stage.log")

    def on_news(news: StageNews) -> None:
        match news:
            case Sampled(rss=rss):
                meter.set(spec.name, rss)
                observer(StageSample(label=opts.label, stage=spec.name, rss=rss))
            case Warned(message=message):
                report.warnings.append(message)
                observer(StageWarning(label=opts.label, stage=spec.name, message=message))
            case ProgressEvent():
                _record_progress(report, news)
                observer(StageProgress(label=opts.label, stage=spec.name, event=news))

    waiting = StageWaiting(label=opts.label, stage=spec.name, ceiling=ceiling)
    with budget.reserve(ceiling, cancel, lambda: observer(waiting)) as waited:
        report.waited_for_budget_s = round(waited, 3)
        if cancel.is_set():
            report.status, report.message = "interrupted", "interrupted while waiting for memory budget"
            return report
        report.started_at_s = round(meter.elapsed(), 3)
        observer(StageStarted(label=opts.label, stage=spec.name, ceiling=ceiling))
        settings = WatchSettings(ceiling=ceiling, poll_s=opts.limits.poll_s,
                                 warn_fraction=opts.limits.warn_fraction, kill_grace_s=opts.limits.kill_grace_s)
        try:
            outcome = opts.executor(call, settings, stage_dir / "stage.log", cancel, on_news)
        finally:
            meter.clear(spec.name)
            report.ended_at_s = round(meter.elapsed(), 3)  # the tree is gone; its memory goes back to the budget
    report.run_rss_after_bytes = meter.sample()
    _fill_from_outcome(report, outcome)
    _finish(report, run_dir, spec, prepared.expected_hash, outcome)
    return report


def _record_progress(report: StageReport, event: ProgressEvent) -> None:
    """What the report keeps of a stage's own event: the time of each named phase, and the notes for the user."""
    if event.kind == "phase" and event.phase_s is not None:
        report.phases[event.message] = round(report.phases.get(event.message, 0.0) + event.phase_s, 3)
    if event.kind == "note":
        report.notes.append(event.message)


def _fill_from_outcome(report: StageReport, outcome: ProcessOutcome) -> None:
    report.status = outcome.status
    report.exit_code = outcome.exit_code
    report.signal = outcome.signal
    report.peak_rss_bytes = outcome.peak
    report.sampled_peak_rss_bytes = outcome.sampled_peak
    report.ru_maxrss_bytes = outcome.ru_maxrss
    report.wall_s = round(outcome.wall_s, 3)
    report.cpu_s = round(outcome.cpu_s, 3)
    report.crossed_ceiling_at_s = outcome.crossed_at
    report.gone_after_crossing_s = None if outcome.gone_after_crossing_s is None else round(outcome.gone_after_crossing_s, 4)
    report.killed_by_os = outcome.killed_by_os
    report.crossed_ceiling_rss_bytes = outcome.crossed_rss
    report.survivor_pids = list(outcome.survivors)
    report.timeline = downsample(outcome.samples)


def _finish(report: StageReport, run_dir: Path, spec: StageSpec, expected_hash: str, outcome: ProcessOutcome) -> None:
    if report.status == "done":
        artifact = run_dir / artifact_path(spec.name)
        try:
            payloads = payload_digests(run_dir, read_struct(artifact, ARTIFACT_TYPES[spec.output]))
        except ArtifactError as exc:
            report.status, report.message = "failed", f"stage {spec.name} finished but its artifact is unusable: {exc}"
            return
        except OSError as exc:
            report.status = "failed"
            report.message = f"stage {spec.name} finished but a payload it names is unreadable: {exc.filename} ({exc.strerror})"
            return
        write_struct(run_dir / spec.name / "stamp.json", Stamp(expected_hash, sha256_file(artifact), payloads))
        report.message = ""
    elif report.status == "oom" and report.killed_by_os:
        report.message = (
            f"stage {spec.name} was killed by SIGKILL that aishorts-runner did not send, most likely by the"
            f" operating system for lack of memory (peak seen {format_size(report.peak_rss_bytes)}, ceiling"
            f" {format_size(report.ceiling_bytes)}); close other programs or lower --max-ram and --jobs"
        )
    elif report.status == "oom":
        over = report.peak_rss_bytes - report.ceiling_bytes
        report.message = (
            f"stage {spec.name} crossed its memory ceiling: peak {format_size(report.peak_rss_bytes)},"
            f" ceiling {format_size(report.ceiling_bytes)} ({format_size(max(over, 0))} over); it was stopped"
        )
    elif report.status == "interrupted":
        report.message = f"stage {spec.name} interrupted; finished artifacts are kept"
    else:
        how = f"exit code {report.exit_code}" if report.signal is None else f"signal {report.signal}"
        report.message = f"stage {spec.name} failed ({how}): {_failure_reason(outcome, run_dir, report.log)}".rstrip()


def _failure_reason(outcome: ProcessOutcome, run_dir: Path, log: str) -> str:
    """What the stage said before it exited; only a stage that died without saying leaves its log's tail to read."""
    if outcome.failure_at:
        return f"{outcome.message} (raised at {outcome.failure_at}; the traceback is in {log})"
    return outcome.message or _log_tail(run_dir / log)


def _log_tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    try:
        text = read_regular(path).decode("utf-8", errors="replace")
    except OSError:
        return ""
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(tail)


def suggested_ceiling(stage: StageReport, usual: int | None) -> int:
    """A ceiling that should pass the first time, rounded up to 100 MiB.

    The stage's need past the ceiling it was stopped at is unknown, so take the
    larger of its usual ceiling (limits.toml's, measured with a margin over its
    heaviest known run) and 1.5 times the peak it had reached. `aishorts-runner
    probe` finds the real need when even this is not enough.
    """
    step = 100 * MiB
    need = max(usual or 0, stage.peak_rss_bytes * 3 // 2)
    return -(-need // step) * step


def suggestion(opts: RunOptions, stage_name: str, stage: StageReport) -> Suggestion:
    """How to resume this run: with more memory for the stage, unless the OS killed it (then as it was)."""
    limits = {name: limit.ceiling for name, limit in opts.limits.stages.items() if limit.overridden}
    max_ram = opts.max_ram
    if not stage.killed_by_os:
        limits[stage_name] = suggested_ceiling(stage, opts.limits.for_stage(stage_name).usual_ceiling)
        if max_ram is not None:
            max_ram = max(max_ram, opts.limits.max_ram_for(limits[stage_name]))
    return Suggestion(stage=stage_name, more_memory=not stage.killed_by_os, limits=limits, max_ram=max_ram,
                      command=list(opts.command), resume_args=list(opts.resume_args))
