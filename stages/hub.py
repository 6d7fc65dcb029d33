"""Fetching a model repository from the Hugging Face hub, once, for users who are online.

Responsible for: whether the hub may be used now (not when the user set
`HF_HUB_OFFLINE`; not when `HF_ENDPOINT`, default huggingface.co, does not
answer within a few seconds), and downloading the files a model needs into
the local hub cache (`stages.runtime.hub_cache_dir`), file by file, with
progress. A repository already in the cache is not fetched again: loading
code reads it from there with `local_files_only`. The endpoint and the
offline switch are read from the environment at each call, not when
huggingface_hub was imported.

Not responsible for loading models (the stages do), nor for choosing between
a downloaded model and an offline one (stages/match.py's `choose_scorer`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from stages.runtime import hub_cache_dir

DEFAULT_ENDPOINT = "https://huggingface.co"
ANSWER_TIMEOUT_S = 5.0
"""How long the hub may take to answer the first question (the repository's file list)."""
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
    from huggingface_hub import HfApi, hf_hub_download
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
    files = [(s.rfilename, s.size or 0) for s in info.siblings or [] if wanted(s.rfilename)]
    if not files:
        raise HubUnavailable(f"{where}: {repo} has none of the files needed")
    total = sum(size for _, size in files) or len(files)
    done, folder = 0, None
    for name, size in files:
        progress(f"fetching {repo}/{name}" + (f" ({size / 2**20:.0f} MiB)" if size >= 2**20 else ""), done / total)
        try:
            # the default revision (main): the cache then records refs/main, where the next run's lookup finds it
            path = hf_hub_download(repo, name, cache_dir=hub_cache_dir(), endpoint=where)
        except (HfHubHTTPError, OSError) as exc:
            raise HubUnavailable(f"{where}: downloading {repo}/{name} failed ({_short(exc)})") from None
        folder = Path(path).parents[name.count("/")]  # the snapshot folder, above the file's own subfolders
        done += size or 1
    progress(f"{repo} is in the local hub cache ({hub_cache_dir()})", 1.0)
    assert folder is not None
    return folder


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:160] + ("…" if len(text) > 160 else "")
