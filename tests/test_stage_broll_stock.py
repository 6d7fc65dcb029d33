"""The broll stage's stock sources: Pexels and Pixabay video search with the user's key.

The APIs are a loopback server speaking their shapes (tests/stock_server.py),
found through AISHORTS_PEXELS_URL / AISHORTS_PIXABAY_URL; the clips it serves
are small real MP4s made with ffmpeg here. What is not covered: the real
services (their ranking, their rate limits).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from aishorts.ipc.artifacts import Script
from aishorts.ipc.params import BrollParams
from aishorts.stages.common.media import ffmpeg_exe
from stock_server import StockFile, StockVideo, serve_stock

KEY = "test-key-0123456789"
SCRIPT = Script(
    title="The ocean",
    hook="Waves never stop.",
    body=["Whales sing for hours.", "Coral reefs feed a quarter of sea life."],
    cta="Follow for more.",
    broll_queries=["ocean waves", "whale", "coral reef"],
)


def make_clip(path: Path, width: int, height: int) -> StockFile:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=size={width}x{height}:rate=10:duration=1.5", "-pix_fmt", "yuv420p",
                    "-c:v", "libx264", "-preset", "ultrafast", str(path)], check=True, timeout=60)
    return StockFile(path.name, width, height)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stock")
    for name, (w, h) in {"wide": (320, 180), "tall": (180, 320), "square": (240, 240), "big-wide": (640, 360)}.items():
        for n in (1, 2, 3):
            make_clip(folder / f"{name}-{n}.mp4", w, h)
    (folder / "huge.mp4").write_bytes(bytes(3 * 2**20))  # over a 2 MB cap
    return folder


def library(folder: Path) -> list[StockVideo]:
    def files(n: int) -> tuple[StockFile, ...]:
        return tuple(StockFile(f"{name}-{n}.mp4", w, h) for name, (w, h) in
                     {"big-wide": (640, 360), "wide": (320, 180), "tall": (180, 320), "square": (240, 240)}.items())

    return [
        StockVideo(1, "waves-on-a-beach", "Ana", ("ocean", "waves", "beach"), files(1)),
        StockVideo(2, "humpback-whale", "Ben", ("whale", "ocean"), files(2)),
        StockVideo(3, "coral-reef-fish", "Chloe", ("coral", "reef", "fish"), files(3)),
    ]


@pytest.fixture
def stock(clips, monkeypatch):
    with serve_stock(clips, library(clips), KEY) as server:
        monkeypatch.setenv("AISHORTS_PEXELS_URL", server.root)
        monkeypatch.setenv("AISHORTS_PIXABAY_URL", server.root)
        monkeypatch.setenv("PEXELS_API_KEY", KEY)
        monkeypatch.setenv("PIXABAY_API_KEY", KEY)
        yield server


def run_broll(run_stage_inline, tmp_path, **params):
    return run_stage_inline(tmp_path / "run", "broll", BrollParams(**params), script=SCRIPT)


@pytest.mark.parametrize("source", ["pexels", "pixabay"])
@pytest.mark.parametrize(("aspect", "size"), [("9:16", (180, 320)), ("16:9", (640, 360)), ("1:1", (240, 240))])
def test_each_query_gets_a_stock_clip_of_the_frames_shape(run_stage_inline, tmp_path, stock, source, aspect, size):
    candidates, _ = run_broll(run_stage_inline, tmp_path, source=source, aspect=aspect, per_query=1,
                              max_height=1080)
    assert candidates.source == source
    stock = candidates.items[:3]
    assert [c.source for c in stock] == [source] * 3
    assert [c.query for c in stock] == SCRIPT.broll_queries
    # four sentences, three clips: an illustrated scene, drawn for the frame, tops them up
    assert [c.source for c in candidates.items[3:]] == ["builtin"]
    scene = candidates.items[3]
    assert abs(scene.width / scene.height - {"9:16": 9 / 16, "16:9": 16 / 9, "1:1": 1.0}[aspect]) < 0.01
    for item in stock:
        assert (item.media, item.width, item.height) == ("video", *size)  # the rendition nearest the frame
        assert (tmp_path / "run" / item.path).is_file()


def test_no_rendition_taller_than_max_height_is_taken_where_a_smaller_one_is(run_stage_inline, tmp_path, stock):
    candidates, _ = run_broll(run_stage_inline, tmp_path, source="pexels", aspect="16:9", per_query=1, max_height=200)
    assert {(c.width, c.height) for c in candidates.items if c.source == "pexels"} == {(320, 180)}


@pytest.mark.parametrize(("source", "label", "page"), [
    ("pexels", "Pexels", "https://www.pexels.com/video/humpback-whale-2/"),
    ("pixabay", "Pixabay", "https://pixabay.com/videos/humpback-whale-2/"),
])
def test_each_clip_is_credited_with_its_licence_author_and_page(run_stage_inline, tmp_path, stock, source, label,
                                                                 page):
    candidates, _ = run_broll(run_stage_inline, tmp_path, source=source, per_query=1)
    whale = next(c for c in candidates.items if c.query == "whale")
    assert whale.origin == page
    [credit] = whale.credits
    assert credit.source == label and f"{label} " in credit.licence and "license" in credit.licence
    assert credit.attribution == f"Video by Ben on {label}: {page}"
    credits = (tmp_path / "run" / "broll" / "credits.txt").read_text()
    assert f"Video by Ben on {label}: {page}" in credits and "Video by Ana" in credits and "Video by Chloe" in credits


def test_the_key_goes_to_the_api_only_never_with_the_downloads(run_stage_inline, tmp_path, stock):
    run_broll(run_stage_inline, tmp_path, source="pexels", per_query=1)
    searches = [s for s in stock.seen if s.path.startswith("/videos/search")]
    downloads = [s for s in stock.seen if s.path.startswith("/files/")]
    assert len(searches) == 3 and all(s.authorization == KEY for s in searches)
    assert "orientation=portrait" in searches[0].path
    assert len(downloads) == 3 and all(s.authorization is None and KEY not in s.path for s in downloads)

    stock.seen.clear()
    run_broll(run_stage_inline, tmp_path / "pixabay", source="pixabay", per_query=1)
    searches = [s for s in stock.seen if s.path.startswith("/api/videos/")]
    downloads = [s for s in stock.seen if s.path.startswith("/files/")]
    assert len(searches) == 3 and all(f"key={KEY}" in s.path for s in searches)
    assert downloads and all(s.authorization is None and KEY not in s.path for s in downloads)


def test_a_redirecting_api_is_not_followed_and_illustrations_stand_in(run_stage_inline, tmp_path, stock, clips):
    with serve_stock(clips, library(clips), KEY) as elsewhere:
        stock.redirect_to = elsewhere.root
        candidates, events = run_broll(run_stage_inline, tmp_path, source="pixabay")
    assert elsewhere.seen == []  # the key in Pixabay's URL never reached the other server
    assert candidates.source == "pixabay" and {c.source for c in candidates.items} == {"builtin"}
    assert "redirect" in candidates.source_reason and KEY not in candidates.source_reason
    logs = " ".join(e.message for e in events if e.kind == "log")
    assert "redirect" in logs and KEY not in logs


def test_a_refused_key_is_said_in_words(run_stage_inline, tmp_path, stock, monkeypatch):
    monkeypatch.setenv("PEXELS_API_KEY", "wrong")
    candidates, _ = run_broll(run_stage_inline, tmp_path, source="pexels")
    assert "refused the key in PEXELS_API_KEY (HTTP 401)" in candidates.source_reason
    assert {c.source for c in candidates.items} == {"builtin"}


def test_too_few_results_are_topped_up_with_illustrated_scenes(run_stage_inline, tmp_path, stock):
    stock.videos = stock.videos[:1]  # only the waves: the whale and the reef find nothing
    candidates, _ = run_broll(run_stage_inline, tmp_path, source="pexels", per_query=1)
    sources = [c.source for c in candidates.items]
    assert sources.count("pexels") == 1 and sources.count("builtin") >= 2
    credits = (tmp_path / "run" / "broll" / "credits.txt").read_text()
    assert "Video by Ana on Pexels" in credits and "OpenMoji" in credits


def test_a_clip_over_the_byte_cap_is_skipped(run_stage_inline, tmp_path, stock):
    stock.videos = [StockVideo(9, "huge", "Dan", ("ocean",), (StockFile("huge.mp4", 180, 320),)), *stock.videos]
    candidates, _ = run_broll(run_stage_inline, tmp_path, source="pexels", per_query=1, max_filesize_mb=2)
    assert any("larger than broll.max_filesize_mb=2" in s.reason for s in candidates.skipped)
    assert not list((tmp_path / "run" / "broll").glob("pexels-9*"))
    assert [c.source for c in candidates.items[:3]] == ["pexels"] * 3  # the next hit for "ocean waves" instead


@pytest.mark.parametrize(("source", "env"), [("pexels", "PEXELS_API_KEY"), ("pixabay", "PIXABAY_API_KEY")])
def test_without_a_key_the_illustrated_library_is_used_and_said(run_stage_inline, tmp_path, stock, monkeypatch,
                                                                source, env):
    monkeypatch.delenv(env)
    candidates, events = run_broll(run_stage_inline, tmp_path, source=source)
    assert candidates.source == "builtin" and candidates.items
    assert f"{env} is not set" in candidates.source_reason
    assert any(e.kind == "log" and f"{env} is not set" in e.message for e in events)
    assert not stock.seen
    report = json.loads((tmp_path / "run" / "broll" / "artifact.json").read_text())
    assert report["source"] == "builtin"


@pytest.mark.slow
def test_a_landscape_short_from_pexels_clips_credits_them(tmp_path, stock):
    import os

    from aishorts.stages.common.media import probe
    from tests.runner_helpers import run_cli

    script = tmp_path / "script.txt"
    script.write_text("Ocean waves never stop. A whale sings.")
    run_dir = tmp_path / "run"
    out = run_cli("--script", script, "--broll", "pexels", "--aspect", "16:9", "--no-music", "--run-dir", run_dir,
                  "--max-ram", "4G", cwd=tmp_path, env=dict(os.environ), timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    info = probe(run_dir / "final.mp4")
    assert (info.video.width, info.video.height) == (1920, 1080)
    broll = json.loads((run_dir / "broll" / "artifact.json").read_text())
    assert broll["source"] == "pexels" and any(item["source"] == "pexels" for item in broll["items"])
    credits = (run_dir / "credits.txt").read_text()
    assert "on Pexels: https://www.pexels.com/video/" in credits and "Pexels License" in credits


@pytest.mark.parametrize(("keys", "source"), [(("PEXELS_API_KEY", "PIXABAY_API_KEY"), "pexels"),
                                              (("PIXABAY_API_KEY",), "pixabay")])
def test_auto_takes_the_stock_site_whose_key_is_set(run_stage_inline, tmp_path, stock, monkeypatch, keys, source):
    for env in {"PEXELS_API_KEY", "PIXABAY_API_KEY"} - set(keys):
        monkeypatch.delenv(env)
    candidates, _ = run_broll(run_stage_inline, tmp_path, source="auto", per_query=1)
    assert candidates.source == source and f"{keys[-1] if source == 'pixabay' else keys[0]} is set" in \
        candidates.source_reason
    assert [c.source for c in candidates.items[:3]] == [source] * 3 and stock.seen
    assert (tmp_path / "run" / "broll" / "credits.txt").is_file()


def test_auto_without_a_key_keeps_its_default_and_the_users_own_media_come_before_a_key(tmp_path, stock, monkeypatch):
    from aishorts.stages.broll.stage import choose_source

    (tmp_path / "mine").mkdir()
    assert choose_source(BrollParams(local_dir=str(tmp_path / "mine")))[0] == "local"  # keys set by `stock`
    assert choose_source(BrollParams(urls=["https://example.org/a.mp4"]))[0] == "urls"
    monkeypatch.delenv("PEXELS_API_KEY")
    monkeypatch.delenv("PIXABAY_API_KEY")
    assert choose_source(BrollParams(), reachable=lambda: False)[0] == "builtin"
    assert choose_source(BrollParams(), reachable=lambda: True)[0] == "youtube"
    assert not stock.seen
