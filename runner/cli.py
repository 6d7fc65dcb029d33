"""The `aishorts-runner` command: read what the user asked for, run it, report, exit.

This is the edge where errors become messages and exit codes: 0 done, 1 a
stage failed, 2 bad usage or input, 3 a stage crossed its memory ceiling,
130 interrupted. Everything heavy is imported only after the arguments are
read, so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from typing import get_args

from ipc.messages import StageCall
from ipc.params import (
    CATEGORIES, BrollParams, LlmParams, MatchParams, RenderParams, ScriptParams, TtsParams, choices,
)
from ipc.pipeline import STAGE_NAMES
from runner.run import Isolation


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aishorts-runner",
        description="Turn a topic into a vertical short, each heavy stage in its own process under a memory ceiling.",
        epilog="Stages: " + ", ".join(STAGE_NAMES) + ". Exit codes: 0 done, 1 stage failed, 2 bad usage,"
        " 3 memory ceiling crossed, 130 interrupted. `aishorts-runner probe --help` finds what each stage needs;"
        " `aishorts-runner serve --help` runs the web page and REST API.",
    )
    what = parser.add_argument_group("what to make")
    what.add_argument("--topic", help="the subject of the short, used as is")
    what.add_argument("--category", choices=CATEGORIES, help="let the theme stage pick a topic (default: random)")
    what.add_argument("--script", type=Path, metavar="FILE", help="your own narration text (skips generation)")
    what.add_argument("--source", action="append", metavar="PATH|URL",
                      help="a text the script retells and sources.txt cites (repeatable): .txt, .md, .html, .pdf,"
                           " a Kiwix .zim archive (its articles on the topic), or an http(s) page")
    what.add_argument("--wiki-url", metavar="URL|off",
                      help="with no --source, the MediaWiki the topic is looked up on (default: Wikipedia in the"
                           " narration's language); off: none")
    what.add_argument("--topics-file", type=Path, metavar="FILE", help="a batch of shorts: one topic a line, or JSON Lines"
                      " (.jsonl) or CSV (.csv, with a header) whose rows set each short's own options")
    what.add_argument("--platform", choices=choices(ScriptParams, "platform"), help="duration and bitrate preset (default shorts)")
    what.add_argument("--language", help="narration language, e.g. en-us (default) or pt-br")
    what.add_argument("--voice", help="Kokoro voice (default: the language's native voice, e.g. af_heart for en-us, pf_dora for pt-br;"
                                             " `--voice list` shows them)")
    what.add_argument("--speed", type=float, help="narration speed (default 1.0)")
    what.add_argument("--llm", choices=choices(LlmParams, "backend"), help="script backend (default auto: an API key in the environment, a local Ollama or llama.cpp"
                           " server, else the strongest shipped local model that fits the memory budget)")
    what.add_argument("--llm-url", help="OpenAI-compatible base URL for --llm openai")
    what.add_argument("--llm-model", help="model name: for --llm openai, or a local model"
                      " (Qwen2.5-Coder-1.5B-Instruct, SmolLM2-135M-Instruct)")
    what.add_argument("--llm-key-env", help="environment variable holding the API key (default OPENAI_API_KEY)")
    what.add_argument("--tts", choices=choices(TtsParams, "backend"), help="narration backend (default onnx)")
    what.add_argument("--broll", choices=choices(BrollParams, "source"), help="b-roll source")
    what.add_argument("--broll-dir", type=Path, metavar="DIR", help="folder of your clips and stills (--broll local)")
    what.add_argument("--broll-url", action="append", metavar="URL", help="a clip URL for --broll urls (repeatable)")
    what.add_argument("--scorer", choices=choices(MatchParams, "scorer"), help="how visuals are matched to sentences")
    what.add_argument("--clip-model", help="CLIP model name in the local cache, or a folder")
    what.add_argument("--renderer", choices=choices(RenderParams, "renderer"), help="video renderer (default ffmpeg)")
    what.add_argument("--encoder-preset", choices=choices(RenderParams, "preset"),
                      help="x264 preset of the ffmpeg renderer: slower ones spend more CPU for a little quality"
                           " (default superfast)")
    what.add_argument("--no-music", action="store_true", default=None, help="no background music")
    what.add_argument("--seed", type=int, help="seed of the generated topic and script (default: a new one per run)")

    memory = parser.add_argument_group("memory")
    memory.add_argument("--max-ram", metavar="SIZE", help="budget for the supervisor plus all running stages, e.g. 4G")
    memory.add_argument("--limit", action="append", default=[], metavar="STAGE=SIZE",
                        help="override one stage's ceiling (repeatable); reproduces an OOM on purpose")
    memory.add_argument("--limits", type=Path, metavar="FILE", help="limits file replacing limits.toml")

    run = parser.add_argument_group("run")
    run.add_argument("--run-dir", type=Path, metavar="DIR", help="run directory (default: new folder under runs/); reuse it to resume")
    order = run.add_mutually_exclusive_group()
    order.add_argument("--from", dest="start_from", metavar="STAGE", help="rerun from this stage on")
    order.add_argument("--only", metavar="STAGE", help="rerun this stage alone on saved inputs")
    run.add_argument("--jobs", type=int, default=1, metavar="N", help="pipelines side by side with --topics-file")
    run.add_argument("--cluster", metavar="ADDRESS",
                     help="with --topics-file: run the shorts across a Ray cluster, one task per short: auto, HOST:PORT,"
                          " or local (a private one-machine Ray, to try it); needs pip install -e \".[cluster]\"")
    run.add_argument("--cluster-unit", choices=("short", "stage"), metavar="UNIT",
                     help="with --cluster: one Ray task per short (default, short) or per stage (stage: needs the"
                          " run directories on a filesystem every node mounts)")
    run.add_argument("--isolation", choices=get_args(Isolation), default="process",
                     help="process (default): each stage in its own process; none: the old single-process design")
    run.add_argument("--device", choices=choices(StageCall, "device"), default="auto", help="where models run")
    run.add_argument("--json", action="store_true", help="print the final report as JSON on stdout")
    run.add_argument("--pipeline", type=Path, metavar="FILE", help=argparse.SUPPRESS)  # developers: tests, benchmarks
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["probe"]:
        from runner.probe import main as probe_main

        return probe_main(argv[1:])
    if argv[:1] == ["serve"]:
        return serve_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.voice == "list":
        return list_voices()
    from runner.errors import RunnerError

    try:
        from runner.session import run_from_args

        return run_from_args(args)
    except RunnerError as exc:
        print(f"aishorts-runner: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # a Ctrl-C before the run's own handling is in place, or after it
        print("aishorts-runner: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"aishorts-runner: error: {os_error_message(exc)}", file=sys.stderr)
        return 1


SERVE_NEEDS = ("fastapi", "uvicorn", "starlette", "anyio", "pydantic")


def serve_main(argv: list[str]) -> int:
    """`aishorts-runner serve`: the web page and API, from the `serve` extra (loaded by name, only here)."""
    import importlib

    try:
        serve_cli = importlib.import_module("serve.cli")
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVE_NEEDS:
            raise
        print(f"aishorts-runner serve: needs the serve extra ({exc.name} is not installed):"
              ' pip install -e ".[serve]"', file=sys.stderr)
        return 2
    return serve_cli.main(argv)


def list_voices() -> int:
    """The voices the narrator can use and each language's default, as `python -m stages.voices list` says."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "stages.voices", "list"], check=False).returncode


def os_error_message(exc: OSError) -> str:
    """An operating-system failure in words a user can act on: what, where, and for a full disk, what to do."""
    from ipc.files import disk_full_message

    if exc.errno == errno.ENOSPC:
        return disk_full_message(str(exc.filename or "the run directory"))
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write{where}: {exc.strerror}; choose a writable --run-dir"
    return f"{exc.strerror or exc}{where}"


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
