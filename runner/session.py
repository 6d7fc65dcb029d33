"""From parsed arguments to finished runs: options, inputs, signals, display, exit code.

Validates the user's input before anything starts (exit 2 on bad input),
builds each run's `RunOptions`, runs one pipeline or a batch, and prints the
summary. Ctrl-C and SIGTERM stop every running stage tree and still write the
reports.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

from ipc.files import ArtifactError, read_struct, write_struct
from ipc.params import CATEGORIES, PipelineParams
from ipc.pipeline import DEFAULT_PIPELINE, StageSpec
from ipc.sizes import SizeError, parse_size
from ipc.text import MAX_TOPIC_CHARS, TextError, tidy_topic
from runner.errors import UsageError
from runner.limits import Limits, load_limits, parse_limit_override
from runner.pipeline_file import load_pipeline
from runner.report import RunReport, report_json, summary_table
from runner.run import RunManifest, RunOptions, run_pipeline


def run_from_args(args: argparse.Namespace) -> int:
    limits, pipeline = _limits_and_pipeline(args)
    max_ram = _max_ram(args.max_ram)
    if args.topics_file is not None:
        from runner.batch import run_batch

        return run_batch(args, limits, pipeline, max_ram)
    if args.jobs != 1:
        raise UsageError("--jobs needs --topics-file (one topic a line)")
    opts = run_options(args, limits, pipeline, max_ram, run_dir=args.run_dir, topic=args.topic)
    with interrupt_handling() as cancel, display_for(args) as observer:
        report = run_pipeline(opts, observer, cancel)
    print_outcome(args, report)
    return report.exit_code or 0


def _limits_and_pipeline(args: argparse.Namespace) -> tuple[Limits, tuple[StageSpec, ...]]:
    limits = load_limits(args.limits)
    pipeline = DEFAULT_PIPELINE
    if args.pipeline is not None:
        pipeline, limits = load_pipeline(args.pipeline, limits, limits_file_wins=args.limits is not None)
    names = tuple(spec.name for spec in pipeline)
    for text in args.limit:
        name, size = parse_limit_override(text, names)
        limits = limits.with_override(name, size)
    for option, value in (("--from", args.start_from), ("--only", args.only)):
        if value is not None and value not in names:
            raise UsageError(f"{option} {value}: unknown stage; stages are {', '.join(names)}")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be 1 or more, not {args.jobs}")
    return limits, pipeline


def _max_ram(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_size(text)
    except SizeError as exc:
        raise UsageError(f"--max-ram: {exc}") from None


def run_options(
    args: argparse.Namespace, limits: Limits, pipeline: tuple[StageSpec, ...], max_ram: int | None,
    run_dir: Path | None, topic: str | None, label: str = "",
) -> RunOptions:
    run_dir = run_dir or default_run_dir(topic or args.category or "short")
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--run-dir {run_dir} exists and is not a folder")
    manifest_path = run_dir / "run.json"
    saved = _saved_params(manifest_path)
    params = build_params(args, saved, topic)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_struct(manifest_path, RunManifest(params=params, pipeline_file=str(args.pipeline) if args.pipeline else None))
    resume_args: list[str] = []
    for option, value in (("--limits", args.limits), ("--pipeline", args.pipeline)):
        if value is not None:
            resume_args += [option, str(value)]
    if args.isolation != "process":
        resume_args += ["--isolation", args.isolation]
    return RunOptions(
        run_dir=run_dir, pipeline=pipeline, params=params, limits=limits, max_ram=max_ram,
        isolation=args.isolation, start_from=args.start_from, only=args.only, device=args.device,
        resume_args=resume_args, label=label,
    )


def default_run_dir(subject: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", subject.lower()).strip("-")[:40] or "short"
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"


def _saved_params(path: Path) -> PipelineParams | None:
    if not path.exists():
        return None
    try:
        return read_struct(path, RunManifest).params
    except ArtifactError as exc:
        raise UsageError(f"cannot resume: {exc}") from None


def build_params(args: argparse.Namespace, saved: PipelineParams | None, topic: str | None) -> PipelineParams:
    """The run's parameters: saved ones when resuming, with every option given now on top."""
    params = msgspec.json.decode(msgspec.json.encode(saved or PipelineParams()), type=PipelineParams)
    script_text = read_script_file(args.script) if args.script is not None else None
    if topic is not None:
        params.theme.topic, params.theme.category = validate_topic(topic), None
    if args.category is not None:
        params.theme.topic, params.theme.category = None, args.category
    if script_text is not None:
        params.script.script_text = script_text
        if params.theme.topic is None and params.theme.category is None:
            params.theme.topic = _topic_from_script(script_text)
    if saved is None and params.theme.topic is None and params.theme.category is None:
        params.theme.category = random.choice(CATEGORIES)
    if saved is None or args.seed is not None:
        seed = args.seed if args.seed is not None else random.randrange(2**31)
        params.theme.llm.seed = params.script.llm.seed = seed
    _apply_options(args, params)
    return params


def _apply_options(args: argparse.Namespace, params: PipelineParams) -> None:
    setters = (
        (args.platform, lambda v: _set_platform(params, v)),
        (args.language, lambda v: (setattr(params.script, "language", v), setattr(params.tts, "language", v))),
        (args.voice, lambda v: setattr(params.tts, "voice", v)),
        (args.speed, lambda v: setattr(params.tts, "speed", _speed(v))),
        (args.llm, lambda v: (setattr(params.script.llm, "backend", v), setattr(params.theme.llm, "backend", v))),
        (args.llm_url, lambda v: (setattr(params.script.llm, "base_url", v), setattr(params.theme.llm, "base_url", v))),
        (args.llm_model, lambda v: (setattr(params.script.llm, "model", v), setattr(params.theme.llm, "model", v))),
        (args.llm_key_env, lambda v: (setattr(params.script.llm, "api_key_env", v), setattr(params.theme.llm, "api_key_env", v))),
        (args.tts, lambda v: setattr(params.tts, "backend", v)),
        (args.broll, lambda v: setattr(params.broll, "source", v)),
        (args.broll_dir, lambda v: setattr(params.broll, "local_dir", str(_existing_dir(v)))),
        (args.broll_url, lambda v: setattr(params.broll, "urls", list(v))),
        (args.scorer, lambda v: setattr(params.match, "scorer", v)),
        (args.clip_model, lambda v: setattr(params.match, "clip_model", v)),
        (args.renderer, lambda v: setattr(params.render, "renderer", v)),
        (args.encoder_preset, lambda v: setattr(params.render, "preset", v)),
        (args.no_music, lambda v: setattr(params.timeline, "music", not v)),
    )
    for value, setter in setters:
        if value is not None:
            setter(value)
    if args.broll_dir is not None and args.broll is None:
        params.broll.source = "local"
    if args.broll_url and args.broll is None:
        params.broll.source = "urls"


def _set_platform(params: PipelineParams, platform: str) -> None:
    params.script.platform = platform
    params.timeline.platform = platform


def _speed(value: float) -> float:
    if not 0.5 <= value <= 2.0:
        raise UsageError(f"--speed {value}: use a value between 0.5 and 2.0")
    return value


def _existing_dir(path: Path) -> Path:
    if not path.is_dir():
        raise UsageError(f"--broll-dir {path}: no such folder")
    return path.resolve()


def validate_topic(topic: str) -> str:
    try:
        return tidy_topic(topic)
    except TextError as exc:
        raise UsageError(f"--topic: {exc}") from None


def read_script_file(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"--script {path}: file not found") from None
    except IsADirectoryError:
        raise UsageError(f"--script {path}: is a folder, not a text file") from None
    except OSError as exc:
        raise UsageError(f"--script {path}: cannot read ({exc.strerror})") from None
    if b"\x00" in data:
        raise UsageError(f"--script {path}: looks binary; give a plain UTF-8 text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"--script {path}: not UTF-8 text") from None
    if not text.strip():
        raise UsageError(f"--script {path}: file is empty")
    return text.strip()


def _topic_from_script(text: str) -> str:
    first = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    return " ".join(first.split())[:MAX_TOPIC_CHARS]


@contextlib.contextmanager
def interrupt_handling() -> Iterator[threading.Event]:
    """Turn Ctrl-C and SIGTERM into a cancel event that every watchdog honours; a second Ctrl-C aborts."""
    cancel = threading.Event()

    def handler(signum, frame):
        if cancel.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        cancel.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield cancel
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def display_for(args: argparse.Namespace):
    from runner.display import LiveDisplay, PlainDisplay

    if sys.stdout.isatty() and not args.json:
        with LiveDisplay() as live:
            yield live
    else:
        yield PlainDisplay(sys.stderr if args.json else sys.stdout)


def print_outcome(args: argparse.Namespace, report: RunReport) -> None:
    from rich.console import Console

    stream = sys.stderr if args.json else sys.stdout
    Console(file=stream, highlight=False).print(summary_table(report))
    if report.status == "done":
        video = Path(report.run_dir) / "final.mp4"
        print(f"done: {video if video.exists() else report.run_dir}", file=stream)
    else:
        print(f"{report.status}: {report.message}", file=stream)
        if report.rerun_command:
            print(f"to rerun it with more memory:\n  {report.rerun_command}", file=stream)
        print(f"report: {Path(report.run_dir) / 'report.json'}", file=stream)
    stream.flush()
    if args.json:
        sys.stdout.buffer.write(report_json(report))
        sys.stdout.flush()
