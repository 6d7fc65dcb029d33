"""Fetching a model repository from the Hugging Face hub, once, for users who are online.

Responsible for: whether the hub may be used now (not when the user set
`HF_HUB_OFFLINE`; not when `HF_ENDPOINT`, default huggingface.co, does not
answer within a few seconds), and downloading the files a model needs into
the local hub cache (`stages.common.runtime.hub_cache_dir`), file by file, with
progress. Each file is checked against what the hub announced for it (its
LFS sha256, or its git blob id, and its size) before it is published in the
cache, and a download is stopped as soon as it passes the announced size: a
lying or endless server leaves nothing behind but an error. A repository
already in the cache is not fetched again: loading code reads it from there
with `local_files_only` (`refs/main` names the snapshot folder). The endpoint and the
offline switch are read from the environment at each call, not when
huggingface_hub was imported.

Not responsible for loading models (the stages do), nor for choosing between
a downloaded model and an offline one (stages/match/stage.py's `choose_scorer`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aishorts.ipc.sizes import MiB
from aishorts.stages.common.runtime import hub_cache_dir

DEFAULT_ENDPOINT = "https://huggingface.co"
ANSWER_TIMEOUT_S = 5.0
"""How long the hub may take to answer the first question (the repository's file list)."""
READ_TIMEOUT_S = 60.0
"""How long one read of a file being downloaded may wait."""
_TRUE = {"1", "true", "yes", "on"}


class HubUnavailable(Exception):
    """The hub cannot be used now; the message says why, in words for the log."""


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline_by_user() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def fetch(repo: str, wanted: Callable[[str], bool], progress: Callable[[str, float | None], None]) -> Path:
    """The local snapshot folder of `repo` holding every file `wanted` accepts, downloaded now if missing.

    Raises HubUnavailable when the user is offline by choice, the hub does not
    answer, or the repository is not there.
    """
    if offline_by_user():
        raise HubUnavailable("HF_HUB_OFFLINE is set")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    where = endpoint()
    try:
        info = HfApi(endpoint=where).model_info(repo, timeout=ANSWER_TIMEOUT_S, files_metadata=True)
    except RepositoryNotFoundError:
        raise HubUnavailable(f"{where} has no repository {repo}") from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise HubUnavailable(f"{where} did not answer ({_short(exc)})") from None
    except Exception as exc:  # httpx's and requests' connection errors, whichever the installed version uses
        if type(exc).__module__.startswith(("httpx", "httpcore", "requests", "urllib3")):  # httpx2 too
            raise HubUnavailable(f"{where} did not answer ({_short(exc)})") from None
        raise
    files = [Announced.of(s) for s in info.siblings or [] if wanted(s.rfilename)]
    if not files:
        raise HubUnavailable(f"{where}: {repo} has none of the files needed")
    if not info.sha or not all(c in "0123456789abcdef" for c in info.sha):
        raise HubUnavailable(f"{where}: {repo} has no commit id to download from")
    folder = hub_cache_dir() / f"models--{repo.replace('/', '--')}" / "snapshots" / info.sha
    total = sum(f.size for f in files) or len(files)
    done = 0
    for announced in files:
        size = announced.size
        progress(f"fetching {repo}/{announced.name}" + (f" ({size / MiB:.0f} MiB)" if size >= MiB else ""),
                 done / total)
        download_checked(f"{where}/{repo}/resolve/{info.sha}/{urllib.parse.quote(announced.name)}",
                         folder / announced.name, announced)
        done += size or 1
    refs = folder.parent.parent / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / "main").write_text(info.sha)  # where the next run's lookup (try_to_load_from_cache) finds the snapshot
    progress(f"{repo} is in the local hub cache ({hub_cache_dir()})", 1.0)
    return folder


@dataclass(frozen=True)
class Announced:
    """What the hub says a file is: its size, and its LFS sha256 or its git blob id (sha1 of the git object)."""

    name: str
    size: int
    sha256: str | None
    git_sha1: str | None

    @classmethod
    def of(cls, sibling) -> Announced:
        lfs = sibling.lfs
        if lfs is not None:
            return cls(sibling.rfilename, int(lfs.size), str(lfs.sha256).lower(), None)
        if sibling.size is None or not sibling.blob_id:
            raise HubUnavailable(f"the hub announced no size and hash for {sibling.rfilename}, so it cannot be checked")
        return cls(sibling.rfilename, int(sibling.size), None, str(sibling.blob_id).lower())


def download_checked(url: str, target: Path, announced: Announced) -> Path:
    """`url` saved at `target` only if it is exactly the announced file: at most its size, then its hash.

    Written under a temporary name beside `target` and renamed over it once checked; a file already there that
    passes the same check is kept (a repeated fetch costs nothing).
    """
    if target.is_file() and _matches(target, announced):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".download", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            _stream(url, out, announced)
        if not _matches(Path(temporary), announced):
            raise HubUnavailable(f"{url}: the bytes received do not match the hash the hub announced"
                                 f" ({announced.sha256 or announced.git_sha1}); nothing was kept")
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def _stream(url: str, out, announced: Announced) -> None:
    received = 0
    try:
        with urllib.request.urlopen(urllib.request.Request(url), timeout=READ_TIMEOUT_S) as response:
            while block := response.read1(1 << 20):
                received += len(block)
                if received > announced.size:
                    raise HubUnavailable(f"{url}: sent more than the {announced.size} bytes the hub announced;"
                                         " stopped, nothing was kept")
                out.write(block)
    except (urllib.error.URLError, OSError) as exc:
        raise HubUnavailable(f"downloading {url} failed ({_short(exc)})") from None
    if received != announced.size:
        raise HubUnavailable(f"{url}: {received} bytes received, {announced.size} announced; nothing was kept")


def _matches(path: Path, announced: Announced) -> bool:
    if path.stat().st_size != announced.size:
        return False
    digest = hashlib.sha256() if announced.sha256 else hashlib.sha1(b"blob %d\0" % announced.size)
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest() == (announced.sha256 or announced.git_sha1)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:160] + ("…" if len(text) > 160 else "")
