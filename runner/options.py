"""What the user asked for, checked and turned into `RunOptions`, before anything starts.

Responsible for: the limits and pipeline a run uses, `--max-ram`, the run's
parameters (saved ones when resuming, with the options given now on top), the
user's topic and script file, and default run directories. Every problem here
is a `UsageError` (exit 2). It neither runs nor displays anything: running is
`runner.run`'s job, showing it `runner.console`'s.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import random
import re
import subprocess
import sys
from pathlib import Path

import msgspec

from ipc.files import ArtifactError, read_struct
from ipc.params import CATEGORIES, LlmParams, PipelineParams
from ipc.pipeline import DEFAULT_PIPELINE, STAGE_NAMES, StageSpec
from ipc.sizes import SizeError, parse_size
from ipc.text import MAX_TOPIC_CHARS, TextError, looks_binary, tidy_topic
from runner.errors import UsageError
from runner.limits import Limits, load_limits, parse_limit_override
from runner.pipeline_file import load_pipeline
from runner.rundir import RunManifest, default_run_dir
from runner.run import RunOptions, StageExecutor, execute_in_child
from runner.userfiles import read_text


def limits_and_pipeline(args: argparse.Namespace) -> tuple[Limits, tuple[StageSpec, ...]]:
    """The stages to run and their limits: the limits file, the pipeline file's ceilings, then each --limit."""
    limits = load_limits(args.limits)
    pipeline = DEFAULT_PIPELINE
    if args.pipeline is not None:
        pipeline, limits = load_pipeline(args.pipeline, limits, limits_file_wins=args.limits is not None)
    names = tuple(spec.name for spec in pipeline)
    if args.limits is not None:  # a developer pipeline may share a limits file with the product's stages
        limits.refuse_unknown_stages(tuple(dict.fromkeys(names + STAGE_NAMES)))
    for text in args.limit:
        name, size = parse_limit_override(text, names)
        limits = limits.with_override(name, size)
    for option, value in (("--from", args.start_from), ("--only", args.only)):
        if value is not None and value not in names:
            raise UsageError(f"{option} {value}: unknown stage; stages are {', '.join(names)}")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be 1 or more, not {args.jobs}")
    return limits, pipeline


def max_ram_from(text: str | None) -> int | None:
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
    """Everything one run needs, checked; nothing is written until the run claims its directory."""
    fresh = run_dir is None
    run_dir = run_dir or default_run_dir(topic or args.category or "short")
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--run-dir {run_dir} exists and is not a folder")
    saved = None if fresh else _saved_params(run_dir / "run.json")
    params = build_params(args, saved, topic)
    resume_args: list[str] = []
    for option, value in (("--limits", args.limits), ("--pipeline", args.pipeline),
                          ("--llm-url", args.llm_url), ("--llm-key-env", args.llm_key_env)):
        if value is not None:
            resume_args += [option, str(value)]
    if args.isolation != "process":
        resume_args += ["--isolation", args.isolation]
    return RunOptions(
        run_dir=run_dir, pipeline=pipeline, params=params, limits=limits, max_ram=max_ram,
        isolation=args.isolation, executor=executor_for(args.isolation), start_from=args.start_from,
        only=args.only, device=args.device, resume_args=resume_args, label=label,
        command=invoked_as(), manifest=RunManifest(params=params, pipeline_file=str(args.pipeline) if args.pipeline else None),
        fresh_dir=fresh,
    )


def invoked_as(argv0: str | None = None) -> list[str]:
    """The runner's own command as the user typed it: `.venv/bin/aishorts-runner` stays that, not a bare name."""
    argv0 = argv0 if argv0 is not None else sys.argv[0]
    name = Path(argv0).name
    if name in ("cli.py", "__main__.py", "-c", "") or name.startswith("python"):
        return [sys.executable, "-m", "runner.cli"]
    return [argv0]


def executor_for(isolation: str) -> StageExecutor:
    if isolation == "process":
        return execute_in_child
    # The single-process baseline imports stage code by design, so it lives in tools/ and is
    # loaded by name only when asked for; the supervisor's own modules never import a stage.
    return importlib.import_module("tools.inprocess").execute_in_process


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
    if saved is not None:
        _refuse_saved_endpoints(args, saved)
    if saved is None or args.seed is not None:
        seed = args.seed if args.seed is not None else random.randrange(2**31)
        params.theme.llm.seed = params.script.llm.seed = seed
    _apply_options(args, params)
    return params


def _refuse_saved_endpoints(args: argparse.Namespace, saved: PipelineParams) -> None:
    """A run directory never grants access: an endpoint or key variable saved in run.json is used only if given again.

    Otherwise anyone who can write a run.json could send the user's secret to a host of their choosing on resume.
    """
    default = LlmParams()
    for llm in (saved.theme.llm, saved.script.llm):
        for option, given, stored, usual in (
            ("--llm-url", args.llm_url, llm.base_url, default.base_url),
            ("--llm-key-env", args.llm_key_env, llm.api_key_env, default.api_key_env),
        ):
            if stored != usual and given != stored:
                raise UsageError(
                    f"this run directory's run.json names {option} {stored}; a saved endpoint or key variable is"
                    f" never used on its own: give {option} {stored} again to resume with it, or {option} with"
                    " the value you want"
                )


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
        (getattr(args, "source", None), lambda v: setattr(params.script, "sources", [_source(s) for s in v])),
        (getattr(args, "wiki_url", None), lambda v: setattr(params.script, "wiki_url", _wiki_url(v))),
    )
    for value, setter in setters:
        if value is not None:
            setter(value)
    if args.broll_dir is not None and args.broll is None:
        params.broll.source = "local"
    if args.broll_url and args.broll is None:
        params.broll.source = "urls"
    if args.llm_url is not None and args.llm is None:  # an endpoint the user named comes first
        params.script.llm.backend = params.theme.llm.backend = "openai"
    if args.voice is not None and params.tts.backend == "onnx":
        check_voice(args.voice)


VOICE_NAME = re.compile(r"[a-z]{2}_[a-z0-9]+")
VOICE_CHECK_TIMEOUT_S = 60.0


def check_voice(name: str) -> None:
    """UsageError unless the onnx narrator has voice `name`: asked of `python -m stages.voices check` in a child
    process (the voice tables are the stages' business), so a wrong --voice fails now, not after the script."""
    if not VOICE_NAME.fullmatch(name):
        raise UsageError(f"--voice {name!r} is not a Kokoro voice name (like af_heart); `--voice list` shows them")
    problem = _voice_problem(name)
    if problem:
        raise UsageError(f"--voice {name}: {problem}")


@functools.lru_cache(maxsize=64)
def _voice_problem(name: str) -> str:
    """Why the narrator cannot use `name` ("" when it can); asked once per name, however many batch rows name it."""
    command = [sys.executable, "-m", "stages.voices", "check", name]
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=VOICE_CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return ""  # the tts stage checks again and says so there
    if done.returncode == 0:
        return ""
    return (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1].removeprefix("voices: ")


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


def _source(ref: str) -> str:
    """A --source: an http(s) URL as given, or a file that exists, by its absolute path (stages run elsewhere)."""
    if ref.startswith(("http://", "https://")):
        return ref
    if "://" in ref:
        raise UsageError(f"--source {ref}: only http:// and https:// addresses, or a file")
    path = Path(ref).expanduser()
    if not path.is_file():
        raise UsageError(f"--source {ref}: no such file (give a .txt, .md, .html, .pdf or .zim file, or a URL)")
    return str(path.resolve())


def _wiki_url(value: str) -> str:
    if value.lower() in ("off", "auto") or value.startswith(("http://", "https://")):
        return value.lower() if value.lower() in ("off", "auto") else value
    raise UsageError(f"--wiki-url {value}: give a wiki's http(s) address, auto, or off")


def validate_topic(topic: str) -> str:
    try:
        return tidy_topic(topic)
    except TextError as exc:
        raise UsageError(f"--topic: {exc}") from None


def read_script_file(path: Path) -> str:
    text = read_text(path, "--script")
    if not text.strip():
        raise UsageError(f"--script {path}: file is empty")
    if looks_binary(text):
        raise UsageError(f"--script {path}: not readable text (control characters or binary); give plain UTF-8 text")
    if not re.search(r"[^\W\d_]", text):
        raise UsageError(f"--script {path}: has no words to narrate; give the sentences to speak")
    return text.strip()


def _topic_from_script(text: str) -> str:
    first = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    return " ".join(first.split())[:MAX_TOPIC_CHARS]
