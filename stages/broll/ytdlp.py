"""Searching and downloading with yt-dlp, run as a subprocess bounded in time, size, duration and height.

Responsible for: listing a search or playlist (`search_videos`), downloading
one URL within the b-roll caps and probing what arrived (`download`), and
turning yt-dlp's failures into `UnusableMedia` reasons a user can read. The
size cap holds for the bytes really written, not only for the size a server
announces: a download folder that grows past it gets yt-dlp's whole process
group killed, and what it wrote removed. Not responsible for choosing what to
search or which source to use (the broll stage), nor for what a file is
(stages/broll/visuals.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aishorts.ipc.params import BrollParams
from aishorts.ipc.sizes import MiB
from aishorts.stages.broll.visuals import Fetched, UnusableMedia, VisualFacts, last_line, over_caps, probe_media
from aishorts.stages.common.media import ffmpeg_exe
from aishorts.stages.common.outputs import fresh, raise_if_out_of_space

SOCKET_TIMEOUT_S = 15.0
SEARCH_TIMEOUT_S = 60.0
POLL_S = 0.05
"""How often a running yt-dlp is held to its time bound and its download to the size cap."""
WRITE_BLOCK = ["--buffer-size", "128K", "--no-resize-buffer"]
"""yt-dlp writes what it reads a block at a time, and grows its blocks up to 4 MB on a fast link: small fixed
blocks let the size cap stop a download within a block (and a poll) of the cap."""


@dataclass(frozen=True)
class SearchHit:
    url: str
    id: str
    title: str
    duration_s: float | None


def search_videos(target: str, params: BrollParams) -> list[SearchHit]:
    """List a search or playlist with yt-dlp (no download), keeping hits short enough and not live."""
    cmd = [*_ytdlp_base(), "--flat-playlist", "--dump-single-json", "--", target]
    stdout, stderr = _run_bounded(cmd, SEARCH_TIMEOUT_S, f"search {target!r}")
    try:
        listing = json.loads(stdout)
    except json.JSONDecodeError:
        raise UnusableMedia(f"search gave no results ({_ytdlp_error(stderr + stdout)})") from None
    return parse_search(listing, params.max_clip_s)


def parse_search(listing: dict, max_clip_s: float) -> list[SearchHit]:
    """Hits from a yt-dlp flat listing, dropping live streams and ones known to be longer than max_clip_s."""
    hits: list[SearchHit] = []
    for entry in listing.get("entries") or []:
        url = entry.get("url") or entry.get("webpage_url")
        duration = entry.get("duration")
        if not url or entry.get("live_status") in ("is_live", "is_upcoming"):
            continue
        if duration is not None and float(duration) > max_clip_s:
            continue
        hits.append(SearchHit(url, str(entry.get("id") or url), entry.get("title") or "", duration))
    return hits


INFO_TEMPLATE = "after_move:%(.{id,title,description,tags,duration,webpage_url,extractor,filepath})j"


def download(url: str, out_dir: Path, cid: str, params: BrollParams) -> Fetched:
    """Download one URL with yt-dlp within the caps, probe it, and move it to `out_dir/<cid>.<ext>`."""
    work = fresh(out_dir / f".download-{cid}")
    work.mkdir(parents=True)
    try:
        stdout, stderr = _run_bounded(_download_cmd(url, work, params), params.download_timeout_s, "download",
                                      stop_when=_past_size_cap(work, params), writes_to=work)
        info = _read_info(work / "info.jsonl", stdout + stderr, params)
        media = _downloaded_file(work, info)
        probe = probe_media(media)
        if reason := over_caps(probe, params):
            raise UnusableMedia(reason)
        return _keep_download(work, media, out_dir, cid, probe, info, url)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _ytdlp_base() -> list[str]:
    return [
        sys.executable, "-m", "yt_dlp", "--ignore-config", "--no-cache-dir", "--no-warnings",
        "--socket-timeout", f"{SOCKET_TIMEOUT_S:g}", "--retries", "1", "--extractor-retries", "1",
    ]


def _download_cmd(url: str, work: Path, params: BrollParams) -> list[str]:
    return [
        *_ytdlp_base(), "--no-playlist", "--no-progress", "--no-mtime", "--no-part",
        "--max-filesize", f"{params.max_filesize_mb}M", *WRITE_BLOCK,
        "--match-filter", f"duration<=?{params.max_clip_s:g} & !is_live",
        "-f", format_selector(params.max_height, params.max_filesize_mb),
        "--write-thumbnail", "--ffmpeg-location", ffmpeg_exe(),
        "-P", str(work), "-o", "media.%(ext)s", "-o", "thumbnail:thumb.%(ext)s",
        "--print-to-file", INFO_TEMPLATE, str(work / "info.jsonl"),
        "--", url,
    ]


def format_selector(max_height: int, max_filesize_mb: int) -> str:
    """Best single file no taller than max_height and (when known) no bigger than the cap, mp4 first.

    Video-only formats are fine for b-roll (no audio is used) and need no merging.
    """
    caps = f"[height<=?{max_height}][filesize<=?{max_filesize_mb}M][filesize_approx<=?{max_filesize_mb}M]"
    return f"bv*{caps}[ext=mp4]/b{caps}[ext=mp4]/bv*{caps}/b{caps}"


def _run_bounded(
    cmd: list[str], timeout_s: float, what: str,
    stop_when: Callable[[], str | None] | None = None, writes_to: Path | None = None,
) -> tuple[str, str]:
    """Run a command with a hard wall-clock bound, returning (stdout, stderr).

    Every POLL_S, `stop_when` may give a reason to stop it sooner. Stopped, its
    whole process group is killed and the reason raised as UnusableMedia. A
    failure on a full disk where it `writes_to` is an OSError(ENOSPC).
    """
    deadline = time.monotonic() + timeout_s
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True, errors="replace", start_new_session=True,
    ) as proc:
        while True:
            try:
                stdout, stderr = proc.communicate(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                if reason := _reason_to_stop(deadline, timeout_s, what, stop_when):
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.communicate()
                    raise UnusableMedia(reason) from None
    if proc.returncode != 0:
        if writes_to is not None:
            raise_if_out_of_space(stderr + stdout, writes_to)
        raise UnusableMedia(_ytdlp_error(stderr + stdout))
    return stdout, stderr


def _reason_to_stop(deadline: float, timeout_s: float, what: str,
                    stop_when: Callable[[], str | None] | None) -> str | None:
    if time.monotonic() >= deadline:
        return f"{what} took longer than {timeout_s:g} s and was stopped"
    return stop_when() if stop_when else None


def _past_size_cap(work: Path, params: BrollParams) -> Callable[[], str | None]:
    """Why to stop a download now: its folder holds more than the size cap, whatever the server announced."""
    cap = params.max_filesize_mb * MiB

    def check() -> str | None:
        if _bytes_under(work) <= cap:
            return None
        return f"{_too_big(params)}: stopped once that much had arrived, whatever the server announced"

    return check


def _bytes_under(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):  # a file renamed or removed between listing and sizing
            total += path.stat().st_size if path.is_file() else 0
    return total


def _too_big(params: BrollParams) -> str:
    return f"larger than broll.max_filesize_mb={params.max_filesize_mb}"


def _ytdlp_error(output: str) -> str:
    errors = [line.removeprefix("ERROR:").strip() for line in output.splitlines() if line.startswith("ERROR:")]
    message = errors[-1] if errors else last_line(output)
    return re.sub(r" \(caused by .*\)$", "", message)[:300]


def _read_info(path: Path, output: str, params: BrollParams) -> dict:
    """yt-dlp's metadata for the finished download, or why there was none."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    if lines:
        return json.loads(lines[-1])
    if "larger than max-filesize" in output:
        raise UnusableMedia(_too_big(params))
    if "does not pass filter" in output:
        raise UnusableMedia(f"longer than broll.max_clip_s={params.max_clip_s:g} or a live stream")
    raise UnusableMedia(f"yt-dlp downloaded nothing ({_ytdlp_error(output)})")


def _downloaded_file(work: Path, info: dict) -> Path:
    path = Path(info.get("filepath") or "")
    if not path.is_file() or work.resolve() not in path.resolve().parents:
        raise UnusableMedia("yt-dlp reported a download that is not in its folder")
    return path


def _keep_download(work: Path, media: Path, out_dir: Path, cid: str, probe: VisualFacts, info: dict, url: str) -> Fetched:
    target = out_dir / f"{cid}{media.suffix.lower()}"
    os.replace(media, fresh(target))
    thumbs = sorted(work.glob("thumb.*"))
    thumbnail = None
    if thumbs:
        thumbnail = out_dir / f"{cid}.thumb{thumbs[0].suffix.lower()}"
        os.replace(thumbs[0], fresh(thumbnail))
    return Fetched(
        path=target,
        info=probe,
        title=info.get("title") or info.get("id") or url,
        origin=info.get("webpage_url") or url,
        description=(info.get("description") or "")[:2000],
        tags=[str(t) for t in info.get("tags") or []][:30],
        thumbnail=thumbnail,
    )
