"""B-roll stage: gather candidate visuals (clips and stills) for a script into the run directory.

Sources (`BrollParams.source`): a YouTube search per b-roll query and a list of
URLs, both through yt-dlp run as a subprocess bounded in time, size, duration
and height; a local folder of the user's clips and stills; and the built-in
library of scikit-image stills. `auto` picks the local folder or the URL list
when configured, else YouTube when it answers (falling back to the built-in
stills if nothing usable comes of it), else the built-in stills. Every file is probed with
ffmpeg (duration, size, a decodable frame) before it becomes a `Candidate`;
failures are recorded in `Candidates.skipped`, and only an empty result is an
error. Payloads are copied into the run directory. This module does not judge
which visual fits which sentence (that is `stages.match`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ipc.artifacts import Candidate, Candidates, Script, SkippedSource
from ipc.params import BrollParams
from stages.harness import StageContext, StageError, stage_main
from stages.media import ffmpeg_exe

Params = BrollParams

YOUTUBE_HOST = "www.youtube.com"
YOUTUBE_PORT = 443
REACH_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 15.0
SEARCH_TIMEOUT_S = 60.0
PROBE_TIMEOUT_S = 60.0
SEARCH_OVERFETCH = 3
"""Search hits asked for per wanted clip: some are too long, live, or fail to download."""

IMAGE_DEMUXERS = ("image2",)
FfmpegRunner = Callable[[list[str], float], "subprocess.CompletedProcess[str]"]


class UnusableMedia(Exception):
    """A file or URL that cannot become a candidate; the message is the recorded reason."""


@dataclass(frozen=True)
class VisualFacts:
    media: str  # "video" or "still"
    width: int
    height: int
    duration_s: float | None


@dataclass
class Fetched:
    """A payload on disk with what is known about it, before it becomes a `Candidate`."""

    path: Path
    info: VisualFacts
    title: str
    origin: str
    description: str = ""
    tags: list[str] = field(default_factory=list)
    thumbnail: Path | None = None


@dataclass(frozen=True)
class SearchHit:
    url: str
    id: str
    title: str
    duration_s: float | None


# ---------------------------------------------------------------- the stage


def run(ctx: StageContext, params: BrollParams, *, script: Script) -> Candidates:
    source, reason = choose_source(params)
    ctx.progress(f"b-roll source: {source} ({reason})", 0.0)
    queries = search_queries(script)
    items, skipped = _collect(ctx, source, params, queries)
    if not items and params.source == "auto" and source == "youtube":
        reason += f"; no usable {source} media ({len(skipped)} skipped), so fell back to the built-in stills"
        source = "builtin"
        more_items, more_skipped = _collect(ctx, source, params, queries)
        items, skipped = more_items, skipped + more_skipped
    if not items:
        raise StageError(_nothing_usable_message(source, params, skipped))
    ctx.progress(f"{len(items)} candidates, {len(skipped)} skipped", 1.0)
    return Candidates(source=source, source_reason=reason, items=items, skipped=skipped)


def _collect(
    ctx: StageContext, source: str, params: BrollParams, queries: list[str]
) -> tuple[list[Candidate], list[SkippedSource]]:
    if source == "builtin":
        return collect_builtin(ctx, params, queries)
    if source == "local":
        return collect_local(ctx, params)
    if source == "urls":
        return collect_urls(ctx, params)
    return collect_youtube(ctx, params, queries, youtube_search_target)


def _nothing_usable_message(source: str, params: BrollParams, skipped: list[SkippedSource]) -> str:
    where = {
        "local": f"the local folder {params.local_dir}",
        "urls": "the configured URLs",
        "youtube": "the YouTube search",
        "builtin": "the built-in stills library",
    }[source]
    details = "; ".join(f"{s.ref}: {s.reason}" for s in skipped[:5]) or "it held no files"
    return (
        f"no usable b-roll from {where} ({details}). Add clips or stills that ffmpeg can read, "
        "or pick another source with broll.source (local, urls, youtube, builtin)"
    )


def choose_source(params: BrollParams, reachable: Callable[[], bool] | None = None) -> tuple[str, str]:
    """The source to use and why; `auto` prefers the user's own media, then YouTube, then built-ins."""
    if params.source != "auto":
        return params.source, f"broll.source={params.source} was asked for"
    if params.local_dir:
        return "local", f"a local folder is configured ({params.local_dir})"
    if params.urls:
        return "urls", f"{len(params.urls)} URL(s) are configured"
    where = f"{YOUTUBE_HOST}:{YOUTUBE_PORT}"
    if (reachable or youtube_reachable)():
        return "youtube", f"{where} answered within {REACH_TIMEOUT_S:g} s"
    return "builtin", f"{where} did not answer within {REACH_TIMEOUT_S:g} s (offline?), so the built-in stills"


def youtube_reachable(host: str | None = None, port: int | None = None, timeout_s: float = REACH_TIMEOUT_S) -> bool:
    """Whether a TCP connection to host:port (YouTube by default) opens within `timeout_s`, name lookup included."""
    host, port = host or YOUTUBE_HOST, port or YOUTUBE_PORT
    result: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                result.append(True)
        except OSError:
            result.append(False)

    # getaddrinfo ignores socket timeouts, so the whole attempt runs in a thread we stop waiting for
    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout_s)
    return bool(result and result[0])


def search_queries(script: Script) -> list[str]:
    """The script's b-roll queries without repeats; its sentences (shortened) when it has none."""
    queries = _unique(q.strip() for q in script.broll_queries if q.strip())
    if queries:
        return queries
    return _unique(" ".join(s.split()[:8]) for s in script.sentences)


def _unique(values: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        seen.setdefault(value, None)
    return list(seen)


def _candidate(ctx: StageContext, cid: str, source: str, query: str, fetched: Fetched) -> Candidate:
    return Candidate(
        id=cid,
        media=fetched.info.media,  # type: ignore[arg-type]
        path=ctx.rel(fetched.path),
        title=fetched.title,
        description=fetched.description,
        tags=fetched.tags,
        query=query,
        duration_s=fetched.info.duration_s,
        width=fetched.info.width,
        height=fetched.info.height,
        source=source,
        origin=fetched.origin,
        thumbnail=ctx.rel(fetched.thumbnail) if fetched.thumbnail else None,
    )


# ---------------------------------------------------------------- probing with ffmpeg


def probe_media(path: Path) -> VisualFacts:
    """Read a file's stream facts with `ffmpeg -i` and decode one frame; raise UnusableMedia if unusable."""
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path),
        "-map", "0:v:0", "-frames:v", "1", "-f", "null", "-",
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UnusableMedia(f"ffmpeg could not read it within {PROBE_TIMEOUT_S:g} s") from None
    return parse_probe(done.stderr, done.returncode)


def parse_probe(stderr: str, returncode: int) -> VisualFacts:
    """Turn `ffmpeg -i ... -frames:v 1 -f null -` stderr into VisualFacts, or the reason it is unusable."""
    demuxer = re.search(r"^Input #0, (.+?), from ", stderr, re.MULTILINE)
    if demuxer is None:
        raise UnusableMedia(f"not a media file ffmpeg can read ({_last_line(stderr)})")
    video = _video_stream_line(stderr)
    if video is None:
        raise UnusableMedia("has no video or image stream")
    if returncode != 0:
        raise UnusableMedia(f"ffmpeg could not decode a frame ({_last_line(stderr)})")
    size = re.search(r"[ ,](\d{2,5})x(\d{2,5})\b", video)
    if size is None:
        raise UnusableMedia("ffmpeg reported no frame size")
    width, height = int(size.group(1)), int(size.group(2))
    if re.search(r"rotation of -?(90|270)\.", stderr):
        width, height = height, width
    duration = _duration(stderr)
    kind = demuxer.group(1)
    still = kind in IMAGE_DEMUXERS or kind.endswith("_pipe") or duration is None or duration <= 0.05
    return VisualFacts("still" if still else "video", width, height, None if still else duration)


def _video_stream_line(stderr: str) -> str | None:
    for line in stderr.splitlines():
        if re.match(r"\s*Stream #0:\d+.*: Video: ", line) and "(attached pic)" not in line:
            return line
    return None


def _duration(stderr: str) -> float | None:
    match = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", stderr)
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def over_caps(info: VisualFacts, params: BrollParams) -> str | None:
    """Why a downloaded file breaks the configured caps, or None when it fits."""
    if info.duration_s is not None and info.duration_s > params.max_clip_s + 0.5:
        return f"{info.duration_s:.1f} s is longer than broll.max_clip_s={params.max_clip_s:g}"
    if info.media == "video" and info.height > params.max_height:
        return f"{info.height} px high is taller than broll.max_height={params.max_height}"
    return None


# ---------------------------------------------------------------- builtin


def collect_builtin(
    ctx: StageContext, params: BrollParams, queries: list[str]
) -> tuple[list[Candidate], list[SkippedSource]]:
    """Write the built-in stills (the ones sharing most words with the queries first) into the run dir."""
    from stages.builtin_stills import LIBRARY, write_png

    items: list[Candidate] = []
    skipped: list[SkippedSource] = []
    for still in rank_builtin(LIBRARY, queries)[: params.max_items]:
        try:
            path = write_png(still, ctx.out_dir)
            info = probe_media(path)
        except (ModuleNotFoundError, OSError, ValueError, UnusableMedia) as exc:
            skipped.append(SkippedSource(f"builtin:{still.name}", f"not available offline ({exc})"))
            continue
        fetched = Fetched(path, info, still.title, f"skimage.data.{still.name}", still.description, list(still.tags))
        items.append(_candidate(ctx, f"builtin-{still.name}", "builtin", "", fetched))
    return items, skipped


def rank_builtin(library, queries: list[str]) -> list:
    """Library order, with the stills that share most words with the queries first."""
    wanted = _words(" ".join(queries))

    def overlap(still) -> int:
        return len(wanted & _words(" ".join([still.title, still.description, *still.tags])))

    return sorted(library, key=lambda still: -overlap(still))


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2}


# ---------------------------------------------------------------- local folder


def collect_local(ctx: StageContext, params: BrollParams) -> tuple[list[Candidate], list[SkippedSource]]:
    """Probe every file under `local_dir`; copy the usable ones (up to max_items) into the run dir."""
    if not params.local_dir:
        raise StageError("broll.source=local needs broll.local_dir, the folder holding your clips and stills")
    root = Path(params.local_dir).expanduser()
    if not root.is_dir():
        raise StageError(f"broll.local_dir {root} is not a folder")
    items: list[Candidate] = []
    skipped: list[SkippedSource] = []
    files = local_files(root)
    for index, path in enumerate(files):
        if len(items) >= params.max_items:
            break
        ctx.progress(f"probing {path.name}", index / max(len(files), 1))
        try:
            info = probe_media(path)
        except UnusableMedia as exc:
            skipped.append(SkippedSource(str(path), str(exc)))
            continue
        cid = _unique_id(f"local-{_slug(path.relative_to(root).with_suffix('').as_posix())}", items)
        copy = _link_or_copy(path, ctx.out_dir / f"{cid}{path.suffix.lower()}")
        fetched = Fetched(copy, info, _humanise(path.stem), str(path), tags=_path_tags(path.relative_to(root)))
        items.append(_candidate(ctx, cid, "local", "", fetched))
    return items, skipped


def local_files(root: Path) -> list[Path]:
    """Every regular, non-hidden file under `root`, in a stable order."""
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def _link_or_copy(source: Path, target: Path) -> Path:
    """A hard link when source and run dir share a filesystem (no second copy of big clips), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "file"


def _unique_id(base: str, items: list[Candidate]) -> str:
    taken = {item.id for item in items}
    cid, n = base, 2
    while cid in taken:
        cid, n = f"{base}-{n}", n + 1
    return cid


def _humanise(stem: str) -> str:
    return re.sub(r"[_\-.]+", " ", stem).strip() or stem


def _path_tags(relative: Path) -> list[str]:
    words = re.findall(r"[A-Za-z]+", " ".join(relative.with_suffix("").parts))
    return _unique(w.lower() for w in words if len(w) > 2)


# ---------------------------------------------------------------- yt-dlp: URLs and YouTube


def collect_urls(ctx: StageContext, params: BrollParams) -> tuple[list[Candidate], list[SkippedSource]]:
    """Download each configured URL (up to max_items) with yt-dlp; failures are recorded, not fatal."""
    if not params.urls:
        raise StageError("broll.source=urls needs broll.urls, a list of video page or file URLs")
    items: list[Candidate] = []
    skipped: list[SkippedSource] = []
    for index, url in enumerate(_unique(params.urls)):
        if len(items) >= params.max_items:
            break
        ctx.progress(f"downloading {url}", index / len(params.urls))
        cid = f"url-{index + 1}"
        try:
            fetched = download(url, ctx.out_dir, cid, params)
        except UnusableMedia as exc:
            skipped.append(SkippedSource(url, str(exc)))
            continue
        items.append(_candidate(ctx, cid, "urls", "", fetched))
    return items, skipped


def youtube_search_target(query: str, count: int) -> str:
    """yt-dlp's search pseudo-URL: the first `count` YouTube results for `query`."""
    return f"ytsearch{count}:{query}"


def collect_youtube(
    ctx: StageContext,
    params: BrollParams,
    queries: list[str],
    search_target: Callable[[str, int], str] = youtube_search_target,
) -> tuple[list[Candidate], list[SkippedSource]]:
    """Search each query, download up to per_query fitting hits each, up to max_items in all.

    `search_target` turns a query into what yt-dlp lists; it is YouTube search in
    use, and any playlist URL yt-dlp understands (a loopback RSS feed in tests).
    """
    items: list[Candidate] = []
    skipped: list[SkippedSource] = []
    seen: set[str] = set()
    for q_index, query in enumerate(queries):
        if len(items) >= params.max_items:
            break
        ctx.progress(f"searching: {query}", q_index / max(len(queries), 1))
        try:
            hits = search_videos(search_target(query, params.per_query * SEARCH_OVERFETCH), params)
        except UnusableMedia as exc:
            skipped.append(SkippedSource(f"search:{query}", str(exc)))
            continue
        found = 0
        for hit in hits:
            if found >= params.per_query or len(items) >= params.max_items:
                break
            if hit.id in seen:
                continue
            seen.add(hit.id)
            cid = f"yt-{_safe_id(hit.id)}"
            try:
                fetched = download(hit.url, ctx.out_dir, cid, params)
            except UnusableMedia as exc:
                skipped.append(SkippedSource(hit.url, str(exc)))
                continue
            items.append(_candidate(ctx, cid, "youtube", query, fetched))
            found += 1
    return items, skipped


def _safe_id(raw: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", raw).strip("-")[:48] or "video"


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
    work = out_dir / f".download-{cid}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        stdout, stderr = _run_bounded(_download_cmd(url, work, params), params.download_timeout_s, "download")
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
        "--max-filesize", f"{params.max_filesize_mb}M",
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


def _run_bounded(cmd: list[str], timeout_s: float, what: str) -> tuple[str, str]:
    """Run a command with a hard wall-clock bound, returning (stdout, stderr); on timeout kill its process group."""
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True, errors="replace", start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise UnusableMedia(f"{what} took longer than {timeout_s:g} s and was stopped") from None
    if proc.returncode != 0:
        raise UnusableMedia(_ytdlp_error(stderr + stdout))
    return stdout, stderr


def _ytdlp_error(output: str) -> str:
    errors = [line.removeprefix("ERROR:").strip() for line in output.splitlines() if line.startswith("ERROR:")]
    message = errors[-1] if errors else _last_line(output)
    return re.sub(r" \(caused by .*\)$", "", message)[:300]


def _read_info(path: Path, output: str, params: BrollParams) -> dict:
    """yt-dlp's metadata for the finished download, or why there was none."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    if lines:
        return json.loads(lines[-1])
    if "larger than max-filesize" in output:
        raise UnusableMedia(f"larger than broll.max_filesize_mb={params.max_filesize_mb}")
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
    shutil.move(media, target)
    thumbs = sorted(work.glob("thumb.*"))
    thumbnail = None
    if thumbs:
        thumbnail = out_dir / f"{cid}.thumb{thumbs[0].suffix.lower()}"
        shutil.move(thumbs[0], thumbnail)
    return Fetched(
        path=target,
        info=probe,
        title=info.get("title") or info.get("id") or url,
        origin=info.get("webpage_url") or url,
        description=(info.get("description") or "")[:2000],
        tags=[str(t) for t in info.get("tags") or []][:30],
        thumbnail=thumbnail,
    )


if __name__ == "__main__":
    stage_main(run, Params)
