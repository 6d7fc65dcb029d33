"""Reading the files a user names (a script, a topics file, a limits or pipeline file): one way to fail.

Every way such a file can be unusable (missing, a folder, a pipe or device,
larger than `USER_FILE_LIMIT`, unreadable, binary, not UTF-8, not valid TOML) becomes one `UsageError` that names the option or
kind of file and the path, so the CLI can print it as one line with exit 2.
What the contents mean is the caller's business.
"""

from __future__ import annotations

import errno
import tomllib
from pathlib import Path

from aishorts.ipc.files import read_regular
from aishorts.ipc.sizes import MiB
from aishorts.runner.errors import UsageError

USER_FILE_LIMIT = 16 * MiB
"""The largest script, topics, limits or pipeline file read (a 10,000-row topics file is about 1 MB)."""


def read_bytes(path: Path, what: str, limit: int = USER_FILE_LIMIT) -> bytes:
    """`what` names the file for the user, e.g. "--script" or "limits file".

    Only a regular file is read (never /dev/zero, a named pipe or a socket, which could hang or never end), and
    only up to `limit` bytes.
    """
    try:
        return read_regular(Path(path), limit)
    except FileNotFoundError:
        raise UsageError(f"{what} {path}: file not found") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path}: is a folder, not a file") from None
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EFBIG):  # not a regular file, or too big: read_regular says which
            raise UsageError(f"{what} {path}: {exc.strerror}; give a plain text file") from None
        raise UsageError(f"{what} {path}: cannot read ({exc.strerror})") from None


def read_text(path: Path, what: str) -> str:
    data = read_bytes(path, what)
    if b"\x00" in data:
        raise UsageError(f"{what} {path}: looks binary; give a plain UTF-8 text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path}: not UTF-8 text") from None


def read_toml(path: Path, what: str) -> dict:
    try:
        return tomllib.loads(read_text(path, what))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{what} {path}: not valid TOML: {exc}") from None
