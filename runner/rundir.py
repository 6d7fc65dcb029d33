"""A run directory: one supervisor at a time, a name no other run has, and the manifest it resumes from.

Responsible for: claiming a run directory for this process (an exclusive
`flock` on `RUN/.lock`, which the kernel releases when the holder exits or is
killed, so a kill -9 never leaves a stale lock), creating a default directory
exclusively (another name is taken if two runs chose the same one in the same
second), removing a fresh directory again when the run is refused before it
starts, telling others whether a supervisor holds it now, and `run.json`.
Not responsible for what runs inside (`runner.run`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

from aishorts.ipc.files import ArtifactError, naming, open_regular, read_regular
from aishorts.ipc.params import PipelineParams
from aishorts.runner.errors import UsageError

LOCK_NAME = ".lock"


class RunManifest(msgspec.Struct, kw_only=True):
    """The parameters a run directory was made with, so `--run-dir DIR` alone can resume it."""

    version: int = 1
    params: PipelineParams
    pipeline_file: str | None = None


def read_manifest(path: Path) -> RunManifest:
    """`run.json`, as this version writes it or as an earlier one did (ArtifactError otherwise).

    Earlier versions saved the frame as `timeline.width` and `timeline.height`; it is now `aspect`, so a run
    directory made before can still be resumed."""
    try:
        return msgspec.json.decode(read_regular(path), type=RunManifest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        problem = exc
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        raw = msgspec.json.decode(read_regular(path))
        timeline = raw["params"]["timeline"]
        width, height = timeline.pop("width"), timeline.pop("height")
    except (msgspec.DecodeError, KeyError, TypeError):
        raise ArtifactError(f"{path}: {problem}") from None
    timeline.setdefault("aspect", "16:9" if width > height else "1:1" if width == height else "9:16")
    try:
        return msgspec.convert(raw, RunManifest)
    except msgspec.ValidationError:
        raise ArtifactError(f"{path}: {problem}") from None


def default_run_dir(subject: str, parent: Path = Path("runs")) -> Path:
    """`runs/20261130-043941-why-octopuses-have-three-hearts`; `claimed(..., fresh=True)` makes it unique."""
    slug = re.sub(r"[^a-z0-9]+", "-", subject.lower()).strip("-")[:40] or "short"
    return parent / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"


@contextlib.contextmanager
def claimed(run_dir: Path, fresh: bool = False) -> Iterator[Path]:
    """Create and lock `run_dir` for the life of the block; yields the directory actually used.

    A `fresh` directory must not exist yet: if another run took the name, a
    suffix makes a new one. A second supervisor on a claimed directory gets a
    UsageError naming the holder's pid. A directory made here (fresh, or a new
    `--run-dir` name) is removed again if the block raises UsageError (the run
    was refused: it leaves nothing behind); one that existed is left as it was.
    """
    run_dir, created = (_create_fresh(run_dir), True) if fresh else _create(run_dir)
    try:
        with _locked(run_dir):
            try:
                yield run_dir
            except UsageError:
                if created:  # still under our lock: nobody else is inside it
                    shutil.rmtree(run_dir, ignore_errors=True)
                raise
    except UsageError:
        if fresh:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _create(run_dir: Path) -> tuple[Path, bool]:
    """The named run directory, and whether it was made here (it did not exist)."""
    if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
        raise UsageError(f"--run-dir {run_dir} exists and is not a folder")
    try:
        run_dir.mkdir(parents=True)
        return run_dir, True
    except FileExistsError:
        return run_dir, False
    except OSError as exc:
        raise UsageError(f"--run-dir {run_dir}: cannot create it ({exc.strerror})") from None


def _create_fresh(run_dir: Path) -> Path:
    candidate = run_dir
    for _ in range(100):
        try:
            candidate.parent.mkdir(parents=True, exist_ok=True)
            candidate.mkdir()
            return candidate
        except FileExistsError:
            candidate = run_dir.with_name(f"{run_dir.name}-{secrets.token_hex(2)}")
        except OSError as exc:
            raise UsageError(f"cannot create the run directory {candidate} ({exc.strerror})") from None
    raise UsageError(f"cannot find a free name for a run directory beside {run_dir}")


def held_elsewhere(run_dir: Path) -> bool:
    """Whether a supervisor holds the run directory now (its lock is taken), asked without taking it for long.

    A `.lock` that is not a regular file counts as held: no run may be started there (and a FIFO must never wedge
    the asker). The answer is about every other claim, this process's own `claimed` included.
    """
    try:
        fd = open_regular(run_dir / LOCK_NAME, follow=False)
    except OSError as exc:
        return exc.errno == errno.EINVAL  # not a regular file
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the lock if this test took it
    return False


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    path = run_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO planted as .lock: never wait on it
            os.close(fd)
            raise UsageError(f"--run-dir {run_dir}: its {LOCK_NAME} is not a regular file; remove it")
    except OSError as exc:
        raise UsageError(f"--run-dir {run_dir}: cannot lock it ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise UsageError(
                f"--run-dir {run_dir} is in use by another aishorts-runner (pid {holder});"
                " wait for it to finish, or stop it, then run again"
            ) from None
        with naming(path):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
