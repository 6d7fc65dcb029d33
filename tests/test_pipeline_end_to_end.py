"""The whole product on its offline defaults: a short script in, a real vertical short out.

One run makes the short; the other tests read it, then rerun each stage alone
on its saved inputs through the runner, as a user fixing one stage would.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from aishorts.ipc.pipeline import STAGE_NAMES
from aishorts.stages.common.media import ffmpeg_exe, probe
from tests.runner_helpers import report, run_cli, short_from_script, stage

pytestmark = pytest.mark.slow

SCRIPT = (
    "Octopuses have three hearts and blue blood. "
    "Two hearts pump blood through the gills, while the third serves the rest of the body. "
    "Follow for more strange facts about the ocean."
)


@pytest.fixture(scope="module")
def short(tmp_path_factory) -> Path:
    return short_from_script(tmp_path_factory.mktemp("e2e"), SCRIPT)


def _narration(run_dir: Path) -> dict:
    return json.loads((run_dir / "tts" / "artifact.json").read_text())


def test_the_short_is_a_vertical_h264_video_with_audio_as_long_as_the_narration(short):
    video = short / "final.mp4"
    info = probe(video)
    assert (info.video.width, info.video.height) == (1080, 1920)
    assert info.video.codec.startswith("h264") and info.video.pix_fmt == "yuv420p"
    assert abs(info.video.fps - 30) < 0.01
    assert info.audio is not None and info.audio.codec.startswith("aac")
    narration = _narration(short)["duration_s"]
    assert narration - 0.1 <= info.duration_s <= narration + 1.0


def test_the_short_starts_with_faststart_metadata(short):
    head = (short / "final.mp4").read_bytes()[:200_000]
    assert 0 <= head.find(b"moov") < head.find(b"mdat")


def test_the_frames_are_not_blank(short):
    narration = _narration(short)["duration_s"]
    for at in (0.5, narration / 2, narration - 0.5):
        gray = subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-ss", f"{at:.2f}", "-i", str(short / "final.mp4"), "-frames:v", "1",
             "-vf", "scale=108:192,format=gray", "-f", "rawvideo", "-"], capture_output=True, check=True).stdout
        assert len(gray) == 108 * 192
        mean = sum(gray) / len(gray)
        variance = sum((p - mean) ** 2 for p in gray) / len(gray)
        assert variance > 100, f"frame at {at:.1f}s looks blank (variance {variance:.0f})"


def test_captions_follow_the_narration(short):
    narration = _narration(short)
    srt = (short / "captions.srt").read_text()
    times = re.findall(r"(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)", srt)
    assert times
    spoken_words = [w["text"] for s in narration["sentences"] for w in s["words"]]
    for t in times:
        start = int(t[0]) * 3600 + int(t[1]) * 60 + int(t[2]) + int(t[3]) / 1000
        end = int(t[4]) * 3600 + int(t[5]) * 60 + int(t[6]) + int(t[7]) / 1000
        assert 0 <= start < end <= narration["duration_s"] + 0.05
    assert "Octopuses" in srt and len(spoken_words) == len(SCRIPT.split())
    assert (short / "captions.ass").read_text().count("Dialogue:") >= 1
    assert (short / "thumbnail.jpg").stat().st_size > 1000


def test_the_report_records_every_stage_and_the_offline_backends(short):
    data = report(short)
    assert data["status"] == "done"
    assert [s["name"] for s in data["stages"]] == list(STAGE_NAMES)
    assert data["peak_rss_bytes"] < 4 * 2**30
    assert json.loads((short / "match" / "artifact.json").read_text())["scorer"] == "text"
    assert json.loads((short / "broll" / "artifact.json").read_text())["source"] == "builtin"
    assert (short / "memory.svg").exists()


def test_a_rerun_with_nothing_changed_skips_every_stage(short):
    out = run_cli("--run-dir", short, cwd=short.parent, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:]
    assert {s["status"] for s in report(short)["stages"]} == {"skipped"}


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_each_stage_reruns_alone_on_saved_inputs(short, name):
    others = {s: (short / s / "artifact.json").stat().st_mtime_ns for s in ("theme", "timeline") if s != name}
    out = run_cli("--run-dir", short, "--only", name, cwd=short.parent, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:]
    data = report(short)
    assert [s["name"] for s in data["stages"]] == [name]
    assert stage(data, name)["status"] == "done"
    for other, mtime in others.items():
        assert (short / other / "artifact.json").stat().st_mtime_ns == mtime
