"""Writing and reading artifacts safely: atomic writes, strict typed reads, run-dir paths.

An artifact on disk is either complete or absent: it is written to a temporary
file in the same folder, fsynced and renamed over the final name, so a stage
killed mid-write leaves only a `.tmp` file that nothing reads. The rename
replaces whatever was at the name (a symlink planted there included) rather
than writing through it, so nothing written here can land outside its folder. Reads are strict
msgspec decodes against the expected Struct; every way a file can be wrong
(missing, truncated, corrupt, wrong kind, wrong schema version) becomes one
`ArtifactError` that names the file.

Payload paths (WAV, MP4, images) are stored relative to the run directory and
resolved through `resolve_in_run`, which refuses anything that escapes it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import msgspec

from aishorts.ipc.sizes import MiB

T = TypeVar("T", bound=msgspec.Struct)


class ArtifactError(Exception):
    """An artifact or payload that cannot be trusted; the message names the file."""


class _Header(msgspec.Struct):
    kind: str
    version: int


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """An OSError raised without a file name (a write on a full disk) gets `path`, so messages can say where."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


def disk_full_message(where: str) -> str:
    """The one sentence every layer gives for a full disk: where, and that a rerun resumes once space is freed."""
    return f"the disk is full ({os.strerror(errno.ENOSPC)}: {where}); free some space, then run the same command again to resume"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file, or all of the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with naming(path), os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def open_new_file(path: Path):
    """A binary file object for a file created here and now: never through a symlink planted at `path`.

    O_EXCL refuses any existing name (a symlink included, dangling or not), so
    callers move or remove an old file first; what they write can only land inside
    the folder they meant.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    return os.fdopen(fd, "wb")


ARTIFACT_LIMIT = 1024 * MiB
"""The largest JSON file of a run (an artifact, run.json, a stamp) read into memory; the big payloads are files
(tests pad artifacts to 200 MB; a real one is a few KB)."""


def open_regular(path: Path, flags: int = os.O_RDONLY, follow: bool = True) -> int:
    """A descriptor of `path`, opened without ever blocking; OSError if it is not a regular file.

    O_NONBLOCK makes opening a named pipe (FIFO) return at once instead of
    waiting for a writer, so a FIFO planted in a run directory or given as a
    user's file cannot wedge the CLI or the server, nor hold off SIGTERM and
    Ctrl-C; a pipe, device or socket is then refused as not a regular file.
    """
    extra = os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags | extra)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file (a pipe, device or socket)", str(path))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path, limit: int = ARTIFACT_LIMIT) -> bytes:
    """All of the regular file `path`, at most `limit` bytes; OSError (EFBIG) for a bigger one, or one that grows."""
    with os.fdopen(open_regular(path), "rb") as handle:
        too_big = os.fstat(handle.fileno()).st_size > limit
        data = b"" if too_big else handle.read(limit + 1)
    if too_big or len(data) > limit:
        raise OSError(errno.EFBIG, f"over the {_size(limit)} such a file may hold", str(path))
    return data


def _size(count: int) -> str:
    return f"{count / MiB:g} MiB" if count >= MiB else f"{count / 1024:g} KiB"


def encode_json(obj: object) -> bytes:
    """Indented JSON, so artifacts stay readable by people."""
    return msgspec.json.format(msgspec.json.encode(obj), indent=2) + b"\n"


def write_struct(path: Path, obj: msgspec.Struct) -> None:
    atomic_write_bytes(path, encode_json(obj))


def read_struct(path: Path, cls: type[T]) -> T:
    """Decode `path` as `cls`, checking its `kind` and `version` first when it has them."""
    path = Path(path)
    try:
        data = read_regular(path)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: file not found") from None
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read ({exc.strerror})") from None
    if not data.strip():
        raise ArtifactError(f"{path}: file is empty")
    expected_version = getattr(cls, "schema_version", None)
    expected_kind = getattr(cls, "kind_name", None)
    if expected_version is not None:
        try:
            header = msgspec.json.decode(data, type=_Header)
        except msgspec.DecodeError as exc:
            raise ArtifactError(f"{path}: not a valid {expected_kind or cls.__name__} artifact ({exc})") from None
        if expected_kind is not None and header.kind != expected_kind:
            raise ArtifactError(f"{path}: holds a {header.kind!r} artifact, expected {expected_kind!r}")
        if header.version != expected_version:
            raise ArtifactError(
                f"{path}: schema version {header.version}, this program reads version {expected_version};"
                " rerun the stage that wrote it (--from STAGE)"
            )
    try:
        return msgspec.json.decode(data, type=cls, strict=True)
    except msgspec.DecodeError as exc:
        reason = str(exc)
        if "matching regex" in reason:
            where = reason.rsplit(" - at ", 1)[-1]
            reason = f"a payload path at {where} is absolute or leaves the run directory"
        raise ArtifactError(f"{path}: invalid {expected_kind or cls.__name__} ({reason})") from None


def resolve_in_run(run_dir: Path, relative: str) -> Path:
    """The absolute path of `relative` inside `run_dir`; refuses anything outside it."""
    if not relative or Path(relative).is_absolute():
        raise ArtifactError(f"payload path {relative!r} must be relative to the run directory")
    root = Path(run_dir).resolve()
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        raise ArtifactError(f"payload path {relative!r} escapes the run directory {root}")
    return target


def relative_to_run(run_dir: Path, path: Path) -> str:
    """The run-relative form of `path`, which must lie inside `run_dir`."""
    root = Path(run_dir).resolve()
    target = Path(path).resolve()
    if root not in target.parents:
        raise ArtifactError(f"{target} is not inside the run directory {root}")
    return target.relative_to(root).as_posix()


def sha256_bytes(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with os.fdopen(open_regular(path), "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
