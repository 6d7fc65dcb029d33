"""B-roll stage: gather candidate visuals (clips and stills) for a script into the run directory.

Sources (`BrollParams.source`): a YouTube search per b-roll query and a list of
URLs, both through yt-dlp run as a subprocess bounded in time, size, duration
and height (`stages.broll.ytdlp`); a local folder of the user's clips and stills; the
built-in illustrated library (`builtin`: a scene composed for each sentence
from OpenMoji and, when installed, Openclipart and Tux Paint;
stages/broll/illustrations*.py), with `credits.txt` beside the scenes;
scikit-image's sample photographs (`stills`); and Pexels' and Pixabay's stock
videos (`pexels`, `pixabay`: a search per b-roll query with the user's
PEXELS_API_KEY or PIXABAY_API_KEY, stages/broll/stock.py; without the key, the
illustrated library, said in the log), credited in `credits.txt`. Each source is registered in
`BACKENDS`. `auto` picks the local folder or the URL list when configured, else
Pexels or Pixabay when its key is set (in that order), else
YouTube when it answers (falling back to the built-in library if nothing usable
comes of it), else the built-in library. When the local folder, the URLs,
YouTube or a stock search give fewer visuals than the script has sentences, illustrated scenes
fill in for the sentences their visuals describe worst. Every file is probed with ffmpeg
(duration, size, a decodable frame; `stages.broll.visuals`) before it becomes a
`Candidate`; failures are recorded in `Candidates.skipped`, and only an empty
result is an error. Payloads are copied into the run directory, each as a new
file (stages/common/outputs.py: never through a link planted at its name). This
module does not judge which visual fits which sentence (that is `stages.match`).
"""

from __future__ import annotations

import errno
import re
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from aishorts.ipc.artifacts import Candidate, Candidates, Credit, Script, SkippedSource
from aishorts.ipc.params import FRAME_SIZES, BrollParams
from aishorts.ipc.text import slug
from aishorts.stages.broll.stock import APIS as STOCK_APIS, StockError, fetch_hit
from aishorts.stages.broll.visuals import Fetched, UnusableMedia, probe_media
from aishorts.stages.broll.ytdlp import download, search_videos
from aishorts.stages.common.context import StageContext, StageError
from aishorts.stages.common.outputs import copy_file, write_text
from aishorts.stages.harness import stage_main

Params = BrollParams

YOUTUBE_HOST = "www.youtube.com"
YOUTUBE_PORT = 443
REACH_TIMEOUT_S = 2.0
SEARCH_OVERFETCH = 3
"""Search hits asked for per wanted clip: some are too long, live, or fail to download."""

Collected = tuple[list[Candidate], list[SkippedSource]]
T = TypeVar("T")
CREDITS_FILE = "credits.txt"
"""Written beside the illustrated scenes: every illustration in them, its source and licence."""


# ---------------------------------------------------------------- the stage


def run(ctx: StageContext, params: BrollParams, *, script: Script) -> Candidates:
    source, reason = choose_source(params)
    if source != params.source and params.source in STOCK_APIS:
        ctx.log(f"b-roll: {reason}")
    ctx.progress(f"b-roll source: {source} ({reason})", 0.0)
    items, skipped = BACKENDS[source].collect(ctx, params, script)
    if not items and params.source == "auto" and source == "youtube":
        reason += f"; no usable {source} media ({len(skipped)} skipped), so fell back to the built-in stills"
        source = "builtin"
        more_items, more_skipped = BACKENDS[source].collect(ctx, params, script)
        items, skipped = more_items, skipped + more_skipped
    if not items and source in ("urls", *STOCK_APIS) and params.fill_gaps:
        items, reason = _illustrated_instead(ctx, params, script, skipped, reason)
    if not items:
        raise StageError(_nothing_usable_message(source, params, skipped))
    if params.fill_gaps and source in GAP_FILLED and len(items) < min(len(script.sentences), params.max_items):
        filled, note = fill_gaps(ctx, params, script, items)
        items, reason = items + filled, reason + note
    if source in STOCK_APIS:
        write_text(ctx.out_dir / CREDITS_FILE, credits_text(items))
    ctx.progress(f"{len(items)} candidates, {len(skipped)} skipped", 1.0)
    return Candidates(source=source, source_reason=reason, items=items, skipped=skipped)


def _illustrated_instead(ctx: StageContext, params: BrollParams, script: Script, skipped: list[SkippedSource],
                         reason: str) -> tuple[list[Candidate], str]:
    """Every URL or search failed: illustrated scenes for the sentences instead, as gaps are filled; the failures
    are named."""
    failed = "; ".join(f"{s.ref}: {s.reason}" for s in skipped[:5]) + ("; ..." if len(skipped) > 5 else "")
    failed = failed or "nothing found"
    what = "every URL failed" if params.source == "urls" else f"no usable {params.source} video"
    ctx.progress(f"{what.replace('URL', 'b-roll URL')} ({failed}); illustrated scenes instead", None)
    ctx.log(f"{what.replace('URL', 'b-roll URL')}: {failed}")
    items = _illustrated_candidates(ctx, script.sentences[: params.max_items], script, params.aspect)
    return items, f"{reason}; {what} ({failed}), so {len(items)} illustrated scenes stand in"


def _nothing_usable_message(source: str, params: BrollParams, skipped: list[SkippedSource]) -> str:
    details = "; ".join(f"{s.ref}: {s.reason}" for s in skipped[:5]) or "it held no files"
    return (
        f"no usable b-roll from {BACKENDS[source].where(params)} ({details}). Add clips or stills that ffmpeg can"
        f" read, or pick another source with broll.source ({', '.join(BACKENDS)})"
    )


def choose_source(params: BrollParams, reachable: Callable[[], bool] | None = None) -> tuple[str, str]:
    """The source to use and why; `auto` prefers the user's own media, then the stock site whose key is set, then
    YouTube, then built-ins."""
    if params.source in STOCK_APIS and not STOCK_APIS[params.source].key():
        api = STOCK_APIS[params.source]
        return "builtin", (f"broll.source={params.source} was asked for, but {api.key_env} is not set (get a free key"
                           f" from {api.label}), so the built-in illustrated library")
    if params.source != "auto":
        return params.source, f"broll.source={params.source} was asked for"
    if params.local_dir:
        return "local", f"a local folder is configured ({params.local_dir})"
    if params.urls:
        return "urls", f"{len(params.urls)} URL(s) are configured"
    for api in STOCK_APIS.values():  # the user brought a stock-footage key: their stock videos
        if api.key():
            return api.name, f"{api.key_env} is set, so {api.label}'s stock videos"
    where = f"{YOUTUBE_HOST}:{YOUTUBE_PORT}"
    if (reachable or youtube_reachable)():
        return "youtube", f"{where} answered within {REACH_TIMEOUT_S:g} s"
    return "builtin", f"{where} did not answer within {REACH_TIMEOUT_S:g} s (offline?), so the built-in illustrated library"


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


# ---------------------------------------------------------------- builtin: the illustrated library


def collect_illustrated(ctx: StageContext, params: BrollParams, script: Script) -> Collected:
    """One composed illustration per sentence, up to max_items; credits.txt beside them.

    The b-roll queries are not drawn on their own: a phrase without its
    sentence finds a vampire for "blood" and a mermaid for "sea water".
    """
    texts = _unique(script.sentences)[: params.max_items]
    return _illustrated_candidates(ctx, texts, script, params.aspect), []


def _illustrated_candidates(ctx: StageContext, texts: list[str], script: Script, aspect: str) -> list[Candidate]:
    from aishorts.stages.broll.illustrations import OPTIONAL_INSTALL, missing_optional_sources
    from aishorts.stages.broll.illustrations_scenes import credits_text, illustrate

    missing = missing_optional_sources()
    if missing:
        ctx.log(f"illustrated library without {' and '.join(missing)}; add more pictures with `{OPTIONAL_INSTALL}`")
    topic = [script.title, *script.sentences]
    with ctx.phase("illustrate"):
        scenes = illustrate(texts, topic, ctx.out_dir, progress=ctx.progress, aspect=aspect)
    write_text(ctx.out_dir / CREDITS_FILE, credits_text([(scene.id, scene.items) for scene in scenes]))
    items = []
    for scene in scenes:
        fetched = Fetched(
            scene.path, probe_media(scene.path), scene.title,
            f"illustrated for: {scene.text} ({', '.join(i.id for i in scene.items)})", scene.description, scene.tags,
        )
        candidate = _candidate(ctx, scene.id, "builtin", "", fetched)
        candidate.credits = [Credit(i.title, i.source, Path(i.path).name, i.licence, i.attribution) for i in scene.items]
        items.append(candidate)
    return items


def fill_gaps(ctx: StageContext, params: BrollParams, script: Script, items: list[Candidate]) -> tuple[list[Candidate], str]:
    """Illustrated scenes for the sentences the other source's visuals describe worst, up to one per sentence.

    The user's own media and downloads come first; a short list of them would
    otherwise be shown again and again under sentences they do not fit.
    """
    from aishorts.stages.common.text_embedding import embed_texts

    wanted = min(len(script.sentences), params.max_items) - len(items)
    have = embed_texts([". ".join([c.title, c.description[:300], ", ".join(c.tags[:12])]) for c in items])
    fit = (embed_texts(script.sentences) @ have.T).max(axis=1)
    worst = sorted(sorted(range(len(script.sentences)), key=lambda i: fit[i])[:wanted])
    try:
        filled = _illustrated_candidates(ctx, [script.sentences[i] for i in worst], script, params.aspect)
    except StageError as exc:
        ctx.log(f"no illustrated scenes to fill gaps: {exc}")
        return [], f"; the illustrated library could not fill gaps ({exc})"
    return filled, f"; {len(filled)} illustrated scenes fill the sentences its visuals fit least"


# ---------------------------------------------------------------- stills: scikit-image's sample photographs


def collect_stills(ctx: StageContext, params: BrollParams, queries: list[str]) -> Collected:
    """Write scikit-image's sample photos (the ones sharing most words with the queries first) into the run dir."""
    from aishorts.stages.broll.builtin_stills import LIBRARY, write_png

    items: list[Candidate] = []
    skipped: list[SkippedSource] = []
    for still in rank_builtin(LIBRARY, queries)[: params.max_items]:
        try:
            path = write_png(still, ctx.out_dir)
            info = probe_media(path)
        except (ModuleNotFoundError, OSError, ValueError, UnusableMedia) as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise  # the disk, not the still: the harness says so
            skipped.append(SkippedSource(f"builtin:{still.name}", f"not available offline ({exc})"))
            continue
        fetched = Fetched(path, info, still.title, f"skimage.data.{still.name}", still.description, list(still.tags))
        items.append(_candidate(ctx, f"builtin-{still.name}", "stills", "", fetched))
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


def collect_local(ctx: StageContext, params: BrollParams, queries: list[str]) -> Collected:
    """Probe every file under `local_dir`; copy the usable ones (up to max_items) into the run dir."""
    if not params.local_dir:
        raise StageError("broll.source=local needs broll.local_dir, the folder holding your clips and stills")
    root = Path(params.local_dir).expanduser()
    if not root.is_dir():
        raise StageError(f"broll.local_dir {root} is not a folder")
    items: list[Candidate] = []
    skipped: list[SkippedSource] = []
    for path in _until_full(ctx, params, items, local_files(root), lambda path: f"probing {path.name}"):
        try:
            info = probe_media(path)
        except UnusableMedia as exc:
            skipped.append(SkippedSource(str(path), str(exc)))
            continue
        cid = _unique_id(f"local-{slug(path.relative_to(root).with_suffix('').as_posix(), 48, 'file')}", items)
        copy = copy_file(path, ctx.out_dir / f"{cid}{path.suffix.lower()}")  # a link would share the user's file
        fetched = Fetched(copy, info, _humanise(path.stem), str(path), tags=_path_tags(path.relative_to(root)))
        items.append(_candidate(ctx, cid, "local", "", fetched))
    return items, skipped


def local_files(root: Path) -> list[Path]:
    """Every regular, non-hidden file under `root`, in a stable order."""
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )



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


# ---------------------------------------------------------------- URLs and YouTube, through yt-dlp


def collect_urls(ctx: StageContext, params: BrollParams, queries: list[str]) -> Collected:
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
    search_target: Callable[[str, int], str] | None = None,
) -> Collected:
    """Search each query, download up to per_query fitting hits each, up to max_items in all.

    `search_target` turns a query into what yt-dlp lists; it is YouTube search
    (`youtube_search_target`) by default, and any playlist URL yt-dlp
    understands (a loopback RSS feed in tests).
    """
    search_target = search_target or youtube_search_target

    def search(query: str) -> list:
        return search_videos(search_target(query, params.per_query * SEARCH_OVERFETCH), params)

    def fetch(query: str, hit) -> Candidate:
        cid = f"yt-{_safe_id(hit.id)}"
        try:
            return _candidate(ctx, cid, "youtube", query, download(hit.url, ctx.out_dir, cid, params))
        except UnusableMedia as exc:
            raise UnusableMedia(str(exc), hit.url) from None

    return _per_query(ctx, params, queries, "searching", search, fetch)


def _per_query(ctx: StageContext, params: BrollParams, queries: list[str], label: str,
               search: Callable[[str], list], fetch: Callable[[str, object], Candidate]) -> Collected:
    """For each query, `search` it and `fetch` up to per_query new hits, up to max_items in all; a failed search
    (UnusableMedia naming the query) or download (UnusableMedia naming the address) is recorded and passed over."""
    items: list[Candidate] = []
    skipped: list[SkippedSource] = []
    seen: set[str] = set()
    for query in _until_full(ctx, params, items, queries, lambda query: f"{label}: {query}"):
        try:
            hits = search(query)
        except UnusableMedia as exc:
            skipped.append(SkippedSource(exc.where or f"search:{query}", str(exc)))
            continue
        found = 0
        for hit in hits:
            if found >= params.per_query or len(items) >= params.max_items:
                break
            if hit.id in seen:
                continue
            seen.add(hit.id)
            try:
                items.append(fetch(query, hit))
            except UnusableMedia as exc:
                skipped.append(SkippedSource(exc.where or str(hit.id), str(exc)))
                continue
            found += 1
    return items, skipped


def _until_full(ctx: StageContext, params: BrollParams, items: list[Candidate], things: list[T],
                describe: Callable[[T], str]) -> Iterator[T]:
    """Each of `things` in turn, its progress reported as `describe(thing)`, until `items` holds max_items."""
    for index, thing in enumerate(things):
        if len(items) >= params.max_items:
            return
        ctx.progress(describe(thing), index / max(len(things), 1))
        yield thing


def _safe_id(raw: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", raw).strip("-")[:48] or "video"


# ---------------------------------------------------------------- Pexels and Pixabay stock videos


def collect_stock(api_name: str):
    """A collector searching `api_name`'s stock videos for each query, up to per_query clips each and max_items in
    all, each the rendition nearest the frame; the licence, author and page recorded as the clip's credit."""
    api = STOCK_APIS[api_name]

    def collect(ctx: StageContext, params: BrollParams, queries: list[str]) -> Collected:
        frame = FRAME_SIZES[params.aspect]
        failed_searches: list[str] = []

        def search(query: str) -> list:
            try:
                return api.search(api, api.key(), query, params.per_query * SEARCH_OVERFETCH, params.aspect)
            except StockError as exc:
                if not failed_searches:
                    ctx.log(f"{api.label} search failed: {exc}")
                failed_searches.append(query)
                raise UnusableMedia(str(exc), f"{api.name}:{query}") from None

        def fetch(query: str, hit) -> Candidate:
            cid = f"{api.name}-{_safe_id(hit.id)}"
            try:
                fetched, _ = fetch_hit(api, hit, ctx.out_dir, cid, params, frame)
            except UnusableMedia as exc:
                raise UnusableMedia(str(exc), hit.page_url or cid) from None
            candidate = _candidate(ctx, cid, api.name, query, fetched)
            candidate.credits = [Credit(fetched.title, api.label, fetched.path.name, api.licence,
                                        f"Video by {hit.author} on {api.label}: {hit.page_url}")]
            return candidate

        return _per_query(ctx, params, queries, api.label, search, fetch)

    return collect


def credits_text(items: list[Candidate]) -> str:
    """credits.txt beside stock clips: each visual's pictures and clips, their licence and their author."""
    lines = ["Visuals in this short's b-roll, their sources and licences", ""]
    for item in items:
        for credit in item.credits:
            by = f" | {credit.attribution}" if credit.attribution else ""
            lines.append(f"{item.id}: {credit.title} | {credit.source} {credit.file} | {credit.licence}{by}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the sources


@dataclass(frozen=True)
class Source:
    """Where b-roll comes from: how to gather candidates for a script, and how a message names the place."""

    collect: Callable[[StageContext, BrollParams, Script], Collected]
    where: Callable[[BrollParams], str]


def _by_queries(collect: Callable[[StageContext, BrollParams, list[str]], Collected]):
    """A collector that needs only the script's b-roll queries."""
    return lambda ctx, params, script: collect(ctx, params, search_queries(script))


BACKENDS: dict[str, Source] = {
    "local": Source(_by_queries(collect_local), lambda params: f"the local folder {params.local_dir}"),
    "urls": Source(_by_queries(collect_urls), lambda params: "the configured URLs"),
    "youtube": Source(_by_queries(collect_youtube), lambda params: "the YouTube search"),
    "builtin": Source(collect_illustrated, lambda params: "the built-in illustrated library"),
    "stills": Source(_by_queries(collect_stills), lambda params: "scikit-image's sample photographs"),
    **{name: Source(_by_queries(collect_stock(name)), lambda params, api=api: f"the {api.label} video search")
       for name, api in STOCK_APIS.items()},
}
"""Every source by its `BrollParams.source` name ("auto" is not one: it is choose_source's rule)."""

GAP_FILLED = frozenset({"local", "urls", "youtube", *STOCK_APIS})
"""Sources whose visuals, when fewer than the sentences, are topped up with illustrated scenes."""


if __name__ == "__main__":
    stage_main(run, Params)
