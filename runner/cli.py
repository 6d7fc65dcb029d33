"""The `aishorts-runner` command: read what the user asked for, run it, report, exit.

This is the edge where errors become messages and exit codes: 0 done, 1 a
stage failed, 2 bad usage or input, 3 a stage crossed its memory ceiling,
130 interrupted. Everything heavy is imported only after the arguments are
read, so `--help` stays instant. The flags of what to make are derived from
the request schema (`ipc.request.ShortRequest`), one per field; the run-level
ones (memory, run directory, jobs) are this module's own. The `serve`
command, `--cluster` and `--isolation none` come from the entry above it
(`aishorts.main`).
"""

from __future__ import annotations

import signal
import sys


def _interrupted_while_starting(signum, frame):
    """Ctrl-C while the modules below load: one line and exit 130, not a traceback from an import."""
    sys.stderr.write("aishorts-runner: interrupted\n")
    raise SystemExit(130)


if __name__ == "__main__" or sys.argv[0].endswith(("aishorts-runner", "aishorts/__main__.py")):  # the command
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import argparse  # noqa: E402 (after the handler, so that a Ctrl-C during these imports is handled)
import errno  # noqa: E402
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from aishorts.ipc.messages import StageCall
from aishorts.ipc.params import choices
from aishorts.ipc.pipeline import STAGE_NAMES
from aishorts.ipc.request import FieldInfo, RequestError, ShortRequest, field_info, in_words, request_from
from aishorts.runner.run import Isolation

if TYPE_CHECKING:
    from aishorts.runner.session import Extensions


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aishorts-runner",
        description="Turn a topic into a vertical short, each heavy stage in its own process under a memory ceiling.",
        epilog="Stages: " + ", ".join(STAGE_NAMES) + ". Exit codes: 0 done, 1 stage failed, 2 bad usage,"
        " 3 memory ceiling crossed, 130 interrupted. `aishorts-runner probe --help` finds what each stage needs;"
        " `aishorts-runner serve --help` runs the web page and REST API.",
    )
    what = parser.add_argument_group("what to make")
    add_request_options(what)
    what.add_argument("--topics-file", type=Path, metavar="FILE", help="a batch of shorts: one topic a line, or JSON Lines"
                      " (.jsonl) or CSV (.csv, with a header) whose rows set each short's own options")

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


def add_request_options(group) -> None:
    """One flag per field of the request schema (`ipc.request.ShortRequest`), with its help and choices."""
    for info in field_info().values():
        if info.kind is bool:  # on by default: the flag turns it off
            group.add_argument(info.flag, dest=info.name, action="store_const", const=False,
                               help=info.extra.get("flag_help", info.help))
        elif info.kind is list:
            group.add_argument(info.flag, dest=info.name, action="append", metavar=info.name.split("_")[-1].upper(),
                               help=info.help)
        else:
            group.add_argument(info.flag, dest=info.name, help=info.help, **_value_kind(info))


def _value_kind(info: FieldInfo) -> dict:
    if info.extra.get("metavar"):
        return {"metavar": info.extra["metavar"]}
    if info.choices:
        return {"metavar": "{" + ",".join(info.choices) + "}"}
    if info.extra.get("file"):
        return {"type": Path, "metavar": "FILE"}
    if info.extra.get("folder"):
        return {"metavar": "DIR"}
    if info.extra.get("path"):
        return {"metavar": "FILE"}
    if info.kind in (int, float):
        return {"metavar": info.kind.__name__.upper()}
    return {}


def request_from_args(args: argparse.Namespace) -> ShortRequest:
    """The short the command line asks for, checked against the schema; UsageError naming the flag otherwise."""
    from aishorts.runner.errors import UsageError
    from aishorts.runner.options import read_script_file

    values = {name: getattr(args, name) for name in field_info()}
    if args.script is not None:
        values["script"] = read_script_file(args.script)
    try:
        return request_from(values, strict=False)  # numbers as typed: "--speed 1.2"
    except RequestError as exc:
        raise UsageError(cli_words(exc, vars(args))) from None


def cli_words(exc: RequestError, given: dict) -> str:
    """A schema refusal in the command line's words: the flag, what was typed, why."""
    info = field_info().get(exc.field)
    return in_words(exc, info.flag, given.get(exc.field)) if info else str(exc)


def main(argv: list[str] | None = None, extensions: Extensions | None = None) -> int:
    """The command line, run. `extensions` are what a front end above the supervisor hands it (`aishorts.main`):
    the `serve` command, `--cluster`, `--isolation none`; without them those are refused with a usage error."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on a Ctrl-C is handled where it lands
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["probe"]:
        from aishorts.runner.probe import main as probe_main

        return probe_main(argv[1:])
    if extensions is not None and argv[:1] and argv[0] in extensions.commands:
        return extensions.commands[argv[0]](argv[1:])
    args = build_parser().parse_args(argv)
    if args.voice == "list":
        return list_voices()
    from aishorts.runner.errors import RunnerError

    try:
        from aishorts.runner.session import Extensions, run_from_args

        args.request = request_from_args(args)
        return run_from_args(args, extensions or Extensions())
    except RunnerError as exc:
        print(f"aishorts-runner: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except RequestError as exc:
        print(f"aishorts-runner: error: {cli_words(exc, vars(args))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a Ctrl-C before the run's own handling is in place, or after it
        print("aishorts-runner: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"aishorts-runner: error: {os_error_message(exc)}", file=sys.stderr)
        return 1


def list_voices() -> int:
    """The voices the narrator can use and each language's default, as `python -m aishorts.stages.tts.voices list` says."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "aishorts.stages.tts.voices", "list"], check=False).returncode


def os_error_message(exc: OSError) -> str:
    """An operating-system failure in words a user can act on: what, where, and for a full disk, what to do."""
    from aishorts.ipc.files import disk_full_message

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
