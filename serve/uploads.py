"""The user's own files sent from the page (`POST /api/v1/uploads`): a music track, clips and pictures.

Responsible for: where an upload lands (a folder of its own under the runs folder's `.uploads`, never listed as a
task nor served back), its name (the file's own, reduced to safe characters, with a suffix of a kind a short can
use), its size (at most `UPLOAD_LIMIT`, counted while it streams, whatever the client declared), and never
overwriting or following a link. The request then names the file (`music_file`) or its folder (`broll_dir`), which
the stages check as they check any path a user gives. What a request means is `serve.requests`' business; the
Host, Origin and Content-Type checks before any route are `serve.guard`'s.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from aishorts.ipc.sizes import MiB
from aishorts.serve.requests import FieldError

UPLOAD_LIMIT = 200 * MiB
"""The largest file taken (runner.options.MUSIC_FILE_LIMIT for a track; a 1080p clip of a minute is about 80 MB)."""
FOLDER_FILES = 50
"""The most files one upload folder holds (the b-roll stage takes 12 from a folder by default)."""
UPLOADS_DIR = ".uploads"
MUSIC_SUFFIXES = (".mp3", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".wav", ".flac")
MEDIA_SUFFIXES = (".mp4", ".mov", ".m4v", ".webm", ".mkv", ".jpg", ".jpeg", ".png", ".webp", ".gif")
CONTENT_TYPES = ("application/octet-stream", "audio/", "video/", "image/")
"""What an upload may declare itself: never a type an HTML form can send across sites without asking first."""
_FOLDER_ID = re.compile(r"^[0-9a-f]{16}$")


def is_upload_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return any(media == kind or (kind.endswith("/") and media.startswith(kind)) for kind in CONTENT_TYPES)


def safe_name(name: str) -> str:
    """The file's own name without folders, in letters, digits, dots, dashes and underscores; FieldError when its
    suffix is not a track, clip or picture."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip("._")[:120]
    suffix = Path(base).suffix.lower()
    if not base or suffix not in MUSIC_SUFFIXES + MEDIA_SUFFIXES:
        raise FieldError("name", f"{name!r}: upload a track ({', '.join(MUSIC_SUFFIXES)}) or a clip or picture"
                         f" ({', '.join(MEDIA_SUFFIXES)})", 400)
    return base[: -len(suffix)] + suffix


def kind_of(name: str) -> str:
    return "music" if Path(name).suffix.lower() in MUSIC_SUFFIXES else "media"


def upload_folder(runs_dir: Path, folder_id: str | None) -> tuple[str, Path]:
    """A new folder (no id given), or the one an earlier upload made; FieldError for any other id."""
    root = runs_dir / UPLOADS_DIR
    if folder_id is None:
        folder_id = secrets.token_hex(8)
        root.mkdir(parents=True, exist_ok=True)
        (root / folder_id).mkdir()
        return folder_id, root / folder_id
    folder = root / folder_id
    if not _FOLDER_ID.match(folder_id) or folder.is_symlink() or not folder.is_dir():
        raise FieldError("folder", f"{folder_id!r} is not an upload folder of this server; leave it out for a new one",
                         404)
    if sum(1 for _ in folder.iterdir()) >= FOLDER_FILES:
        raise FieldError("folder", f"the folder holds {FOLDER_FILES} files already; start a new one", 400)
    return folder_id, folder


async def store(chunks: AsyncIterator[bytes], target: Path, limit: int = UPLOAD_LIMIT) -> int:
    """The body written to `target` (a new file, never one already there, never through a link); its size.

    Over `limit` bytes, or an empty body: the partial file is removed and a FieldError says why.
    """
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except FileExistsError:
        raise FieldError("name", f"{target.name} is in this upload folder already; rename it or start a new"
                         " folder", 409) from None
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise FieldError("body", f"the file is over {limit >> 20} MiB; send a smaller one", 413)
                out.write(chunk)
        if size == 0:
            raise FieldError("body", "the upload is empty; send the file's bytes as the body", 400)
    except BaseException:
        with contextlib.suppress(OSError):
            target.unlink()
        raise
    return size
