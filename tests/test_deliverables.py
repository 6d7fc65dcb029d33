"""The files a user takes away from a run (final.mp4, captions, thumbnail) are checked on every resume.

One real short is made on the offline defaults; then its deliverables are
overwritten, deleted, or edited in place (which, through the hard link the
render stage publishes with, edits its own output too). A resume never says
"done" over garbage or nothing: it restores the file from the render stage's
output, or redoes the render stage when that output changed as well.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.runner_helpers import report, run_cli, short_from_script, stage

pytestmark = pytest.mark.slow

SCRIPT = "Octopuses have three hearts and blue blood. Follow for more strange facts about the ocean."


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def short(tmp_path_factory) -> Path:
    return short_from_script(tmp_path_factory.mktemp("deliverables"), SCRIPT)


def resume(run_dir: Path) -> dict:
    out = run_cli("--run-dir", run_dir, cwd=run_dir.parent, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return report(run_dir)


def test_a_replaced_or_deleted_deliverable_is_restored_from_the_render_output(short):
    good = {name: digest(short / "render" / name) for name in ("final.mp4", "captions.srt", "thumbnail.jpg")}
    (short / "final.mp4").unlink()
    (short / "final.mp4").write_bytes(os.urandom(4096))  # a new file: render/final.mp4 is untouched
    (short / "captions.srt").unlink()

    data = resume(short)

    render = stage(data, "render")
    assert render["status"] == "skipped" and "restored" in render["message"]
    for name, expected in good.items():
        assert digest(short / name) == expected, name


def test_a_deliverable_edited_in_place_through_its_link_gets_the_render_stage_redone(short):
    with open(short / "final.mp4", "r+b") as handle:  # the same inode as render/final.mp4 when linked
        handle.write(b"\0" * 1024)
    data = resume(short)
    assert stage(data, "render")["status"] in ("done", "skipped")
    assert digest(short / "final.mp4") == digest(short / "render" / "final.mp4")
    assert (short / "final.mp4").read_bytes()[:1024] != b"\0" * 1024
