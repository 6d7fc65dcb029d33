"""The stages' on-disk cache of models they derive from packaged ones.

Responsible for: where the cache lives ($AISHORTS_CACHE, default
~/.cache/aishorts), a lock for builds two pipelines may start together, and
publishing a finished build under its final name in one rename, so a killed
build never leaves a file or folder that looks complete. Not responsible for
what is cached or how it is keyed: the stage that builds an entry names it
after everything the build depends on.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("AISHORTS_CACHE") or Path.home() / ".cache" / "aishorts")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock, so two pipelines starting together build an entry once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def scratch_for(target: Path) -> Path:
    """A private name beside `target` to build it under (same filesystem, so publishing is a rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def publish(scratch: Path, target: Path) -> None:
    """Give the finished build at `scratch` its final name; a build published meanwhile by another wins."""
    try:
        os.replace(scratch, target)  # a folder cannot replace a non-empty one: that raises, and the other wins
    except OSError:
        if not target.exists():
            raise
    finally:
        discard(scratch)


def discard(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
