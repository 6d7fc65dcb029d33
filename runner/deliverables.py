"""The files at the top of a run directory that the user takes away (final.mp4, captions, thumbnail, credits).

The render stage publishes each of its payloads (`render/final.mp4`, ...) at
the top of the run directory under the same name. Those top-level files are
the product, so a resume that finds the render stage complete checks them too:
each must be a regular file whose sha256 is the one the stage's stamp records
for its source. One that was replaced, emptied or deleted is published again
from the stage's own output, which the stamp has just vouched for; one edited
in place through a shared hard link has changed the source as well, and the
stamp check has already sent the stage to be redone. Deciding whether a stage
is complete is `runner.run`'s job; this module only restores what it published.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import msgspec

from aishorts.ipc.files import ArtifactError, open_regular, read_struct, resolve_in_run, sha256_file

PUBLISHING_STAGES = frozenset({"render"})
"""Stages whose payloads stand at the top of the run directory as deliverables."""


class _StampPayloads(msgspec.Struct):
    payloads: dict[str, str] = {}


def restore_deliverables(run_dir: Path, stage: str) -> list[str]:
    """Publish again every deliverable of a complete `stage` that differs from its stamped source; their names."""
    if stage not in PUBLISHING_STAGES:
        return []
    try:
        stamped = read_struct(run_dir / stage / "stamp.json", _StampPayloads).payloads
    except ArtifactError:
        return []
    restored = []
    for relative, digest in sorted(stamped.items()):
        target = run_dir / Path(relative).name
        if _intact(target, digest):
            continue
        try:
            _publish(resolve_in_run(run_dir, relative), target)
        except (ArtifactError, OSError):
            continue  # the source went too: the next stamp check redoes the stage
        restored.append(target.name)
    return restored


def _intact(path: Path, digest: str) -> bool:
    try:
        return not path.is_symlink() and sha256_file(path) == digest
    except OSError:  # missing, not a regular file, unreadable
        return False


def _publish(source: Path, target: Path) -> None:
    """A fresh copy of `source` renamed over `target`: whatever stood there (a link, a FIFO) is replaced, never
    written through, and the copy shares no inode with the stage's own file."""
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".restore", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as writer, os.fdopen(open_regular(source), "rb") as reader:
            while block := reader.read(1 << 20):
                writer.write(block)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
