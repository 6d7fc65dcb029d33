"""Stages create every file they write afresh: a link planted at an output name is replaced, never written through.

A run directory is the user's, and anything may stand at the names a stage
writes. Here symbolic links are planted at every name the render and broll
stages write (captions, logs, the partial and the final video, the thumbnail,
the deliverables at the top of the run directory, stills, copies, downloads):
some to files outside the run directory with known contents, some dangling.
After a real run of the stage, the outside files are unchanged, no dangling
target has been created, and every name in the run directory is a regular
file (or gone, for temporary names).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from aishorts.ipc.params import BrollParams, RenderParams
from media_server import serve
from aishorts.stages.broll.builtin_stills import LIBRARY
from aishorts.stages.render.captions import find_font
from test_stage_broll import SCRIPT, make_clip, make_still
from test_stage_render import make_inputs

PRECIOUS = b"precious, outside the run directory: "


class Planted:
    """Symlinks planted in a run directory: to outside files with known contents, or dangling."""

    def __init__(self, run_dir: Path, outside: Path) -> None:
        self.run_dir, self.outside = run_dir, outside
        outside.mkdir(parents=True, exist_ok=True)
        self.names: list[Path] = []

    def link(self, relative: str, dangling: bool = False) -> None:
        name = self.run_dir / relative
        target = self.outside / relative.replace("/", "__")
        if not dangling:
            target.write_bytes(PRECIOUS + relative.encode())
        name.parent.mkdir(parents=True, exist_ok=True)
        name.unlink(missing_ok=True)
        name.symlink_to(target)
        self.names.append(name)

    def folder(self, relative: str, holding: list[str]) -> None:
        """A symlink standing for a folder the stage writes into, to an outside folder holding `holding`."""
        target = self.outside / f"folder-{relative.replace('/', '__')}"
        target.mkdir()
        for name in holding:
            (target / name).write_bytes(PRECIOUS + name.encode())
        (self.run_dir / relative).symlink_to(target, target_is_directory=True)
        self.names.append(self.run_dir / relative)

    def outside_state(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.outside)): p.read_bytes() for p in sorted(self.outside.rglob("*")) if p.is_file()}

    def check_untouched(self, before: dict[str, bytes]) -> None:
        assert self.outside_state() == before, "a stage wrote through a planted link"
        for name in self.names:
            assert not name.is_symlink(), f"{name} is still a link"


def test_render_replaces_every_planted_link_and_writes_nothing_outside(tmp_path, run_stage_inline):
    run_dir = tmp_path / "run"
    timeline = msgspec.structs.replace(make_inputs(run_dir), width=216, height=384)
    planted = Planted(run_dir, tmp_path / "outside")
    for name in ("captions.srt", "captions.ass", "final.mp4", "thumbnail.jpg", "ffmpeg.log", "filtergraph.txt",
                 "segments.txt"):
        planted.link(f"render/{name}")
    planted.link("render/final.partial.mp4", dangling=True)
    planted.folder("render/fonts", [find_font().path.name])
    for name in ("final.mp4", "captions.srt", "captions.ass", "thumbnail.jpg"):
        planted.link(name)
        planted.link(f".{name}.publish", dangling=True)
    before = planted.outside_state()

    result, _ = run_stage_inline(run_dir, "render", RenderParams(), timeline=timeline)

    planted.check_untouched(before)
    for name in ("final.mp4", "captions.srt", "captions.ass", "thumbnail.jpg"):
        published, made = run_dir / name, run_dir / "render" / name
        assert published.is_file() and made.is_file() and not made.is_symlink()
        assert published.read_bytes() == made.read_bytes()
    assert (run_dir / "render" / "fonts").is_dir() and (run_dir / "render" / "ffmpeg.log").is_file()
    assert result.size_bytes == (run_dir / "render" / "final.mp4").stat().st_size


def test_builtin_stills_replace_planted_links(tmp_path, run_stage_inline):
    planted = Planted(tmp_path / "run", tmp_path / "outside")
    for still in LIBRARY:
        planted.link(f"broll/builtin-{still.name}.png", dangling=still.name == "coffee")
    before = planted.outside_state()

    result, _ = run_stage_inline(tmp_path / "run", "broll", BrollParams(source="stills", max_items=50), script=SCRIPT)

    planted.check_untouched(before)
    assert len(result.items) == len(LIBRARY)
    for still in LIBRARY:
        assert (tmp_path / "run" / "broll" / f"builtin-{still.name}.png").read_bytes().startswith(b"\x89PNG")


def test_local_copies_and_downloads_replace_planted_links(tmp_path, run_stage_inline):
    mine, site = tmp_path / "mine", tmp_path / "site"
    mine.mkdir()
    site.mkdir()
    make_still(mine / "sunset.png")
    make_clip(site / "clip.mp4")
    run_dir = tmp_path / "run"
    planted = Planted(run_dir, tmp_path / "outside")
    planted.link("broll/local-sunset.png")
    planted.link("broll/url-1.mp4")
    planted.folder("broll/.download-url-1", ["media.mp4", "info.jsonl"])
    before = planted.outside_state()

    local_params = BrollParams(source="local", local_dir=str(mine), fill_gaps=False)
    local, _ = run_stage_inline(run_dir, "broll", local_params, script=SCRIPT)
    with serve(site) as base:
        url_params = BrollParams(source="urls", urls=[f"{base}/clip.mp4"], fill_gaps=False)
        urls, _ = run_stage_inline(run_dir, "broll", url_params, script=SCRIPT)

    planted.check_untouched(before)
    assert [item.path for item in local.items] == ["broll/local-sunset.png"]
    assert [item.path for item in urls.items] == ["broll/url-1.mp4"] and urls.skipped == []
    assert (run_dir / "broll" / "url-1.mp4").stat().st_size == (site / "clip.mp4").stat().st_size
