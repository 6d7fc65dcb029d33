"""Running one stage: decode its call, inputs and params, call it, write its artifact.

`stage_main` is the entry of a stage process (`python -m aishorts.stages.<name>.stage CALL`);
`execute` is the same work without the process, used by `--isolation none`.
Both apply the stage runtime (stages/common/runtime.py: environment defaults, this
call's CPU share) before the stage function runs. This module does not
supervise anything: limits, kills and reports belong to `runner/`. It makes
the process the kernel's preferred OOM victim and ties its whole tree to the
supervisor's life (stages/common/lifeline.py), so nothing a stage starts outlives it.
A full disk met anywhere in a stage (an OSError with ENOSPC) ends it with one
StageError that says so and names the run directory. A stage process that
cannot finish says why on its progress pipe (`ipc.messages.StageFailure`:
a StageError's words, or a crash's exception and where it was raised) before
it exits 1, so the supervisor never has to guess from its log. What a stage's
code itself holds (`StageContext`, `StageError`) lives in stages/common/context.py.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from aishorts.ipc.artifacts import ARTIFACT_TYPES, Artifact
from aishorts.ipc.files import ArtifactError, read_struct, resolve_in_run, write_struct
from aishorts.ipc.messages import StageCall, StageFailure, StageMessage, progress_encoder
from aishorts.ipc.pipeline import artifact_path
from aishorts.stages.common import lifeline
from aishorts.stages.common.context import ProgressSink, StageContext, StageError, disk_full
from aishorts.stages.common.runtime import apply_environment, set_cpu_budget


def load_inputs(call: StageCall) -> dict[str, Artifact]:
    run_dir = Path(call.run_dir)
    inputs: dict[str, Artifact] = {}
    for name, relative in call.inputs.items():
        kind = call.input_kinds[name]
        inputs[name] = read_struct(resolve_in_run(run_dir, relative), ARTIFACT_TYPES[kind])
    return inputs


def execute(call: StageCall, sink: ProgressSink | None = None) -> Artifact:
    """Run the stage named in `call` in this process and write its artifact."""
    module = importlib.import_module(call.module)
    return _run(call, module.run, module.Params, sink)


def _run(call: StageCall, func: Callable[..., Any], params_type: type, sink: ProgressSink | None) -> Artifact:
    apply_environment()
    set_cpu_budget(call.threads)
    inputs = load_inputs(call)
    try:
        params = msgspec.json.decode(call.params, type=params_type, strict=True)
    except msgspec.DecodeError as exc:
        raise StageError(f"stage {call.stage}: invalid parameters ({exc})") from None
    try:
        Path(call.out_dir).mkdir(parents=True, exist_ok=True)
        result = func(StageContext(call, sink), params, **inputs)
        expected = ARTIFACT_TYPES[call.output_kind]
        if not isinstance(result, expected):
            raise TypeError(f"stage {call.stage} returned {type(result).__name__}, expected {expected.__name__}")
        write_struct(Path(call.run_dir) / artifact_path(call.stage), result)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        raise disk_full(call.run_dir, exc.filename) from None
    return result


@contextlib.contextmanager
def stage_temp_dir(out_dir: Path) -> Iterator[Path]:
    """Temporary files of the stage and its libraries inside its own folder (`.tmp`), removed when it ends.

    phonemizer copies libespeak-ng.so into a fresh temporary folder per voice and
    leaves it behind (a stage process ends with os._exit, so no finalizer runs);
    under /tmp every tts run left two 660 KB copies. Here they land in the
    stage's folder, and a stage killed before its cleanup leaves them there for
    its next run to remove, never in /tmp. For a stage's own process only: in
    a process that lives on, libraries' finalizers would find their folders gone.
    """
    temp = out_dir / ".tmp"
    shutil.rmtree(temp, ignore_errors=True)  # a killed run's leftovers
    temp.mkdir(parents=True)
    saved = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = os.environ["TMPDIR"] = str(temp)
    try:
        yield temp
    finally:
        tempfile.tempdir = saved[0]
        if saved[1] is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved[1]
        shutil.rmtree(temp, ignore_errors=True)


def _become_preferred_oom_victim() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")


def stage_main(func: Callable[..., Any], params_type: type) -> None:
    """Process entry: `python -m aishorts.stages.<name> CALL_FILE`. Exit 0 on success, 1 with a message on failure."""
    _become_preferred_oom_victim()
    lifeline.hold()  # nothing this stage starts outlives the supervisor
    if len(sys.argv) != 2:
        sys.exit(f"usage: python -m {func.__module__} CALL_FILE (started by aishorts-runner)")
    try:
        call = read_struct(Path(sys.argv[1]), StageCall)
    except ArtifactError as exc:
        sys.exit(f"stage call: {exc}")
    sink = _pipe_sink(call.progress_fd)
    try:
        with stage_temp_dir(Path(call.out_dir)):  # the stage's own process only: it ends with os._exit below
            _run(call, func, params_type, sink)
    except (StageError, ArtifactError) as exc:
        print(f"{call.stage}: {exc}", file=sys.stderr)
        _say_failed(sink, StageFailure(reason=str(exc)))
    except Exception as exc:
        traceback.print_exc()
        _say_failed(sink, crash_failure(exc))
    else:
        _leave(0)


def crash_failure(exc: BaseException) -> StageFailure:
    """An exception no stage code expected, as the supervisor reports it: its type, message and where it rose."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{_short_path(frames[-1].filename)}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return StageFailure(reason=reason, where=where)


def _short_path(filename: str) -> str:
    """A frame's file relative to the project (`stages/tts/stage.py`), or as it is for a library's."""
    root = Path(__file__).resolve().parent.parent
    with contextlib.suppress(ValueError):
        return Path(filename).resolve().relative_to(root).as_posix()
    return filename


def _say_failed(sink: Callable[[StageMessage], None] | None, failure: StageFailure) -> None:
    """Tell the supervisor why, on the progress pipe, then exit 1 (the log keeps the same words)."""
    if sink is not None:
        sink(failure)
    _leave(1)


def _leave(code: int) -> None:
    """End the stage process now: the artifact is written, and exit gives every byte back.

    Skipping interpreter teardown is deliberate: native libraries' destructors (llama.cpp's
    server waits for its own threads) can block it, and a stage that never exits would hold
    its ceiling of the budget until the supervisor killed it.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _pipe_sink(fd: int | None) -> Callable[[StageMessage], None] | None:
    if fd is None:
        return None
    pipe = os.fdopen(fd, "wb", buffering=0)

    def send(event: StageMessage) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            pipe.write(progress_encoder.encode(event) + b"\n")

    return send
