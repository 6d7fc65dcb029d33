"""Stock footage from Pexels and Pixabay, through their public video search APIs and the user's own key.

Responsible for: asking each API for the videos matching a b-roll query
(Pexels: `GET /videos/search`, the key in the `Authorization` header;
Pixabay: `GET /api/videos/`, the key in the `key` parameter), reading the
answer into `StockHit`s, picking of each hit's renditions the one nearest the
video's frame, and downloading it under the b-roll download rules: http(s)
only, at most `broll.max_filesize_mb` bytes, within `broll.download_timeout_s`,
then probed by ffmpeg. The key goes to the API host only: API requests follow
no redirect at all (the answer would reach another host, or the key in
Pixabay's URL with it), and downloads carry no key. Messages never show it.
The base URLs are `https://api.pexels.com` and `https://pixabay.com`, or
`AISHORTS_PEXELS_URL` / `AISHORTS_PIXABAY_URL` (loopback servers in tests).

Not here: which source a run uses, topping up with illustrations, or credits.txt (stages/broll/stage.py).
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aishorts.ipc.params import BrollParams
from aishorts.ipc.sizes import MiB
from aishorts.stages.broll.visuals import Fetched, UnusableMedia, probe_media
from aishorts.stages.common import http
from aishorts.stages.common.outputs import create, removed_on_failure

API_TIMEOUT_S = 20.0
MAX_ANSWER_BYTES = 8 * MiB
"""A search answer larger than this is not a search answer."""


class StockError(Exception):
    """The API cannot be used for this run (refused the key, unreachable, not JSON); the message says why."""


@dataclass(frozen=True)
class Rendition:
    """One encoding of a hit's video, as the API lists it: where to download it and its frame size."""

    url: str
    width: int
    height: int


@dataclass(frozen=True)
class StockHit:
    """One video the API found: its renditions, its page and its author, for credits."""

    id: str
    page_url: str
    author: str
    author_url: str
    duration_s: float
    renditions: list[Rendition]
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StockApi:
    name: str
    label: str
    key_env: str
    url_env: str
    default_url: str
    licence: str
    search: Callable[[StockApi, str, str, int, str], list[StockHit]]

    def base_url(self) -> str:
        return (os.environ.get(self.url_env) or self.default_url).rstrip("/")

    def key(self) -> str:
        return os.environ.get(self.key_env, "").strip()


# ---------------------------------------------------------------- the two APIs


ORIENTATIONS = {"9:16": "portrait", "16:9": "landscape", "1:1": "square"}
"""Pexels' `orientation` parameter for each aspect."""


def search_pexels(api: StockApi, key: str, query: str, count: int, aspect: str) -> list[StockHit]:
    """Pexels' `/videos/search`: videos[].video_files[] {link, width, height, file_type}, user {name, url}, url."""
    params = {"query": query, "per_page": max(1, min(count, 80)), "orientation": ORIENTATIONS[aspect]}
    answer = get_json(api, f"{api.base_url()}/videos/search?{urllib.parse.urlencode(params)}",
                      {"Authorization": key}, key)
    hits = []
    for video in _list(answer, "videos"):
        files = [Rendition(str(f.get("link") or ""), _int(f.get("width")), _int(f.get("height")))
                 for f in _dicts(video.get("video_files"))
                 if str(f.get("file_type") or "video/mp4").lower() == "video/mp4"]
        user = video.get("user") if isinstance(video.get("user"), dict) else {}
        hits.append(StockHit(
            id=str(video.get("id") or ""), page_url=str(video.get("url") or ""),
            author=str(user.get("name") or "unknown"), author_url=str(user.get("url") or ""),
            duration_s=float(video.get("duration") or 0.0), renditions=[f for f in files if _usable(f)],
            tags=_slug_words(str(video.get("url") or "")),
        ))
    return hits


def search_pixabay(api: StockApi, key: str, query: str, count: int, aspect: str) -> list[StockHit]:
    """Pixabay's `/api/videos/`: hits[].videos.{large,medium,small,tiny} {url, width, height}, user, pageURL, tags."""
    params = {"key": key, "q": query[:100], "per_page": max(3, min(count, 200)), "safesearch": "true"}
    answer = get_json(api, f"{api.base_url()}/api/videos/?{urllib.parse.urlencode(params)}", {}, key)
    hits = []
    for video in _list(answer, "hits"):
        sizes = video.get("videos") if isinstance(video.get("videos"), dict) else {}
        files = [Rendition(str(v.get("url") or ""), _int(v.get("width")), _int(v.get("height")))
                 for v in _dicts(list(sizes.values()))]
        user = str(video.get("user") or "unknown")
        user_id = video.get("user_id")
        hits.append(StockHit(
            id=str(video.get("id") or ""), page_url=str(video.get("pageURL") or ""), author=user,
            author_url=f"https://pixabay.com/users/{user}-{user_id}/" if user_id else "",
            duration_s=float(video.get("duration") or 0.0), renditions=[f for f in files if _usable(f)],
            tags=[t.strip() for t in str(video.get("tags") or "").split(",") if t.strip()],
        ))
    return hits


PEXELS = StockApi("pexels", "Pexels", "PEXELS_API_KEY", "AISHORTS_PEXELS_URL", "https://api.pexels.com",
                  "Pexels License (free to use, attribution appreciated: https://www.pexels.com/license/)",
                  search_pexels)
PIXABAY = StockApi("pixabay", "Pixabay", "PIXABAY_API_KEY", "AISHORTS_PIXABAY_URL", "https://pixabay.com",
                   "Pixabay Content License (free to use, attribution appreciated: https://pixabay.com/service/license-summary/)",
                   search_pixabay)
APIS = {api.name: api for api in (PEXELS, PIXABAY)}


# ---------------------------------------------------------------- asking the API


def get_json(api: StockApi, url: str, headers: dict[str, str], key: str) -> object:
    """The API's JSON answer to a GET; StockError saying why not (the key never appears in it)."""
    _require_http(url, f"{api.url_env} / the {api.label} API")
    shown = f"{api.label} ({urllib.parse.urlsplit(url).netloc})"
    try:
        answer = http.get(url, limit=MAX_ANSWER_BYTES, timeout_s=API_TIMEOUT_S, accept="application/json",
                          headers=headers, follow_redirects=False)
    except http.HttpStatus as exc:
        if 300 <= exc.code < 400:
            raise StockError(f"{shown} answered with a redirect (HTTP {exc.code}); not followed, so the key went"
                             f" nowhere else. Check {api.url_env}") from None
        if exc.code in (401, 403):
            raise StockError(f"{shown} refused the key in {api.key_env} (HTTP {exc.code}); check it") from None
        if exc.code == 429:
            raise StockError(f"{shown} says the key's request limit is reached (HTTP 429); try again later") from None
        raise StockError(f"{shown} answered HTTP {exc.code}") from None
    except http.NoAnswer as exc:
        raise StockError(f"{shown} did not answer ({_redacted(exc.reason, key)})") from None
    except http.TooLarge:
        raise StockError(f"{shown} sent an answer over {MAX_ANSWER_BYTES // MiB} MiB; not a search answer") from None
    try:
        return json.loads(answer.body)
    except ValueError:
        raise StockError(f"{shown} did not answer with JSON") from None


# ---------------------------------------------------------------- choosing and downloading a rendition


def pick_rendition(renditions: list[Rendition], frame: tuple[int, int], max_height: int) -> Rendition | None:
    """The rendition nearest the frame: the frame's orientation first, then no larger than `max_height` where
    one is, then the shorter side closest to the frame's (on a log scale: half as big is as far as twice)."""
    if not renditions:
        return None
    width, height = frame
    wanted = _orientation(width, height)

    def distance(r: Rendition) -> tuple[bool, bool, float]:
        return (_orientation(r.width, r.height) != wanted, r.height > max_height,
                abs(math.log(min(r.width, r.height) / min(width, height))))

    return min(renditions, key=distance)


def download(url: str, target: Path, params: BrollParams) -> Path:
    """`url` saved as a new file at `target`: http(s) only, at most broll.max_filesize_mb, within
    broll.download_timeout_s; UnusableMedia (and nothing left behind) otherwise. No key is sent."""
    try:
        _require_http(url, "the video link")
    except StockError as exc:
        raise UnusableMedia(str(exc)) from None
    cap = params.max_filesize_mb * MiB
    deadline = time.monotonic() + params.download_timeout_s
    request = urllib.request.Request(url, headers={"User-Agent": http.USER_AGENT})
    with removed_on_failure(target), create(target) as out:
        try:
            with urllib.request.urlopen(request, timeout=min(API_TIMEOUT_S, params.download_timeout_s)) as response:
                _require_http(response.geturl(), "the video link's redirect")
                announced = _int(response.headers.get("Content-Length"))
                if announced > cap:
                    raise UnusableMedia(f"{announced // MiB} MiB, larger than broll.max_filesize_mb={params.max_filesize_mb}")
                received = 0
                while block := response.read1(MiB):
                    received += len(block)
                    if received > cap:
                        raise UnusableMedia(f"larger than broll.max_filesize_mb={params.max_filesize_mb}; stopped")
                    if time.monotonic() > deadline:
                        raise UnusableMedia(f"the download took longer than {params.download_timeout_s:g} s and was stopped")
                    out.write(block)
        except StockError as exc:
            raise UnusableMedia(str(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            raise UnusableMedia(f"download failed ({getattr(exc, 'reason', exc)})") from None
    return target


def fetch_hit(api: StockApi, hit: StockHit, out_dir: Path, cid: str, params: BrollParams,
              frame: tuple[int, int]) -> tuple[Fetched, Rendition]:
    """The hit's rendition nearest the frame, downloaded and probed."""
    rendition = pick_rendition(hit.renditions, frame, params.max_height)
    if rendition is None:
        raise UnusableMedia("no MP4 rendition with a size")
    if hit.duration_s > params.max_clip_s:
        raise UnusableMedia(f"{hit.duration_s:g} s, longer than broll.max_clip_s={params.max_clip_s:g}")
    path = download(rendition.url, out_dir / f"{cid}.mp4", params)
    try:
        info = probe_media(path)
    except UnusableMedia:
        path.unlink(missing_ok=True)
        raise
    words = hit.tags or _slug_words(hit.page_url)
    title = " ".join(words[:8]) or f"{api.label} video {hit.id}"
    return Fetched(path, info, title, hit.page_url or rendition.url,
                   description=f"{api.label} video by {hit.author}: {', '.join(words)}", tags=words[:20]), rendition


# ---------------------------------------------------------------- small readers


def _require_http(url: str, what: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StockError(f"{what} is not an http(s) URL ({parts.scheme or 'no scheme'}://...)")


def _redacted(text: str, key: str) -> str:
    return text.replace(key, "***") if key else text


def _list(answer: object, name: str) -> list[dict]:
    if not isinstance(answer, dict) or not isinstance(answer.get(name, []), list):
        raise StockError(f"the answer has no list of {name}")
    return _dicts(answer.get(name, []))


def _dicts(values: object) -> list[dict]:
    return [v for v in values if isinstance(v, dict)] if isinstance(values, list) else []


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0


def _usable(rendition: Rendition) -> bool:
    return rendition.width > 0 and rendition.height > 0 and rendition.url.startswith(("http://", "https://"))


def _orientation(width: int, height: int) -> str:
    ratio = width / height
    return "square" if 0.9 <= ratio <= 1.1 else ("portrait" if ratio < 1 else "landscape")


def _slug_words(url: str) -> list[str]:
    """Pexels' page URLs end in a slug of the video's title (`.../video/waves-on-a-beach-123/`)."""
    slug = urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    return [w for w in slug.split("-") if w.isalpha()]
