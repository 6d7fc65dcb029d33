"""What the user asked for, checked and turned into `RunOptions`, before anything starts.

Responsible for: the limits and pipeline a run uses, `--max-ram`, the run's
parameters (saved ones when resuming, with the request's options on top, each
set where its schema field says: `ipc.request`), and default run directories.
Every problem here is a `UsageError` (exit 2), or a `RequestError` naming the
request field (each front end words it its own way). It neither runs nor displays anything: running is
`runner.run`'s job, showing it `runner.console`'s.
"""

from __future__ import annotations

import argparse
import functools
import random
import re
import subprocess
import sys
from pathlib import Path

import msgspec

from aishorts.ipc.files import ArtifactError
from aishorts.ipc.languages import local_script_refusal
from aishorts.ipc.params import CATEGORIES, LlmParams, PipelineParams
from aishorts.ipc.request import RequestError, ShortRequest, field_info
from aishorts.ipc.pipeline import DEFAULT_PIPELINE, STAGE_NAMES, StageSpec
from aishorts.ipc.sizes import MiB, SizeError, parse_size
from aishorts.ipc.text import MAX_TOPIC_CHARS
from aishorts.runner.errors import UsageError
from aishorts.runner.limits import Limits, load_limits, parse_limit_override
from aishorts.runner.pipeline_file import load_pipeline
from aishorts.runner.rundir import RunManifest, default_run_dir, read_manifest
from aishorts.runner.run import RunOptions, StageExecutor, execute_in_child
from aishorts.runner.userfiles import read_text


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
    args: argparse.Namespace, request: ShortRequest, limits: Limits, pipeline: tuple[StageSpec, ...],
    max_ram: int | None, run_dir: Path | None, label: str = "", executor: StageExecutor = execute_in_child,
) -> RunOptions:
    """Everything one run needs, checked; nothing is written until the run claims its directory.

    `request` is what to make (checked against the schema); `args` holds the run-level options;
    `executor` runs each stage (`executor_for` picks it from `--isolation`).
    """
    fresh = run_dir is None
    run_dir = run_dir or default_run_dir(request.topic or request.category or "short")
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--run-dir {run_dir} exists and is not a folder")
    saved = None if fresh else _saved_params(run_dir / "run.json")
    params = build_params(request, saved)
    resume_args: list[str] = []
    for option, value in (("--limits", args.limits), ("--pipeline", args.pipeline),
                          ("--llm-url", request.llm_url), ("--llm-key-env", request.llm_key_env)):
        if value is not None:
            resume_args += [option, str(value)]
    if args.isolation != "process":
        resume_args += ["--isolation", args.isolation]
    return RunOptions(
        run_dir=run_dir, pipeline=pipeline, params=params, limits=limits, max_ram=max_ram,
        isolation=args.isolation, executor=executor, start_from=args.start_from,
        only=args.only, device=args.device, resume_args=resume_args, label=label,
        command=invoked_as(), manifest=RunManifest(params=params, pipeline_file=str(args.pipeline) if args.pipeline else None),
        fresh_dir=fresh,
    )


ENTRY_MODULE = "aishorts"
"""`python -m aishorts` is `aishorts-runner`: the command a rerun line names when the runner was started as a module."""


def invoked_as(argv0: str | None = None) -> list[str]:
    """The runner's own command as the user typed it: `.venv/bin/aishorts-runner` stays that, not a bare name."""
    argv0 = argv0 if argv0 is not None else sys.argv[0]
    name = Path(argv0).name
    if name in ("cli.py", "main.py", "__main__.py", "-c", "") or name.startswith("python"):
        return [sys.executable, "-m", ENTRY_MODULE]
    return [argv0]


def executor_for(isolation: str, executors: dict[str, StageExecutor]) -> StageExecutor:
    """The executor `--isolation` names: a child process per stage, or one the front end handed in (`none`)."""
    if isolation == "process":
        return execute_in_child
    if isolation not in executors:
        raise UsageError(f"--isolation {isolation}: not available from this entry point; run aishorts-runner"
                         f" (python -m {ENTRY_MODULE})")
    return executors[isolation]


def _saved_params(path: Path) -> PipelineParams | None:
    if not path.exists():
        return None
    try:
        return read_manifest(path).params
    except ArtifactError as exc:
        raise UsageError(f"cannot resume: {exc}") from None


def build_params(request: ShortRequest, saved: PipelineParams | None) -> PipelineParams:
    """The run's parameters: saved ones when resuming, with every option given now on top."""
    if saved is not None:
        _refuse_saved_endpoints(request, saved)  # (also forgets an older version's default endpoint)
    params = msgspec.json.decode(msgspec.json.encode(saved or PipelineParams()), type=PipelineParams)
    if request.topic is not None:
        params.theme.topic, params.theme.category = request.topic, None
    if request.category is not None:
        params.theme.topic, params.theme.category = None, request.category
    if request.script is not None and params.theme.topic is None and params.theme.category is None:
        params.theme.topic = _topic_from_script(request.script)
    if saved is None and params.theme.topic is None and params.theme.category is None:
        params.theme.category = random.choice(CATEGORIES)
    if saved is None and request.seed is None:
        params.theme.llm.seed = params.script.llm.seed = random.randrange(2**31)
    if request.broll_dir is not None:
        request = msgspec.structs.replace(request, broll_dir=str(_existing_dir(Path(request.broll_dir))))
    if request.source:
        request = msgspec.structs.replace(request, source=[_source(ref) for ref in request.source])
    if request.music_file is not None:
        request = msgspec.structs.replace(request, music_file=str(_existing_file(Path(request.music_file))))
    apply_request(request, params)
    return params


def apply_request(request: ShortRequest, params: PipelineParams) -> None:
    """Each option given, set on the stage parameters its schema field names; then the options that imply others."""
    for name, info in field_info().items():
        value = getattr(request, name)
        for target in info.extra.get("params", ()) if value is not None else ():
            *parents, leaf = target.split(".")
            setattr(functools.reduce(getattr, parents, params), leaf, value)
    if request.broll_dir is not None and request.broll is None:
        params.broll.source = "local"
    if request.broll_url and request.broll is None:
        params.broll.source = "urls"
    if request.llm_url is not None and request.llm is None:  # an endpoint the user named comes first
        params.script.llm.backend = params.theme.llm.backend = "openai"
    if request.voice is not None and params.tts.backend == "onnx":
        check_voice(request.voice)
    if params.script.script_text is None and params.script.llm.backend == "local":
        refusal = local_script_refusal(params.script.language)  # now, not after the theme stage
        if refusal:
            raise RequestError("language", refusal)


LEGACY_DEFAULT_URL = "https://openrouter.ai/api/v1"
"""What run.json held as the endpoint when none was named, before endpoints followed the key."""


def _refuse_saved_endpoints(request: ShortRequest, saved: PipelineParams) -> None:
    """A run directory never grants access: an endpoint or key variable saved in run.json is used only if given again.

    Otherwise anyone who can write a run.json could send the user's secret to a host of their choosing on resume.
    """
    default = LlmParams()
    for llm in (saved.theme.llm, saved.script.llm):
        if llm.base_url == LEGACY_DEFAULT_URL:  # run.json of an older version: no endpoint was named
            llm.base_url = default.base_url
        if llm.backend == "openai" and request.llm != "openai" and request.llm_url is None:
            raise RequestError(
                "llm", "this run directory's run.json names the online backend openai; a saved online backend is"
                " never used on its own (it would send your API key and topic out): give openai again to resume"
                " with it, or local"
            )
        for field, given, stored, usual in (
            ("llm_url", request.llm_url, llm.base_url, default.base_url),
            ("llm_key_env", request.llm_key_env, llm.api_key_env, default.api_key_env),
        ):
            if stored != usual and given != stored:
                raise RequestError(
                    field, f"this run directory's run.json names {stored}; a saved endpoint or key variable is"
                    f" never used on its own: give {stored} again to resume with it, or the value you want"
                )


VOICE_CHECK_TIMEOUT_S = 60.0


def check_voice(name: str) -> None:
    """RequestError unless the onnx narrator has voice `name`: asked of `python -m aishorts.stages.tts.voices check` in a child
    process (the voice tables are the stages' business), so a wrong voice fails now, not after the script."""
    problem = _voice_problem(name)
    if problem:
        raise RequestError("voice", problem)


@functools.lru_cache(maxsize=64)
def _voice_problem(name: str) -> str:
    """Why the narrator cannot use `name` ("" when it can); asked once per name, however many batch rows name it."""
    command = [sys.executable, "-m", "aishorts.stages.tts.voices", "check", name]
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=VOICE_CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return ""  # the tts stage checks again and says so there
    if done.returncode == 0:
        return ""
    return (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1].removeprefix("voices: ")


def _existing_dir(path: Path) -> Path:
    if not path.is_dir():
        raise RequestError("broll_dir", "no such folder")
    return path.resolve()


MUSIC_FILE_LIMIT = 200 * MiB
"""The largest music file a short takes (an hour of 320 kbit/s MP3 is 144 MB)."""


def _existing_file(path: Path) -> Path:
    """The user's music file, resolved: a regular file of at most MUSIC_FILE_LIMIT bytes (the timeline stage reads
    its audio)."""
    path = path.expanduser()
    if not path.is_file():
        raise RequestError("music_file", "no such file" if not path.exists() else "not a regular file")
    if path.stat().st_size > MUSIC_FILE_LIMIT:
        raise RequestError("music_file", f"larger than {MUSIC_FILE_LIMIT >> 20} MB; give a shorter or smaller track")
    return path.resolve()


def read_script_file(path: Path, label: str = "--script") -> str:
    """The text of a script file (checked as narration by the schema, `ipc.request`)."""
    return read_text(path, label)


def _source(ref: str) -> str:
    """A source: an http(s) URL as given, or a file that exists, by its absolute path (stages run elsewhere)."""
    if ref.startswith(("http://", "https://")):
        return ref
    if "://" in ref:
        raise RequestError("source", f"{ref}: only http:// and https:// addresses, or a file")
    path = Path(ref).expanduser()
    if not path.is_file():
        raise RequestError("source", f"{ref}: no such file (give a .txt, .md, .html, .pdf or .zim file, or a URL)")
    return str(path.resolve())


def _topic_from_script(text: str) -> str:
    first = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    return " ".join(first.split())[:MAX_TOPIC_CHARS]
