"""The page's frame, caption and sound options in a real browser (Debian's Chromium driven by Playwright).

A person picks a landscape frame, captions at the top in their own colour, a quieter music bed, uploads their own
track and their own clip and picture from the page, and the 16:9 short made from them by the real stages plays in
the page. Then the run's own files say what was used: the uploaded track and clip, the frame, the caption style.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect  # the serve extra; never `playwright install`

from aishorts.stages.common.media import ffmpeg_exe, probe
from tests.serve_helpers import running_server
from tests.test_serve_browser import browser_page, shoot, submitted

pytestmark = pytest.mark.slow

SCRIPT = "Waves roll onto the beach all day. The moon pulls the sea twice a day."


def ffmpeg(*args: str) -> bytes:
    return subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args], check=True, timeout=120,
                          capture_output=True).stdout


def own_files(folder: Path) -> tuple[Path, Path, Path]:
    """A track (a 1 kHz tone), a landscape clip and a picture, as a person has them on their disk (grey: the only
    red in the short is then the captions')."""
    folder.mkdir()
    track, clip, picture = folder / "my theme.mp3", folder / "waves.mp4", folder / "beach.png"
    ffmpeg("-f", "lavfi", "-i", "sine=f=1000:duration=12", "-af", "volume=4", "-c:a", "libmp3lame", str(track))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=4", "-vf", "hue=s=0", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", str(clip))
    ffmpeg("-f", "lavfi", "-i", "smptebars=size=800x450", "-vf", "hue=s=0", "-frames:v", "1", str(picture))
    return track, clip, picture


def test_a_person_makes_a_landscape_short_with_their_own_music_clips_and_caption_style_and_it_plays(tmp_path):
    track, clip, picture = own_files(tmp_path / "mine")
    runs = tmp_path / "runs"
    with running_server(runs, "--max-ram", "4G") as server, browser_page(server, height=1400) as page:
        # the form's choices and limits come from the schema
        expect(page.locator("#aspect option")).to_have_count(4)  # the default, 9:16, 16:9, 1:1
        assert page.locator("#caption_size").get_attribute("min") == "20"
        assert page.locator("#music_volume").get_attribute("max") == "1"
        assert "#RRGGBB" in page.locator("#caption_color").get_attribute("title")

        page.check("input[name=what][value=script]")
        page.fill("#script", SCRIPT)
        page.select_option("#aspect", "16:9")
        page.select_option("#caption_position", "top")
        page.locator("#caption_color").fill("#ff0000")
        page.locator("#music_volume").fill("0.5")
        page.set_input_files("#music_upload", str(track))
        expect(page.locator("#music_upload_status")).to_have_attribute("data-state", "done", timeout=60_000)
        page.set_input_files("#clips_upload", [str(clip), str(picture)])
        expect(page.locator("#clips_upload_status")).to_have_attribute("data-state", "done", timeout=60_000)
        expect(page.locator("#clips_upload_status")).to_contain_text("2 files")
        shoot(page, tmp_path, "look-and-sound")

        card = submitted(page, server)
        expect(card).to_have_attribute("data-status", "done", timeout=1_500_000)
        video = card.locator("video")
        expect(video).to_have_count(1)
        played = video.evaluate("""v => new Promise((resolve, reject) => {
            v.muted = true;
            v.addEventListener('error', () => reject(new Error('the video did not load')));
            const played = () => v.currentTime > 0.3 ? resolve([v.videoWidth, v.videoHeight, v.currentTime])
                                                      : setTimeout(played, 100);
            v.play().then(played, reject);
        })""")
        assert played[:2] == [1920, 1080], played  # a landscape short, playing in the page
        shoot(page, tmp_path, "landscape-done")
        task_id = card.get_attribute("data-task-id")

    run_dir = runs / task_id
    params = json.loads((run_dir / "run.json").read_text())["params"]
    timeline = params["timeline"]
    assert (timeline["aspect"], timeline["caption_position"], timeline["caption_color"]) == ("16:9", "top", "#FF0000")
    assert timeline["music_volume"] == 0.5 and Path(timeline["music_file"]).read_bytes() == track.read_bytes()
    assert Path(params["broll"]["local_dir"]).parent.name == ".uploads" and params["broll"]["source"] == "local"
    broll = json.loads((run_dir / "broll" / "artifact.json").read_text())
    assert {"local"} <= {item["source"] for item in broll["items"]}
    info = probe(run_dir / "final.mp4")
    assert (info.video.width, info.video.height) == (1920, 1080) and info.audio is not None
    # the red captions sit in the top part of the landscape frame
    frames = [ffmpeg("-ss", f"{t}", "-i", str(run_dir / "final.mp4"), "-frames:v", "1", "-f", "rawvideo",
                     "-pix_fmt", "rgb24", "-") for t in (0.6, 1.2, 1.8, 2.4, 3.0)]
    red_rows = np.concatenate([np.nonzero((rgb[..., 0] > 170) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90))[0]
                               for rgb in (np.frombuffer(f, np.uint8).reshape(1080, 1920, 3).astype(int)
                                           for f in frames)])
    assert red_rows.size > 500 and np.median(red_rows) < 1080 * 0.3, red_rows

