"""The broll stage: candidate visuals from built-in stills, a local folder, URLs and (a stand-in for) YouTube.

Downloads drive the real yt-dlp against a real HTTP server on 127.0.0.1
(tests/media_server.py). YouTube itself cannot be reached from tests: its
search is one function that turns a query into a target yt-dlp lists
(`ytsearchN:query`); here the same listing, filtering and download code runs on
a loopback RSS feed in its place. What is not covered: yt-dlp's YouTube
extractor and a real YouTube search result.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import msgspec
import pytest

from aishorts.ipc.artifacts import Candidates, Script
from aishorts.ipc.files import resolve_in_run
from aishorts.ipc.messages import StageCall
from aishorts.ipc.params import BrollParams
from aishorts.stages.broll import stage as broll, visuals, ytdlp
from aishorts.stages.broll.builtin_stills import LIBRARY
from aishorts.stages.common.context import StageContext, StageError
from aishorts.stages.common.media import ffmpeg_exe
from media_server import serve

SCRIPT = Script(
    title="Cats in space",
    hook="Have you ever wondered what a cat would do on a rocket?",
    body=["Astronauts train for years.", "Cats just nap."],
    cta="Follow for more.",
    broll_queries=["cat", "rocket launch"],
)


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args], check=True, timeout=60)


def make_clip(path: Path, seconds: float = 2.0, size: str = "160x120") -> Path:
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size={size}:rate=10:duration={seconds}",
           "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", str(path))
    return path


def make_still(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=200x100:rate=1:duration=1", "-frames:v", "1", str(path))
    return path


def make_truncated(source: Path, path: Path) -> Path:
    """The first third of a real mp4: its header says mp4, its index (moov, written last) is gone."""
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Files a loopback web server serves: clips, a video page with metadata, pages without video."""
    root = tmp_path_factory.mktemp("site")
    make_clip(root / "clip.mp4")
    make_clip(root / "slow.mp4", seconds=4.0)
    make_still(root / "thumb.jpg")
    # noise does not compress: about 2 MB, over a 1 MB cap
    ffmpeg("-f", "lavfi", "-i", "nullsrc=s=320x240:d=2,geq=random(1)*255:128:128",
           "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", str(root / "big.mp4"))
    (root / "notes.txt").write_text("not a video, just words\n")
    (root / "about.html").write_text("<html><head><title>About us</title></head><body>No video here.</body></html>")
    return root


def video_page(base: str, name: str, duration: str, keywords: str) -> str:
    """An HTML page describing clip.mp4 with schema.org VideoObject metadata, as many video sites do."""
    return f"""<html><head><title>{name}</title>
<script type="application/ld+json">
{{"@context": "https://schema.org", "@type": "VideoObject", "name": "{name}",
  "description": "Slow waves rolling onto a sandy beach", "keywords": "{keywords}",
  "thumbnailUrl": "{base}/thumb.jpg", "contentUrl": "{base}/clip.mp4",
  "duration": "{duration}", "uploadDate": "2024-01-01"}}
</script></head><body><h1>{name}</h1></body></html>"""


@pytest.fixture(scope="module")
def server(site: Path):
    with serve(site) as base:
        (site / "waves.html").write_text(video_page(base, "Ocean waves crashing", "PT2S", "ocean,beach,waves"))
        (site / "lecture.html").write_text(video_page(base, "A ten minute lecture", "PT10M", "talk"))
        yield base


@pytest.fixture(scope="module")
def local_media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("my_clips")
    (root / "nature").mkdir()
    make_clip(root / "nature" / "forest_walk.mp4")
    make_clip(root / "city_traffic.mp4", seconds=3.0, size="240x160")
    make_still(root / "sunset.png")
    make_truncated(root / "city_traffic.mp4", root / "broken_upload.mp4")
    (root / "readme.txt").write_text("my b-roll folder\n")
    (root / ".hidden.mp4").write_text("ignored: hidden files are not media")
    return root


def context(run_dir: Path) -> StageContext:
    call = StageCall(stage="broll", module="aishorts.stages.broll.stage", run_dir=str(run_dir), out_dir=str(run_dir / "broll"),
                     inputs={}, input_kinds={}, output_kind="candidates")
    (run_dir / "broll").mkdir(parents=True, exist_ok=True)
    return StageContext(call)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- stills: scikit-image's sample photographs
# (the illustrated library, `builtin`, is specified in tests/test_illustrations_broll.py)


def test_stills_library_writes_every_still_as_a_described_png(tmp_path, run_stage_inline):
    params = BrollParams(source="stills", max_items=50)
    result, _ = run_stage_inline(tmp_path, "broll", params, script=SCRIPT)

    assert isinstance(result, Candidates)
    assert result.source == "stills" and result.skipped == []
    assert len(result.items) == len(LIBRARY) >= 5
    for item in result.items:
        path = resolve_in_run(tmp_path, item.path)
        assert path.suffix == ".png" and path.read_bytes().startswith(b"\x89PNG")
        assert item.media == "still" and item.duration_s is None
        assert item.width >= 100 and item.height >= 100
        assert len(item.description) > 30 and item.tags and item.title
    assert len({item.id for item in result.items}) == len(result.items)


def test_stills_puts_stills_sharing_words_with_the_queries_first(tmp_path, run_stage_inline):
    params = BrollParams(source="stills", max_items=2)
    result, _ = run_stage_inline(tmp_path, "broll", params, script=SCRIPT)

    assert {item.id for item in result.items} == {"builtin-chelsea", "builtin-rocket"}


# ---------------------------------------------------------------- local folder


def test_local_folder_keeps_readable_clips_and_stills_and_records_broken_files(tmp_path, run_stage_inline, local_media):
    params = BrollParams(source="local", local_dir=str(local_media), fill_gaps=False)
    result, _ = run_stage_inline(tmp_path, "broll", params, script=SCRIPT)

    by_title = {item.title: item for item in result.items}
    assert set(by_title) == {"forest walk", "city traffic", "sunset"}
    forest, city, sunset = by_title["forest walk"], by_title["city traffic"], by_title["sunset"]
    assert forest.media == "video" and forest.duration_s == pytest.approx(2.0, abs=0.2)
    assert (city.width, city.height) == (240, 160) and city.duration_s == pytest.approx(3.0, abs=0.2)
    assert sunset.media == "still" and (sunset.width, sunset.height) == (200, 100)
    assert "nature" in forest.tags
    for item in result.items:
        copy = resolve_in_run(tmp_path, item.path)
        assert copy.is_file() and local_media not in copy.parents
        assert Path(item.origin).parent.is_relative_to(local_media)
    skipped = {Path(s.ref).name: s.reason for s in result.skipped}
    assert set(skipped) == {"broken_upload.mp4", "readme.txt"}
    assert all(reason for reason in skipped.values())


def test_the_users_files_are_copied_so_editing_the_runs_copy_never_edits_the_original(tmp_path, run_stage_inline,
                                                                                       local_media):
    params = BrollParams(source="local", local_dir=str(local_media), fill_gaps=False)
    result, _ = run_stage_inline(tmp_path, "broll", params, script=SCRIPT)
    for item in result.items:
        copy, original = resolve_in_run(tmp_path, item.path), Path(item.origin)
        before = original.read_bytes()
        assert not copy.samefile(original) and original.stat().st_nlink == 1
        with open(copy, "r+b") as handle:  # edited in place, as an editor or a tool might
            handle.write(b"edited")
        assert original.read_bytes() == before


def test_local_folder_stops_at_max_items(tmp_path, run_stage_inline, local_media):
    params = BrollParams(source="local", local_dir=str(local_media), max_items=1)
    result, _ = run_stage_inline(tmp_path, "broll", params, script=SCRIPT)
    assert len(result.items) == 1


def test_empty_local_folder_is_an_error(tmp_path, run_stage_inline):
    (tmp_path / "empty").mkdir()
    params = BrollParams(source="local", local_dir=str(tmp_path / "empty"))
    with pytest.raises(StageError, match="no usable b-roll from the local folder"):
        run_stage_inline(tmp_path / "run", "broll", params, script=SCRIPT)


def test_local_folder_with_only_broken_files_is_an_error_naming_them(tmp_path, run_stage_inline, local_media):
    folder = tmp_path / "bad"
    folder.mkdir()
    make_truncated(local_media / "city_traffic.mp4", folder / "cut.mp4")
    (folder / "fake.png").write_bytes(b"this is not a png")
    params = BrollParams(source="local", local_dir=str(folder))
    with pytest.raises(StageError, match=r"cut\.mp4.*fake\.png|fake\.png.*cut\.mp4"):
        run_stage_inline(tmp_path / "run", "broll", params, script=SCRIPT)


def test_auto_uses_the_local_folder_when_one_is_configured():
    source, reason = broll.choose_source(BrollParams(local_dir="/somewhere"), reachable=lambda: True)
    assert source == "local" and "/somewhere" in reason


# ---------------------------------------------------------------- URLs through yt-dlp


def test_urls_are_downloaded_with_metadata_and_failures_are_recorded(tmp_path, run_stage_inline, server):
    urls = {
        "file": f"{server}/clip.mp4",
        "page": f"{server}/waves.html",
        "image": f"{server}/thumb.jpg",
        "missing": f"{server}/missing.mp4",
        "no_video": f"{server}/about.html",
        "text": f"{server}/notes.txt",
        "too_long": f"{server}/lecture.html",
        "too_big": f"{server}/big.mp4",
    }
    params = BrollParams(source="urls", urls=list(urls.values()), max_filesize_mb=1, max_clip_s=30, fill_gaps=False)
    result, _ = run_stage_inline(tmp_path, "broll", params, script=SCRIPT)

    by_origin = {item.origin: item for item in result.items}
    assert set(by_origin) == {urls["file"], urls["page"], urls["image"]}
    clip, page, image = by_origin[urls["file"]], by_origin[urls["page"]], by_origin[urls["image"]]
    assert clip.media == "video" and clip.duration_s == pytest.approx(2.0, abs=0.2)
    assert (clip.width, clip.height) == (160, 120)
    assert page.title == "Ocean waves crashing" and page.tags == ["ocean", "beach", "waves"]
    assert "sandy beach" in page.description
    assert page.thumbnail and resolve_in_run(tmp_path, page.thumbnail).is_file()
    assert image.media == "still"
    for item in result.items:
        assert resolve_in_run(tmp_path, item.path).is_file() and item.source == "urls"
    assert not list((tmp_path / "broll").glob(".download-*")), "work folders are cleaned up"

    reasons = {s.ref: s.reason for s in result.skipped}
    assert set(reasons) == {urls[k] for k in ("missing", "no_video", "text", "too_long", "too_big")}
    assert "404" in reasons[urls["missing"]]
    assert "Unsupported URL" in reasons[urls["no_video"]]
    assert "not a media file" in reasons[urls["text"]]
    assert "max_clip_s" in reasons[urls["too_long"]]
    assert "max_filesize_mb=1" in reasons[urls["too_big"]]


def test_a_download_past_its_time_bound_is_stopped_and_recorded(tmp_path, run_stage_inline, server):
    # 8 s: ample for yt-dlp to start and fetch the small clip on a loaded machine; the trickle needs far longer
    params = BrollParams(source="urls", urls=[f"{server}/slow/slow.mp4", f"{server}/clip.mp4"], download_timeout_s=8,
                         fill_gaps=False)
    start = time.monotonic()
    result, _ = run_stage_inline(tmp_path, "broll", params, script=SCRIPT)

    assert time.monotonic() - start < 60
    assert [item.origin for item in result.items] == [f"{server}/clip.mp4"]
    assert result.skipped[0].ref == f"{server}/slow/slow.mp4"
    assert "longer than 8 s" in result.skipped[0].reason


def test_urls_that_all_fail_are_an_error_when_gaps_are_not_filled(tmp_path, run_stage_inline, server):
    params = BrollParams(source="urls", urls=[f"{server}/missing.mp4", f"{server}/about.html"], fill_gaps=False)
    with pytest.raises(StageError, match="404"):
        run_stage_inline(tmp_path, "broll", params, script=SCRIPT)


def test_urls_that_all_fail_are_topped_up_with_illustrations_naming_the_failed_urls(tmp_path, run_stage_inline,
                                                                                   server):
    urls = [f"{server}/missing.mp4", f"{server}/about.html"]
    result, events = run_stage_inline(tmp_path, "broll", BrollParams(source="urls", urls=urls), script=SCRIPT)

    assert result.source == "urls" and result.items
    assert {item.source for item in result.items} == {"builtin"}  # the illustrated library
    assert {s.ref for s in result.skipped} == set(urls)
    assert "every URL failed" in result.source_reason and all(url in result.source_reason for url in urls)
    assert any("every b-roll URL failed" in e.message and urls[0] in e.message for e in events)


def test_downloads_are_capped_in_height(tmp_path, server):
    params = BrollParams(max_height=100)
    with pytest.raises(visuals.UnusableMedia, match="max_height=100"):
        ytdlp.download(f"{server}/clip.mp4", tmp_path, "tall", params)


# ---------------------------------------------------------------- YouTube: search seam and reachability


def feed(base: str, items: list[tuple[str, str, int]]) -> str:
    """An RSS feed listing videos, the shape of listing yt-dlp returns for a search."""
    entries = "".join(
        f"<item><title>{title}</title><link>{base}/{path}</link>"
        f"<itunes:duration>{seconds}</itunes:duration></item>"
        for title, path, seconds in items
    )
    return (
        '<?xml version="1.0"?><rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd">'
        f"<channel><title>results</title>{entries}</channel></rss>"
    )


def test_search_lists_hits_and_drops_ones_longer_than_max_clip_s(server, site):
    (site / "search-ocean.xml").write_text(
        feed(server, [("Ocean waves", "waves.html", 2), ("Long documentary", "clip.mp4", 3600)])
    )
    hits = ytdlp.search_videos(f"{server}/search-ocean.xml", BrollParams(max_clip_s=60))
    assert [(h.title, h.url, h.duration_s) for h in hits] == [("Ocean waves", f"{server}/waves.html", 2)]


def test_youtube_collection_downloads_per_query_hits_and_records_failures(tmp_path, server, site):
    (site / "search-cat.xml").write_text(
        feed(server, [("gone", "missing.mp4", 5), ("a cat clip", "clip.mp4", 2), ("spare", "waves.html", 2)])
    )
    (site / "search-rocket.xml").write_text(feed(server, [("ocean", "waves.html", 2)]))
    targets: list[tuple[str, int]] = []

    def search_target(query: str, count: int) -> str:
        targets.append((query, count))
        return f"{server}/search-{query.split()[0]}.xml"

    params = BrollParams(source="youtube", per_query=1)
    items, skipped = broll.collect_youtube(context(tmp_path), params, ["cat", "rocket launch"], search_target)

    assert targets == [("cat", 3), ("rocket launch", 3)]
    assert [(i.query, i.origin) for i in items] == [
        ("cat", f"{server}/clip.mp4"), ("rocket launch", f"{server}/waves.html"),
    ]
    assert items[1].title == "Ocean waves crashing" and all(i.source == "youtube" for i in items)
    assert [s.ref for s in skipped] == [f"{server}/missing.mp4"]


def test_youtube_search_target_is_a_ytsearch_of_the_query():
    assert broll.youtube_search_target("rocket launch", 6) == "ytsearch6:rocket launch"


def test_reachability_check_is_false_for_a_closed_port_and_true_for_a_listening_one():
    start = time.monotonic()
    assert broll.youtube_reachable("127.0.0.1", closed_port(), timeout_s=2.0) is False
    assert time.monotonic() - start < 2.5
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert broll.youtube_reachable("127.0.0.1", listener.getsockname()[1], timeout_s=2.0) is True


def test_auto_falls_back_to_the_builtin_library_when_youtube_does_not_answer(tmp_path, run_stage_inline, monkeypatch):
    monkeypatch.setattr(broll, "YOUTUBE_HOST", "127.0.0.1")
    monkeypatch.setattr(broll, "YOUTUBE_PORT", closed_port())
    result, _ = run_stage_inline(tmp_path, "broll", BrollParams(max_items=3), script=SCRIPT)

    assert result.source == "builtin"
    assert "did not answer" in result.source_reason and "127.0.0.1" in result.source_reason
    assert len(result.items) == 3


def test_auto_falls_back_to_the_builtin_library_when_youtube_answers_but_yields_nothing(
    tmp_path, run_stage_inline, monkeypatch, server, site
):
    (site / "search-dead.xml").write_text(feed(server, [("gone", "missing.mp4", 5)]))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        monkeypatch.setattr(broll, "YOUTUBE_HOST", "127.0.0.1")
        monkeypatch.setattr(broll, "YOUTUBE_PORT", listener.getsockname()[1])
        monkeypatch.setattr(broll, "youtube_search_target", lambda query, count: f"{server}/search-dead.xml")
        result, _ = run_stage_inline(tmp_path, "broll", BrollParams(max_items=2), script=SCRIPT)

    assert result.source == "builtin" and len(result.items) == 2
    assert "answered" in result.source_reason and "fell back to the built-in stills" in result.source_reason
    assert {s.ref for s in result.skipped} == {f"{server}/missing.mp4"}


def test_queries_fall_back_to_shortened_sentences_when_the_script_has_none():
    script = msgspec.structs.replace(SCRIPT, broll_queries=[" ", "cat", "cat"])
    assert broll.search_queries(script) == ["cat"]
    bare = msgspec.structs.replace(SCRIPT, broll_queries=[])
    assert broll.search_queries(bare)[0] == "Have you ever wondered what a cat would"
