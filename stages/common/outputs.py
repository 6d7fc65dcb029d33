"""How a stage writes its files: each one created afresh, partial ones removed, a full disk recognised.

A run directory is the user's, and a symbolic link (or a hard link to a file
elsewhere) may stand at any name a stage is about to write. So no file is ever
opened for writing where it stands: `fresh` removes whatever is at the name,
and the file is then created exclusively without following links (`create`,
`copy_file`, `link_or_copy`) or written under a temporary name and renamed
over it (`write_text`). Tools that open their outputs themselves (ffmpeg,
yt-dlp) are handed a name `fresh` has just cleared; `real_folder` does the same
for a folder a stage writes into.

A stage that fails removes what it was writing (`removed_on_failure`), so a
half-written video does not keep a disk full; `raise_if_out_of_space` turns a
tool's failure on a full disk into the OSError(ENOSPC) that the harness reports
in one line (stages/harness.py). Not responsible for where payloads live in
the run directory (ipc/files.py), nor for what goes in them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from aishorts.ipc.files import atomic_write_bytes, open_new_file

NO_SPACE = os.strerror(errno.ENOSPC)
"""What a tool prints when a write meets a full disk: "No space left on device"."""
ALMOST_FULL_BYTES = 1 << 20
"""Less room than this after a tool failed means the disk filled up: its log, on the same disk, may be cut short
before it could say so."""


def fresh(path: Path) -> Path:
    """`path`, with whatever stood there (a file, a link, a folder) removed, so that what is written next is new."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    return path


def real_folder(path: Path) -> Path:
    """A folder at `path` that is really there, not a link to one elsewhere; what it holds already is kept."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def create(path: Path) -> BinaryIO:
    """A new file at `path`, open for writing bytes, whatever stood at the name before."""
    return open_new_file(fresh(path))


def write_text(path: Path, text: str) -> Path:
    """Write a UTF-8 text file under a temporary name and rename it over `path`."""
    atomic_write_bytes(Path(path), text.encode("utf-8"))
    return Path(path)


def copy_file(source: Path, target: Path) -> Path:
    """A new copy of `source` at `target`; nothing half-copied is left if it fails."""
    with removed_on_failure(target), open(source, "rb") as reader, create(target) as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)
    return target


def link_or_copy(source: Path, target: Path) -> Path:
    """`source` at the new name `target`: a hard link when both share a filesystem (no second copy), else a copy."""
    try:
        os.link(source, fresh(target))
    except OSError:
        copy_file(source, target)
    return target


@contextlib.contextmanager
def removed_on_failure(*paths: Path) -> Iterator[None]:
    """Remove `paths` if the block fails, so that a failed stage leaves no partial payload behind."""
    try:
        yield
    except BaseException:
        for path in paths:
            with contextlib.suppress(OSError):
                fresh(path)
        raise


def raise_if_out_of_space(tool_output: str, folder: Path) -> None:
    """Raise OSError(ENOSPC) naming `folder` if a tool that wrote there failed on a full disk.

    Call it when the tool has failed and before its partial output is removed:
    the tool's output says so, or the folder's disk has almost no room left.
    """
    if NO_SPACE in tool_output or _room_left(folder) < ALMOST_FULL_BYTES:
        raise OSError(errno.ENOSPC, NO_SPACE, str(folder))


def _room_left(folder: Path) -> int:
    try:
        stats = os.statvfs(folder)
    except OSError:
        return ALMOST_FULL_BYTES
    return stats.f_bavail * stats.f_frsize
