"""Landscape and square shorts: `--aspect 16:9` and `--aspect 1:1` from a script, through every stage.

Each run makes a real short with ffmpeg; the tests read its video, its illustrated
scenes and its captions, and draw the captions file with libass (as the render
stage burns it in) to see where the words land in the frame.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from aishorts.ipc.request import RequestError, request_from
from aishorts.stages.broll.illustrations_scenes import SCENE_FRAMES
from aishorts.stages.common.media import ffmpeg_exe, probe
from tests.runner_helpers import run_cli

pytestmark = pytest.mark.slow

SCRIPT = "Octopuses have three hearts. Their blood is blue."
FRAMES = {"16:9": (1920, 1080), "1:1": (1080, 1080)}


@pytest.fixture(scope="module", params=sorted(FRAMES))
def short(request, tmp_path_factory) -> tuple[str, Path]:
    aspect = request.param
    work = tmp_path_factory.mktemp("aspect")
    (work / "script.txt").write_text(SCRIPT)
    run_dir = work / "run"
    out = run_cli("--script", work / "script.txt", "--aspect", aspect, "--no-music", "--run-dir", run_dir,
                  "--max-ram", "4G", cwd=work, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return aspect, run_dir


def test_the_video_has_the_frame_of_its_aspect(short):
    aspect, run_dir = short
    info = probe(run_dir / "final.mp4")
    assert (info.video.width, info.video.height) == FRAMES[aspect]
    assert info.video.codec.startswith("h264") and info.audio is not None


def test_the_illustrated_scenes_are_drawn_for_the_frame(short):
    aspect, run_dir = short
    scenes = sorted((run_dir / "broll").glob("scene-*.png"))
    assert scenes
    width, height = FRAMES[aspect]
    for scene in scenes:
        info = probe(scene)
        assert (info.video.width, info.video.height) == SCENE_FRAMES[aspect].size
        assert abs(info.video.width / info.video.height - width / height) < 0.01


def test_the_captions_are_set_for_the_frame_and_land_inside_it(short):
    aspect, run_dir = short
    width, height = FRAMES[aspect]
    ass = (run_dir / "captions.ass").read_text()
    assert f"PlayResX: {width}\n" in ass and f"PlayResY: {height}\n" in ass
    style = re.search(r"^Style: Caption,[^,]*,(\d+),", ass, re.M)
    assert style and int(style.group(1)) == 72  # the same size as in a vertical short: set by the shorter side
    start = re.search(r"^Dialogue: 0,(\d+):(\d\d):(\d\d\.\d\d),", ass, re.M)
    at = int(start.group(1)) * 3600 + int(start.group(2)) * 60 + float(start.group(3)) + 0.05

    # the captions file drawn by libass over a black frame, as the render stage burns it into the video
    drawn = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", f"color=black:s={width}x{height}:d={at + 1:.2f}",
         "-vf", f"ass={run_dir / 'captions.ass'}", "-ss", f"{at:.2f}", "-frames:v", "1",
         "-f", "rawvideo", "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout
    gray = np.frombuffer(drawn, np.uint8).reshape(height, width)
    rows, columns = np.nonzero(gray > 200)
    assert rows.size > 500, "no caption drawn"
    assert rows.min() > height * 0.5 and rows.max() < height * 0.97  # in the lower part, clear of the bottom edge
    assert columns.min() > width * 0.05 and columns.max() < width * 0.95  # inside the side margins

    # and the burnt-in video shows light text there: brighter than the same rows of the scene without captions
    frame = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-ss", f"{at:.2f}", "-i", str(run_dir / "final.mp4"), "-frames:v", "1",
         "-f", "rawvideo", "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout
    video = np.frombuffer(frame, np.uint8).reshape(height, width)
    assert (video[gray > 200] > 170).mean() > 0.6


@pytest.mark.parametrize(("given", "aspect"), [
    ("16:9", "16:9"), ("landscape", "16:9"), ("Square", "1:1"), ("portrait", "9:16"), (" 9:16 ", "9:16"),
])
def test_an_aspect_may_be_given_by_its_name(given, aspect):
    assert request_from({"aspect": given}).aspect == aspect


def test_other_aspects_are_refused_with_the_choices():
    with pytest.raises(RequestError, match="9:16, 16:9, 1:1"):
        request_from({"aspect": "4:3"})
